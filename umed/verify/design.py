"""The probe design: which mark goes into which slot of which probe image, and how the suspect's answers become the
test.

A probe image is a copy of one of the owner's clean, never released cases (a *base*) with marks pasted into healthy
tissue slots (:mod:`umed.verify.slots`); the base itself is also sent, unmarked, so each slot's answer is measured
against the same model's answer without a mark. There are ``n_controls + 1`` marks, the secret key among them at a
random position, all drawn from one :class:`~umed.verify.family.MarkFamily`; each gets ``per_mark`` slots, assigned by
one seeded random permutation of every (base, copy, slot). A mark's score is the mean over its slots of (the
suspect's structure probability, or hard answer, in the disk) minus (the same on the unmarked base).
:func:`umed.verify.stats.rank_test` turns the scores into the p-value.

Example:
    >>> import numpy as np
    >>> from umed.verify.family import MarkFamily
    >>> from umed.verify.slots import Slot
    >>> slots = [[Slot(0, 10 + 12 * i, 10, 4) for i in range(3)]]
    >>> design = design_probes(slots, 123, family=MarkFamily(2, 2), amplitude=0.1, n_controls=5, per_mark=2,
    ...                        rng=np.random.default_rng(0))
    >>> len(design.seeds), design.copies, len(design.placements)
    (6, (4,), 12)
    >>> probe = render_probe(design, np.zeros((48, 24), np.float32), base=0, copy=1)
    >>> round(float(np.abs(probe).max()), 6)
    0.1
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from umed.errors import ConfigError
from umed.verify.family import MarkFamily
from umed.verify.slots import Slot, disk
from umed.verify.stats import RankTest, rank_test

__all__ = [
    "Placement",
    "ProbeDesign",
    "design_from_settings",
    "design_probes",
    "mark_scores",
    "render_probe",
    "score_design",
]

SEED_BOUND = 2**63 - 1  # mark seeds are drawn uniformly in [0, SEED_BOUND)


@dataclass(frozen=True)
class Placement:
    """Mark ``mark`` (an index into :attr:`ProbeDesign.seeds`) in ``slot`` of copy ``copy`` of base ``base``."""

    base: int
    copy: int
    slot: Slot
    mark: int


@dataclass(frozen=True)
class ProbeDesign:
    """Everything needed to render the probes and score the answers (the secret part of the probe manifest).

    Attributes:
        family: the mark family (the key's).
        amplitude: the marks' amplitude in the probes, normalised units.
        seeds: every mark's seed; ``seeds[key_index]`` is the key.
        key_index: the key's position.
        copies: number of marked copies of each base.
        placements: every (base, copy, slot, mark).
    """

    family: MarkFamily
    amplitude: float
    seeds: tuple[int, ...]
    key_index: int
    copies: tuple[int, ...]
    placements: tuple[Placement, ...]

    @property
    def n_controls(self) -> int:
        return len(self.seeds) - 1


def design_probes(
    slots_per_base: Sequence[Sequence[Slot]],
    key_seed: int,
    *,
    family: MarkFamily,
    amplitude: float,
    n_controls: int,
    per_mark: int,
    rng: np.random.Generator,
) -> ProbeDesign:
    """Draw the controls, the key's position and the slot assignment (see the module docstring).

    Raises:
        ConfigError: no slots at all, ``n_controls`` or ``per_mark`` below 1, ``amplitude`` not positive.
    """
    if n_controls < 1 or per_mark < 1:
        raise ConfigError(f"probes: n_controls and per_mark must be >= 1 (got {n_controls}, {per_mark})")
    if not amplitude > 0:
        raise ConfigError(f"probes: the mark amplitude must be > 0 (got {amplitude})")
    capacity = sum(len(slots) for slots in slots_per_base)
    if capacity == 0:
        raise ConfigError(
            "probes: no slot of healthy tissue found in the probe cases (expected disks away from the structure)"
        )
    n_marks = n_controls + 1
    needed = n_marks * per_mark
    n_copies = math.ceil(needed / capacity)
    controls = [int(s) for s in rng.integers(0, SEED_BOUND, size=n_controls, dtype=np.int64)]
    key_index = int(rng.integers(0, n_marks))
    seeds = tuple(controls[:key_index] + [int(key_seed)] + controls[key_index:])
    instances = [
        (base, copy, slot) for copy in range(n_copies) for base, slots in enumerate(slots_per_base) for slot in slots
    ]
    order = rng.permutation(len(instances))[:needed]
    placements = tuple(
        Placement(instances[i][0], instances[i][1], instances[i][2], k % n_marks) for k, i in enumerate(order)
    )
    used = [1 + max((p.copy for p in placements if p.base == b), default=-1) for b in range(len(slots_per_base))]
    return ProbeDesign(family, float(amplitude), seeds, key_index, tuple(used), placements)


def design_from_settings(
    bases: Sequence[np.ndarray],
    structures: Sequence[np.ndarray],
    key_seed: int,
    family: MarkFamily,
    settings: Any,
    rng: np.random.Generator,
) -> ProbeDesign:
    """Slots in every base (normalised units) and the probe design, with :class:`umed.verify.settings.VerifySettings`
    ``settings``: what ``umed verify probes`` and the in-memory probes both draw."""
    from umed.verify.slots import find_slots

    slots = [
        find_slots(
            base,
            structure,
            radius=settings.radius,
            rng=rng,
            margin=settings.margin,
            gap=settings.gap,
            tissue_threshold=settings.tissue_threshold,
            max_per_slice=settings.max_per_slice,
        )
        for base, structure in zip(bases, structures)
    ]
    return design_probes(
        slots,
        key_seed,
        family=family,
        amplitude=settings.amplitude,
        n_controls=settings.controls,
        per_mark=settings.per_mark,
        rng=rng,
    )


def render_probe(
    design: ProbeDesign, base_image: np.ndarray, *, base: int, copy: int, scale: float = 1.0
) -> np.ndarray:
    """Copy ``copy`` of base ``base``: ``base_image`` (``(H, W)`` or ``(X, Y, Z)``) plus its marks, each of amplitude
    ``design.amplitude * scale`` (``scale``: file units per normalised unit; 1 for an image in normalised units).
    Float32 for a normalised image (``scale`` 1), float64 otherwise (file units, to be rounded by the writer)."""
    out = np.array(base_image, dtype=np.float32 if scale == 1.0 else np.float64, copy=True)
    volume = out[..., None] if out.ndim == 2 else out
    for placement in design.placements:
        if placement.base != base or placement.copy != copy:
            continue
        slot = placement.slot
        rows, cols = slot.box()
        field = design.family.field(design.seeds[placement.mark], (2 * slot.radius + 1,) * 2, (rows.start, cols.start))
        volume[rows, cols, slot.z] = volume[rows, cols, slot.z] + (design.amplitude * scale) * field * disk(slot.radius)
    return out


def _disk_mean(answer: np.ndarray, slot: Slot) -> float:
    volume = answer[..., None] if answer.ndim == 2 else answer
    rows, cols = slot.box()
    return float(volume[rows, cols, slot.z][disk(slot.radius)].mean())


def mark_scores(
    design: ProbeDesign,
    answers: Mapping[tuple[int, int], np.ndarray],
    base_answers: Mapping[int, np.ndarray],
) -> np.ndarray:
    """Every mark's score: mean over its slots of (answer in the disk - the base's answer in the disk).

    Args:
        design: the probe design.
        answers: ``(base, copy) -> `` the suspect's structure probability (or 0/1 answer) for that probe, the base's
            shape.
        base_answers: ``base ->`` the same for the unmarked base.
    """
    totals = np.zeros(len(design.seeds))
    counts = np.zeros(len(design.seeds))
    for placement in design.placements:
        answer = answers[(placement.base, placement.copy)]
        baseline = base_answers[placement.base]
        totals[placement.mark] += _disk_mean(answer, placement.slot) - _disk_mean(baseline, placement.slot)
        counts[placement.mark] += 1
    return totals / np.maximum(counts, 1)


def score_design(
    design: ProbeDesign,
    answers: Mapping[tuple[int, int], np.ndarray],
    base_answers: Mapping[int, np.ndarray],
) -> RankTest:
    """The rank test of the key among the controls (:func:`umed.verify.stats.rank_test`)."""
    scores = mark_scores(design, answers, base_answers)
    controls = np.delete(scores, design.key_index)
    return rank_test(float(scores[design.key_index]), controls)
