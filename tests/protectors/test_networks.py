"""Tests of umed.protectors.networks: central difference convolutions and the UMed generators."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umed.protectors.networks import CDCGenerator, CDConv2d, CDConv3d, PlainGenerator


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kwargs", [{}, {"stride": 2}, {"bias": True}, {"dilation": 2, "padding": 2}, {"groups": 2}])
def test_cdconv2d_theta_zero_is_conv2d_exactly(kwargs):
    cdc = CDConv2d(4, 6, 3, theta=0.0, **kwargs)
    plain = nn.Conv2d(4, 6, 3, **{"padding": 1, "bias": False, **kwargs})
    plain.load_state_dict(cdc.state_dict())
    x = torch.randn(2, 4, 11, 13, generator=_seeded(0))
    assert torch.equal(cdc(x), plain(x))


def test_cdconv3d_theta_zero_is_conv3d_exactly():
    cdc = CDConv3d(2, 3, 3, theta=0.0, stride=(1, 2, 1))
    plain = nn.Conv3d(2, 3, 3, padding=1, bias=False, stride=(1, 2, 1))
    plain.load_state_dict(cdc.state_dict())
    x = torch.randn(1, 2, 7, 8, 9, generator=_seeded(1))
    assert torch.equal(cdc(x), plain(x))


@pytest.mark.parametrize("theta", [0.3, 0.7, 1.0])
def test_cdconv2d_matches_reference_formula(theta):
    """out = conv(x, W) - theta * conv1x1(x, sum of W over its taps), as ZitongYu/CDCN computes it."""
    cdc = CDConv2d(3, 5, 3, theta=theta)
    x = torch.randn(2, 3, 9, 10, generator=_seeded(2))
    weight = cdc.weight.detach()
    expected = F.conv2d(x, weight, padding=1) - theta * F.conv2d(x, weight.sum(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(cdc(x), expected, rtol=1e-5, atol=1e-5)


def test_cdconv3d_matches_reference_formula():
    cdc = CDConv3d(2, 4, 3, theta=0.7)
    x = torch.randn(1, 2, 6, 7, 8, generator=_seeded(3))
    weight = cdc.weight.detach()
    expected = F.conv3d(x, weight, padding=1) - 0.7 * F.conv3d(x, weight.sum(dim=(2, 3, 4), keepdim=True))
    torch.testing.assert_close(cdc(x), expected, rtol=1e-5, atol=1e-5)


def test_cdc_is_zero_on_constant_input_at_theta_one():
    """With theta = 1 the layer sees only differences: a constant image gives 0 away from the zero padding."""
    cdc = CDConv2d(1, 2, 3, theta=1.0)
    out = cdc(torch.full((1, 1, 8, 8), 3.0))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.zeros(1, 2, 6, 6), rtol=0, atol=1e-5)


def test_cdc_rejects_bad_settings():
    with pytest.raises(ValueError, match="odd kernel"):
        CDConv2d(1, 1, 2, theta=0.5)
    with pytest.raises(ValueError, match="theta"):
        CDConv2d(1, 1, 3, theta=1.5)
    CDConv2d(1, 1, 2, theta=0.0)  # an even kernel is a plain convolution


def test_cdc_gradients_reach_the_weights():
    cdc = CDConv2d(1, 2, 3, theta=0.7)
    cdc(torch.randn(1, 1, 6, 6, generator=_seeded(4))).square().sum().backward()
    assert cdc.weight.grad is not None and cdc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [CDCGenerator, PlainGenerator])
@pytest.mark.parametrize("shape", [(32, 32), (30, 41), (7, 9)])
def test_generators_keep_any_spatial_size(cls, shape):
    net = cls(2, 1, base_channels=4, depth=2)
    out = net(torch.randn(2, 2, *shape, generator=_seeded(5)))
    assert out.shape == (2, 1, *shape) and out.dtype == torch.float32


def test_generator_output_does_not_depend_on_the_batch():
    """GroupNorm statistics are per sample, so a slice gets the same output alone or in a batch."""
    net = CDCGenerator(1, 1, base_channels=4, depth=2).eval()
    x = torch.randn(3, 1, 24, 24, generator=_seeded(6))
    with torch.no_grad():
        torch.testing.assert_close(net(x)[1:2], net(x[1:2]), rtol=1e-5, atol=1e-6)


def test_cdc_generator_uses_cdc_layers_and_theta():
    net = CDCGenerator(1, 1, base_channels=4, depth=1, theta=0.3)
    layers = [m for m in net.modules() if isinstance(m, CDConv2d)]
    assert layers and all(layer.theta == 0.3 for layer in layers)
    assert not any(isinstance(m, CDConv2d) for m in PlainGenerator(1, 1, base_channels=4, depth=1).modules())
