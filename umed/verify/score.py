"""``umed verify score``: the suspect's answers on the probes -> the test, its p-value and a plain verdict.

Example:
    >>> from umed.verify.stats import rank_test
    >>> result = VerifyResult(rank_test(0.5, [0.1] * 999), soft=True, probes=10, slots=4000, key_fingerprint="ab")
    >>> result.verdict()
    'trained on data marked with this key: p = 0.001 (the key ranks 1 of 1000 marks)'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umed.errors import InputError
from umed.verify.answers import Answer, read_answers
from umed.verify.design import score_design
from umed.verify.key import MarkKey
from umed.verify.manifest import ProbeManifest
from umed.verify.stats import RankTest

__all__ = ["ALPHA", "VerifyResult", "check_key", "score_answers", "score_predictions", "score_with"]

ALPHA = 0.01
"""The level at which the verdict says "trained on": the false accusation rate the test guarantees."""


@dataclass(frozen=True)
class VerifyResult:
    """The verification test.

    Attributes:
        test: the key's rank among the controls, p-value and effect (:class:`umed.verify.stats.RankTest`).
        soft: scored on probabilities (``False``: on hard answers, where the suspect returns only masks).
        probes: probe files answered.
        slots: marked slots scored.
        key_fingerprint: the key's fingerprint.
        alpha: the level of the verdict.
    """

    test: RankTest
    soft: bool
    probes: int
    slots: int
    key_fingerprint: str
    alpha: float = ALPHA

    @property
    def p_value(self) -> float:
        return self.test.p_value

    @property
    def trained_on(self) -> bool:
        """The verdict: p at or below ``alpha``."""
        return self.test.p_value <= self.alpha

    def verdict(self) -> str:
        t = self.test
        where = f"p = {t.p_value:.3g} (the key ranks {t.rank} of {t.n_controls + 1} marks)"
        if self.trained_on:
            return f"trained on data marked with this key: {where}"
        return f"no evidence of training on data marked with this key at level {self.alpha:g}: {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "p_value": self.p_value,
            "min_p_value": self.test.min_p_value,
            "trained_on": self.trained_on,
            "verdict": self.verdict(),
        }


def check_key(manifest: ProbeManifest, key: MarkKey, *, key_path: Path | None = None) -> None:
    """Refuse a key that is not the one the probes were made for."""
    design = manifest.design
    if manifest.key_fingerprint != key.fingerprint or design.seeds[design.key_index] != key.seed:
        where = f"{key_path}: " if key_path is not None else ""
        raise InputError(
            f"{where}wrong key file for these probes (the probes were made for key {manifest.key_fingerprint}, "
            f"this key is {key.fingerprint})"
        )


def score_answers(
    manifest: ProbeManifest, key: MarkKey, answers: Mapping[str, Answer], *, alpha: float = ALPHA
) -> VerifyResult:
    """The test from the answers, by probe name (every probe of the manifest must be answered)."""
    check_key(manifest, key)
    soft = all(answers[f.name].soft for f in manifest.files)
    values = {
        f.name: answers[f.name].values if soft else (answers[f.name].values > 0.5).astype(np.float32)
        for f in manifest.files
    }
    marked = {(f.base, f.copy): values[f.name] for f in manifest.files if f.copy is not None}
    bases = {f.base: values[f.name] for f in manifest.files if f.copy is None}
    test = score_design(manifest.design, marked, bases)
    return VerifyResult(test, soft, len(manifest.files), len(manifest.design.placements), key.fingerprint, alpha)


def score_predictions(
    manifest: ProbeManifest, key: MarkKey, predictions: Path, *, alpha: float = ALPHA
) -> VerifyResult:
    """The test from a folder of prediction files (:mod:`umed.verify.answers`)."""
    check_key(manifest, key)
    answers = read_answers(Path(predictions), [(f.name, f.shape) for f in manifest.files])
    return score_answers(manifest, key, answers, alpha=alpha)


def score_with(
    manifest: ProbeManifest,
    key: MarkKey,
    probes: Path,
    *,
    key_path: Path | None = None,
    predictions: Path | None = None,
    model: Path | None = None,
    predict: str | None = None,
    spatial_dims: int = 2,
    window: tuple[int, ...] | None = None,
    alpha: float = ALPHA,
    json_path: Path | None = None,
) -> VerifyResult:
    """``umed verify score``: answers from exactly one of a predictions folder, a local model or a predict command,
    then the test (and its JSON, written atomically, when ``json_path`` is given)."""
    from umed.verify.suspect import predict_with_command, predict_with_model, probe_paths

    check_key(manifest, key, key_path=key_path)
    if predictions is not None:
        probe_paths(probes, manifest)  # the probes the answers are for are the ones made
        answers = read_answers(Path(predictions), [(f.name, f.shape) for f in manifest.files])
    elif model is not None:
        answers = predict_with_model(model, probes, manifest, spatial_dims=spatial_dims, window=window)
    elif predict is not None:
        answers = predict_with_command(predict, probes, manifest)
    else:
        raise InputError("verify: expected one of a predictions folder, a model or a predict command")
    result = score_answers(manifest, key, answers, alpha=alpha)
    if json_path is not None:
        from umed.io.atomic import write_json_atomic

        write_json_atomic(result.to_dict(), Path(json_path))
    return result
