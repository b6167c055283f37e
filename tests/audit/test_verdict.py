"""umed.audit.verdict through AuditRun: the floor verdict under the three selection rules, and mix against its clean
half."""

from __future__ import annotations

import numpy as np
import pytest

from umed.audit import INCONCLUSIVE, NOT_PROTECTED, PROTECTED, AuditRun
from umed.audit.records import VictimRun
from umed.audit.verdict import MIX_NOT_PROTECTED, MIX_PROTECTED, PARTLY_PROTECTED


def _run(test_dice: list[float], val_dice: list[float] | None = None) -> VictimRun:
    n, best = len(test_dice), int(np.argmax(test_dice))
    return VictimRun(
        "unet",
        "none",
        0,
        n,
        [1.0] * n,
        list(test_dice),
        [1.0] * n,
        test_dice[best],
        best + 1,
        test_dice[-1],
        1.0,
        1.0,
        {},
        np.zeros((1, 2, 2), np.uint8),
        val_dice=list(val_dice or []),
    )


def test_verdicts_consider_the_three_selection_rules() -> None:
    clean = _run([0.6, 0.8, 0.8], [0.5, 0.6, 0.7])
    # reaches the floor under every rule (nnU-Net's rule picks epoch 3 here)
    assert AuditRun("unet", "none", clean, _run([0.5, 0.75, 0.72], [0.1, 0.2, 0.3]), 0.7).verdict == NOT_PROTECTED
    # only the oracle best epoch reaches it: partly protected, and the rules are named in the JSON
    partly = AuditRun("unet", "none", clean, _run([0.75, 0.3, 0.1], [0.1, 0.2, 0.3]), 0.7)
    assert partly.verdict == PARTLY_PROTECTED and partly.to_dict()["rules_at_or_above_floor"] == ["best"]
    assert AuditRun("unet", "none", clean, _run([0.3, 0.2, 0.1], [0.1, 0.2, 0.3]), 0.7).verdict == PROTECTED
    assert AuditRun("unet", "none", _run([0.5, 0.5]), _run([0.3, 0.1]), floor=0.7).verdict == INCONCLUSIVE
    assert NOT_PROTECTED == "not protected beyond what a threshold finds"


def test_mix_verdict_compares_with_the_clean_half() -> None:
    clean, mixed = _run([0.7, 0.8], [0.5, 0.6]), _run([0.6, 0.71], [0.4, 0.5])
    same = AuditRun("unet", "mix", clean, mixed, 0.3, clean_half=_run([0.6, 0.70], [0.4, 0.5]))
    assert same.mix_gain == pytest.approx({"best": 0.01, "last": 0.01, "nnunet": 0.01})
    assert same.verdict == MIX_PROTECTED and same.to_dict()["mix_gain"]["last"] == pytest.approx(0.01)
    worse = AuditRun("unet", "mix", clean, mixed, 0.3, clean_half=_run([0.5, 0.6], [0.4, 0.5]))
    assert worse.verdict == MIX_NOT_PROTECTED and "clean_half" in worse.to_dict()
