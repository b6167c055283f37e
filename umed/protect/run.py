"""The protect run (:func:`protect_dataset`): fit a protector on a dataset (or load one), apply it to every case,
write each case back in its own format, and keep a manifest that makes the run auditable and resumable.

The run is a flow of named steps, one module each:

- :mod:`umed.io`: find the cases (:func:`umed.io.discover_cases`), lock and sweep OUT;
- plan (:func:`umed.protect.plan.plan_run`): the cases' hashes, the resume key, then load, reuse or fit the
  protector (:mod:`umed.protect.fit`);
- apply: every case by :func:`umed.protect.case.protect_job` (on :func:`umed.protect.engine.map_jobs`), which calls
  :func:`umed.protect.apply.protect_array` (the per-case budget, the exact-PSNR rescale, file units);
- manifest: :mod:`umed.protect.manifest`, written after every case.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umed.case import Case, CaseResult
from umed.protect.case import Hashes, lost_job, protect_job
from umed.protect.fit import Plan
from umed.protect.manifest import MANIFEST_NAME, CaseOutcome, Manifest, umed_version
from umed.protectors.base import ProgressCallback
from umed.settings import ProtectConfig

__all__ = ["ProtectSummary", "protect_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class ProtectSummary:
    """What a protect run did: one :class:`CaseResult` per case, the protector's JSON and the manifest path."""

    results: list[CaseResult]
    manifest_path: Path
    protector_path: Path | None
    protector_log: dict[str, Any] = field(default_factory=dict)
    key_path: Path | None = None  # the secret key's file (never inside OUT), None without marking
    private_cases: tuple[str, ...] = ()  # cases kept private (not written), from the key file
    restore_key: Path | None = None

    @property
    def failed(self) -> list[CaseResult]:
        """The cases that could not be protected."""
        return [result for result in self.results if result.status == "failed"]


def protect_dataset(
    cfg: ProtectConfig,
    *,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
    workers: int | str = 1,
    scheduler: str | Path | None = None,
    restore_key: Path | None = None,
) -> ProtectSummary:
    """Protect every case of a dataset and write OUT/ (cases in their own format, protector, manifest.json).

    A bad case is recorded in the summary and the manifest and the run goes on; a case with an empty mask is copied
    unchanged (with a warning) so that the released dataset stays complete. OUT is locked for the run
    (:mod:`umed.io.lock`) and temporary files a killed run left in it are removed first. An OUT written before with
    the same resume key (:mod:`umed.protect.plan`) is resumed: its protector is reused and a case is skipped when its
    image, mask and output still have the recorded SHA-256, so the final bytes are an uninterrupted run's. An OUT
    written with another key is refused unless ``overwrite`` (which first deletes what the earlier run wrote).

    The fit runs here; the cases are applied by :func:`umed.protect.engine.map_jobs`: in this process (``workers=1``),
    in ``workers`` local processes (``"auto"``: :func:`umed.protect.engine.resolve_workers`), or on the Dask cluster at
    ``scheduler``. The outputs and the manifest are the same
    bytes either way (apart from each case's ``seconds``); the manifest is written here, in case order.

    With ``restore_key``, a secret file outside OUT is written after the run from which ``umed restore``
    (:func:`umed.protect.restore.restore_dataset`) gives back every written case's original file, bit for bit.

    Raises:
        ConfigError: OUT inside an input folder, a restore key inside OUT or an input folder, OUT written with
            other settings, no structure to protect, unreachable scheduler.
        InputError: the image folder cannot be read.
        OutputError: OUT is a file, cannot be written, or another run holds its lock.
    """
    from umed.io import check_output_location, discover_cases
    from umed.io.atomic import output_mode, sweep_temporaries
    from umed.io.lock import output_lock
    from umed.protect.manifest import captured_warnings
    from umed.protect.plan import case_hashes, plan_run
    from umed.protect.restore import check_key_location, write_restore_key

    check_output_location(cfg.out, [cfg.images] + ([cfg.masks] if cfg.masks else []))
    if restore_key is not None:
        check_key_location(restore_key, cfg.out, [cfg.images, cfg.masks])
    with captured_warnings() as warnings:
        cases = discover_cases(cfg.images, cfg.masks)
        with output_lock(cfg.out):
            for path in sweep_temporaries(cfg.out):
                logger.warning("%s: removed a temporary file left by an interrupted run", path)
            hashes = case_hashes(cases)
            mode = output_mode(*(case.image_path for case in cases))
            mark = _release_key(cfg, cases)
            if mark is not None and mark[0].private_cases:  # the owner's private cases are never written to OUT
                private = set(mark[0].private_cases)
                cases = [case for case in cases if case.case_id not in private]
            cfg, plan, previous = plan_run(cfg, cases, hashes, overwrite, mode, progress, mark)
            summary = _apply_all(cfg, cases, hashes, plan, previous, mode, warnings, progress, workers, scheduler, mark)
            summary.key_path = mark[1] if mark is not None else None
            summary.private_cases = mark[0].private_cases if mark is not None else ()
            if restore_key is not None:
                inputs = {case.case_id: case.image_path for case in cases}
                pairs = [
                    (r.case_id, inputs[r.case_id], r.output_path)
                    for r in summary.results
                    if r.output_path is not None and r.status != "failed"
                ]
                summary.restore_key = write_restore_key(pairs, restore_key)
            return summary


