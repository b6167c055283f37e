"""The audit's verdicts in plain words: the victim trained on protected data against the threshold floor under every
selection rule of :mod:`umed.audit.selection`, and, for the ``mix`` defense, against a victim trained on the clean
half alone.

Floor verdict (one victim, one defense; ``best`` is the oracle maximum, so it is never below the other rules):

- :data:`NOT_PROTECTED`: the protected victim reaches the floor under every available rule;
- :data:`INCONCLUSIVE`: otherwise, when the clean victim's best epoch is below the floor too (train longer);
- :data:`PROTECTED`: below the floor under every available rule;
- :data:`PARTLY_PROTECTED`: below the floor under some rules only (:func:`rules_at_or_above` names them).

Mix verdict (poison ratio below 1, where the fair comparison is the clean part alone, arXiv 2204.08615): the Dice gain
of the mixed victim over the clean-half victim under each rule; :data:`MIX_PROTECTED` when no rule gains more than
:data:`MIX_GAIN_LIMIT`.
"""

from __future__ import annotations

import math
from typing import Protocol

from umed.audit.selection import RULES


class VictimScores(Protocol):
    """What a verdict reads of a victim run (:class:`umed.audit.records.VictimRun`): its Dice under a rule."""

    def dice(self, rule: str) -> float: ...


__all__ = [
    "INCONCLUSIVE",
    "MIX_GAIN_LIMIT",
    "MIX_NOT_PROTECTED",
    "MIX_PROTECTED",
    "NOT_PROTECTED",
    "PARTLY_PROTECTED",
    "PROTECTED",
    "SHORT",
    "floor_verdict",
    "mix_gains",
    "mix_verdict",
    "rules_at_or_above",
]

NOT_PROTECTED = "not protected beyond what a threshold finds"
PROTECTED = "protected: below the threshold floor"
PARTLY_PROTECTED = "partly protected: below the threshold floor under some selection rules only"
INCONCLUSIVE = "inconclusive: the clean victim is also below the threshold floor"
MIX_PROTECTED = "protected: the protected half adds nothing over the clean half alone"
MIX_NOT_PROTECTED = "not protected: the protected half adds to what the clean half alone teaches"

#: Largest Dice gain of the mixed victim over the clean-half victim that still counts as "adds nothing".
MIX_GAIN_LIMIT = 0.02

#: Short forms for tables.
SHORT = {
    NOT_PROTECTED: "NOT protected",
    PROTECTED: "protected",
    PARTLY_PROTECTED: "partly",
    INCONCLUSIVE: "inconclusive",
    MIX_PROTECTED: "protected (mix)",
    MIX_NOT_PROTECTED: "NOT protected (mix)",
}


def _available(run: VictimScores) -> list[str]:
    return [rule for rule in RULES if math.isfinite(run.dice(rule))]


def rules_at_or_above(protected: VictimScores, floor: float) -> list[str]:
    """The selection rules under which the victim trained on protected data reaches the floor."""
    return [rule for rule in _available(protected) if protected.dice(rule) >= floor]


def floor_verdict(clean: VictimScores, protected: VictimScores, floor: float) -> str:
    """The floor verdict (see the module docstring)."""
    reached = rules_at_or_above(protected, floor)
    if len(reached) == len(_available(protected)):
        return NOT_PROTECTED
    if clean.dice("best") < floor:
        return INCONCLUSIVE
    return PARTLY_PROTECTED if reached else PROTECTED


def mix_gains(protected: VictimScores, clean_half: VictimScores) -> dict[str, float]:
    """Dice gain of the mixed victim over the clean-half victim, per rule available to both."""
    rules = [r for r in _available(protected) if r in _available(clean_half)]
    return {rule: protected.dice(rule) - clean_half.dice(rule) for rule in rules}


def mix_verdict(gains: dict[str, float]) -> str:
    """:data:`MIX_PROTECTED` when no rule's gain exceeds :data:`MIX_GAIN_LIMIT`, else :data:`MIX_NOT_PROTECTED`."""
    return MIX_PROTECTED if gains and max(gains.values()) <= MIX_GAIN_LIMIT else MIX_NOT_PROTECTED
