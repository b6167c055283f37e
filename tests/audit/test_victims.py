"""The victim networks: every registered victim maps images to two-class logits; unknown names list the valid ones."""

from __future__ import annotations

import pytest
import torch

from umed.audit.victims import VICTIM_NAMES, build_victim
from umed.errors import ConfigError


@pytest.mark.parametrize("name", VICTIM_NAMES)
def test_build_victim_maps_images_to_two_class_logits(name: str) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_victim(name)
    shape = (1, 1, 16, 16, 16) if name == "unet3d" else (2, 1, 32, 32)
    with torch.no_grad():
        out = model(torch.rand(shape))
    assert out.shape == (shape[0], 2, *shape[2:])


def test_unknown_victim_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"victim: unknown name 'vnet' \(expected one of unet, basicunet"):
        build_victim("vnet")