def _release_key(cfg: ProtectConfig, cases: Sequence[Case]) -> tuple[Any, Path] | None:
    """The release's secret key and its file (drawn and saved now, or reused), or ``None`` without marking and
    without private cases."""
    if not cfg.mark and not cfg.private_share:
        return None
    from umed.verify.key import release_key

    ids = [case.case_id for case in cases]
    key, path, drawn = release_key(cfg.out, cfg.key_out, ids, cfg.private_share)
    logger.info("%s: key %s (%s)", path, key.fingerprint, "drawn now" if drawn else "reused")
    return key, path


def _manifest_header(cfg: ProtectConfig, plan: Plan) -> dict[str, Any]:
    """The manifest's run record: settings, protector, resume key, training cases, versions."""
    from umed.io.provenance import package_versions
    from umed.protect.plan import key_digest

    path = plan.path
    return {
        "umed": umed_version(),
        "settings": {k: v for k, v in cfg.to_dict().items() if k != "key_out"},  # where the key is: not released
        "protector": plan.protector.config() if plan.protector is not None else None,
        "protector_file": None if path is None else (path.name if path.parent == cfg.out else str(path)),
        "mark": cfg.mark,  # the key itself is never here: OUT is what gets released
        "resume_key": plan.key,
        "resume_key_sha256": key_digest(plan.key),
        "fit_cases": plan.fit_ids,
        "data_range": "normalised intensity, 1.0 = the case's intensity mapping span",
        "versions": package_versions(),
    }


def _apply_all(
    cfg: ProtectConfig,
    cases: Sequence[Case],
    hashes: dict[str, Hashes],
    plan: Plan,
    previous: dict[str, Any] | None,
    mode: int,
    warnings: list[str],
    progress: ProgressCallback | None,
    workers: int | str = 1,
    scheduler: str | Path | None = None,
    mark: tuple[Any, Path] | None = None,
) -> ProtectSummary:
    """Apply the planned protector to every case, writing the manifest after each one."""
    from umed.io.atomic import write_json_atomic
    from umed.protect.engine import map_jobs, resolve_workers

    manifest_path = cfg.out / MANIFEST_NAME
    done_before = (previous or {}).get("cases", {})
    # then each case's own warnings, in case order (a worker's are logged where it runs)
    manifest = Manifest(_manifest_header(cfg, plan), before=list(warnings), warnings=warnings)
    outcomes: dict[str, CaseOutcome] = {r.case_id: CaseOutcome(r) for r in plan.failures}
    jobs = [
        (case, done_before.get(case.case_id), hashes[case.case_id]) for case in cases if case.case_id not in outcomes
    ]
    if progress:
        progress("protecting cases", len(outcomes), len(cases))
    shared = (cfg, plan.protector, mode, mark[0] if mark is not None and cfg.mark else None)
    generator = not (cfg.mark and mark is not None and mark[0].share >= 1)  # the mark alone runs no generator
    processes = resolve_workers(workers, len(jobs), generator=generator)
    for _, outcome in map_jobs(protect_job, jobs, shared, workers=processes, scheduler=scheduler, lost=lost_job):
        outcomes[outcome.result.case_id] = outcome
        manifest.fill(cases, outcomes)
        write_json_atomic(manifest.to_json(), manifest_path, mode=mode)
        if progress:
            progress("protecting cases", len(outcomes), len(cases))
    manifest.fill(cases, outcomes)
    write_json_atomic(manifest.to_json(), manifest_path, mode=mode)
    results = [outcomes[case.case_id].result for case in cases]
    return ProtectSummary(results, manifest_path, plan.path, plan.document.get("training_log", {}))
