"""Fast screen of protection designs on BraTS tumour core (issue 14): one short victim run per defense.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/research/screen.py --designs ckb1,ckb3 --defenses none,gaussian,augment \
        --tag batch1 [--target-db 50] [--protocol v2]

writes benchmarks/results/research_screen_<tag>.json: per design the per-case PSNR / L-inf, the protector's training
log (package designs), and per defense the protected and clean screening runs (best, last, mean of the second half
of the epochs, curves). Protocol: see ``harness.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import designs  # noqa: E402
import harness  # noqa: E402
from _common import write_result  # noqa: E402


def protect(design: designs.Design, cases: dict, target_db: float, cap_255: float) -> tuple[dict, dict, dict]:
    if design.method is None:
        protected, stats = harness.protect_fixed(cases, design.pattern, target_db=target_db, cap=cap_255 / 255)
        return protected, stats, {}
    overrides = {k: v for k, v in design.overrides.items()}
    if design.config is None or "target_psnr" in overrides or target_db != harness.TARGET_DB or cap_255 != 24:
        overrides.update(target_psnr=target_db, eps_cap=f"{cap_255:g}/255")
    default = target_db == harness.TARGET_DB and cap_255 == 24
    name = design.name if default else f"{design.name}_{target_db:g}db_cap{cap_255:g}"
    return harness.protect_package(
        name, design.method, config=design.config, overrides=overrides, method_settings=design.settings, cases=cases
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", required=True)
    parser.add_argument("--defenses", default="none,gaussian,augment")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--target-db", type=float, default=harness.TARGET_DB)
    parser.add_argument("--eps-cap", type=float, default=24.0, help="L-inf cap per case, in 1/255 (default 24)")
    parser.add_argument(
        "--protocol", default="v1", choices=harness.PROTOCOLS.names(), help="named screen protocol (default v1)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a ScreenSettings field, e.g. --set epochs=12 --set crop=96",
    )
    args = parser.parse_args()
    settings = harness.PROTOCOLS.get(args.protocol)
    for item in args.set:
        key, _, value = item.partition("=")
        kind = type(getattr(settings, key))
        settings = dataclasses.replace(settings, **{key: kind(value)})
    cases = harness.load_cases()
    sets = harness.screen_sets(cases, settings)
    defenses = args.defenses.split(",")
    record = {
        "protocol_name": args.protocol if not args.set else f"{args.protocol}+{'+'.join(args.set)}",
        "protocol": asdict(settings),
        "target_db": args.target_db,
        "eps_cap_255": args.eps_cap,
        "defenses": defenses,
        "train_slices": int(len(sets.train_labels)),
        "test_slices": int(len(sets.test_y)),
        "designs": {},
    }
    clean = {d: harness.clean_run(sets, d, settings) for d in defenses}
    record["clean"] = clean
    for name in args.designs.split(","):
        design = designs.get(name)
        started = time.perf_counter()
        protected, stats, log = protect(design, cases, args.target_db, args.eps_cap)
        protect_seconds = time.perf_counter() - started
        train_x = harness.protected_slices(sets, protected)
        entry = {
            "summary": design.summary,
            "method": design.method,
            "settings": design.settings,
            "cases": stats,
            "protector_log": log,
            "protect_seconds": round(protect_seconds, 1),
            "runs": {},
        }
        for defense in defenses:
            run = harness.screen_run(sets, train_x, defense, settings)
            run["ratio_best"] = round(run["best"] / max(clean[defense]["best"], 1e-9), 4)
            entry["runs"][defense] = run
            print(
                f"{time.strftime('%H:%M:%S')} {name:18s} {defense:10s} best {run['best']:.3f} last {run['last']:.3f} "
                f"late {run['late_mean']:.3f} | clean {clean[defense]['best']:.3f} | psnr "
                f"{min(s['psnr'] for s in stats.values()):.2f}",
                flush=True,
            )
        record["designs"][name] = entry
        write_result(f"research_screen_{args.tag}", record)  # after every design: a crash keeps what was measured


if __name__ == "__main__":
    main()
