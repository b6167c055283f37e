"""Protect a real dataset with one method and audit it: the efficacy protocol of the README.

Tasks, splits and labels: benchmarks/tasks.yaml (data root: $UMED_DATA, default ../shared/data). Test cases are
never used to fit the protector nor for tuning.

Usage::

    python benchmarks/efficacy.py --task brats_core --method umed --config umed/configs/brats_tumour_core.yaml \
        --victims unet --defenses none,intensity --tag default

Victims work at native resolution by default (the audit's default; ``--size N`` resamples); clean victim runs are
cached in benchmarks/runs/clean_cache so that several methods on one task train each clean victim once.

writes benchmarks/results/efficacy_<task>_<method>_<tag>.json (summary) and keeps the protected data and the full
report under benchmarks/runs/ (not committed; report.md and figures are copied to benchmarks/results/reports/ with
``--keep-report``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_ROOT, RESULTS, RUNS, TASKS, link_cases, peak_rss_mb, write_result  # noqa: E402


def _log_progress(description: str, completed: int, total: int) -> None:
    """Progress for logs: one line per victim epoch and at the end of every other task."""
    if completed == total or ("data" in description and completed > 0):
        print(f"{time.strftime('%H:%M:%S')} {description}: {completed}/{total}", file=sys.stderr, flush=True)


def run(
    task: str,
    method: str,
    config: Path | None,
    victims: list[str],
    defenses: list[str],
    tag: str,
    seed: int,
    epochs: int,
    overrides: dict,
    keep_report: bool,
    audit_seed: int | None = None,
    size: int | None = None,
    crop: int = 128,
    result_tag: str | None = None,
    method_overrides: dict | None = None,
    fixed_eps: bool = False,
    validation: bool = True,
) -> Path:
    import dataclasses

    from umed.audit import AuditConfig, run_audit
    from umed.protect import protect_dataset
    from umed.settings import load_protect_config

    spec = TASKS[task]
    name = f"efficacy_{task}_{method}_{tag}"
    work = RUNS / name
    data = RUNS / f"data_{task}"
    images, masks = link_cases(spec.images, spec.masks, [*spec.train, *spec.test], data, suffix=spec.suffix)
    # only the training cases are protected (the audit tests on clean images); the protected folder holds the clean
    # test images as links so that both folders name the same cases
    train_images, train_masks = link_cases(
        spec.images, spec.masks, list(spec.train), RUNS / f"data_{task}_train", suffix=spec.suffix
    )
    out = work / "protected"
    started = time.perf_counter()
    cfg = load_protect_config(
        config,
        images=train_images,
        masks=train_masks,
        out=out,
        method=method,
        seed=seed,
        structure_labels=spec.labels,
        fit_cases=spec.train,
        **overrides,
    )
    # --set method_settings.KEY=VALUE merges into the config's method settings; --no-target-psnr keeps the eps bounds
    # as given (no per-case rescale to a PSNR): both after loading, where None would mean "not given"
    cfg = dataclasses.replace(
        cfg,
        method_settings={**cfg.method_settings, **(method_overrides or {})},
        target_psnr=None if fixed_eps else cfg.target_psnr,
    )
    summary = protect_dataset(cfg, progress=_log_progress)
    protect_seconds = time.perf_counter() - started
    failed = [r for r in summary.results if r.status == "failed"]
    if failed:
        raise SystemExit(f"protect failed: {[(r.case_id, r.error) for r in failed]}")
    for case in spec.test:
        link = out / f"{case}{spec.suffix}"
        if not link.exists():
            link.symlink_to((images / f"{case}{spec.suffix}").resolve())
    started = time.perf_counter()
    report = run_audit(
        AuditConfig(
            clean=images,
            protected=out,
            masks=masks,
            out=work / "report",
            test_cases=spec.test,
            structure_labels=spec.labels,
            victims=tuple(victims),
            defenses=tuple(defenses),
            epochs=epochs,
            size=size,
            crop=crop,
            seed=seed if audit_seed is None else audit_seed,
            validation=validation,
            clean_cache=RUNS / "clean_cache",  # clean victims depend only on the clean data: train them once
        ),
        progress=_log_progress,
    )
    audit_seconds = time.perf_counter() - started
    train = [r for r in summary.results if r.case_id in spec.train]
    payload = {
        "task": task,
        "method": method,
        "tag": tag,
        "config": str(config) if config else None,
        "settings": cfg.to_dict(),
        "seed": seed,
        "victim_size": size if size else "native",
        "victim_crop": crop if not size else None,
        "epochs": epochs,
        "validation_fold": validation,
        "audit_seed": seed if audit_seed is None else audit_seed,
        "protect_seconds": round(protect_seconds, 1),
        "protect_seconds_note": "fit on the training cases + apply to them, one thread",
        "audit_seconds": round(audit_seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "train_cases": {
            r.case_id: {k: r.metrics.get(k) for k in ("psnr", "psnr_roi", "ssim", "max_abs_change_255")}
            | {"eps_255": r.details.get("eps_255")}
            for r in train
        },
        "imperceptibility_train_mean": report.imperceptibility,
        "threshold_floor": {
            "dice": report.floor.dice,
            "threshold": report.floor.threshold,
            "polarity": report.floor.polarity,
        },
        "threshold_floor_clean": {"dice": report.floor_clean.dice},
        "runs": [
            {
                "victim": r.victim,
                "defense": r.defense,
                "clean_best": r.clean.best_dice,
                "clean_last": r.clean.last_dice,
                "protected_best": r.protected.best_dice,
                "protected_last": r.protected.last_dice,
                "protected_over_clean_best": r.protected.best_dice / max(r.clean.best_dice, 1e-9),
                "clean_nnunet": r.clean.nnunet_dice if r.clean.val_dice else None,  # nnU-Net's selection rule
                "protected_nnunet": r.protected.nnunet_dice if r.protected.val_dice else None,
                "mix_gain": r.mix_gain,  # mix: Dice gain over the clean half alone, per rule (else None)
                "clean_best_epoch": r.clean.best_epoch,
                "protected_best_epoch": r.protected.best_epoch,
                "clean_hd95_last": getattr(r.clean, "last_hd95", None),
                "protected_hd95_last": getattr(r.protected, "last_hd95", None),
                "clean_curve": list(r.clean.test_dice),
                "protected_curve": list(r.protected.test_dice),
                "verdict": r.verdict,
            }
            for r in report.runs
        ],
    }
    import json

    doc = json.loads(summary.protector_path.read_text()) if summary.protector_path else {}
    payload["protector_training_seconds"] = doc.get("training_seconds")
    payload["protector_training_log"] = {
        k: v for k, v in (doc.get("training_log") or {}).items() if not k.endswith("_curve")
    }
    if keep_report:
        target = RESULTS / "reports" / (f"efficacy_{task}_{method}_{result_tag}" if result_tag else name)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(work / "report", target, ignore=shutil.ignore_patterns("*.npz", "*.npy"))
        for text_file in target.rglob("*.md"):  # committed reports name no path of the machine that ran them
            text = text_file.read_text()
            for base, label in ((RUNS.parent, ""), (DATA_ROOT, "$UMED_DATA/")):
                text = text.replace(f"{base}/", label)
            text_file.write_text(text)
        payload["report"] = str(target.relative_to(RESULTS.parent.parent))
    return write_result(f"efficacy_{task}_{method}_{result_tag}" if result_tag else name, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--method", default="umed")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--victims", default="unet")
    parser.add_argument("--defenses", default="none")
    parser.add_argument("--tag", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audit-seed", type=int)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="resample the victims' slices (the audit's --size); default: native resolution",
    )
    parser.add_argument("--crop", type=int, default=128, help="native training patch side (the audit's --crop)")
    parser.add_argument("--eps", type=str, help="override eps_contour and eps_texture, e.g. 8/255")
    parser.add_argument("--target-psnr", type=float)
    parser.add_argument(
        "--no-target-psnr",
        action="store_true",
        help="ignore the config's target_psnr: protect at the fixed eps bounds (e.g. with --eps 8/255)",
    )
    parser.add_argument(
        "--no-validation",
        action="store_true",
        help="fit the victims on every training case (no nnU-Net validation fold): the protocol of the "
        "results measured before the three selection rules",
    )
    parser.add_argument("--keep-report", action="store_true")
    parser.add_argument(
        "--result-tag",
        help="name the result file with this tag instead of --tag (the protected data "
        "of --tag are reused: another set of victims on the same protection)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a ProtectConfig field (YAML value), e.g. --set band_width=1 --set 'window=[0, 255]'; "
        "method_settings.KEY=VALUE overrides one method setting",
    )
    args = parser.parse_args()
    overrides: dict = {}
    method_overrides: dict = {}
    if args.eps:
        overrides.update(eps_contour=args.eps, eps_texture=args.eps)
    if args.target_psnr is not None:
        overrides["target_psnr"] = args.target_psnr
    import yaml

    for item in args.set:
        key, _, value = item.partition("=")
        if key.startswith("method_settings."):
            method_overrides[key.removeprefix("method_settings.")] = yaml.safe_load(value)
        else:
            overrides[key] = yaml.safe_load(value)
    path = run(
        args.task,
        args.method,
        args.config,
        args.victims.split(","),
        args.defenses.split(","),
        args.tag,
        args.seed,
        args.epochs,
        overrides,
        args.keep_report,
        args.audit_seed,
        args.size,
        args.crop,
        args.result_tag,
        method_overrides,
        args.no_target_psnr,
        validation=not args.no_validation,
    )
    print(path)


if __name__ == "__main__":
    main()
