"""umed.protect.threads: the protector's arithmetic runs with one torch thread, so a protect run writes the same bytes
and manifest serially, on 2 local workers, on a 2-worker Dask LocalCluster, and with 1 or 2 torch threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from umed.phantom import make_phantom_dataset
from umed.protect import ProtectSummary, protect_dataset
from umed.protect.threads import PROTECT_THREADS, fixed_threads
from umed.settings import ProtectConfig


def test_fixed_threads_restores_the_callers_count_after_an_error() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError), fixed_threads():
            assert torch.get_num_threads() == PROTECT_THREADS
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_blocks_in_two_threads_each_run_with_the_fixed_count_and_restore_their_own() -> None:
    """torch's count is per thread: a block in a second thread (2 threads there) does not touch this thread's."""
    seen: dict[str, int] = {}

    def second() -> None:
        torch.set_num_threads(2)
        with fixed_threads():
            seen["inside"] = torch.get_num_threads()
        seen["after"] = torch.get_num_threads()

    with fixed_threads():
        worker = threading.Thread(target=second)
        worker.start()
        worker.join(30)
        seen["here"] = torch.get_num_threads()
    assert seen == {"inside": PROTECT_THREADS, "after": 2, "here": PROTECT_THREADS}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_phantom_dataset(tmp_path_factory.mktemp("phantoms"), n_cases=3, ndim=3, shape=(40, 40, 6), seed=4)


def _run(phantoms, out: Path, settings: dict, *, threads: int = 1, protector: Path | None = None, **engine):
    """One protect run with ``threads`` torch threads in this process (fit and serial apply)."""
    images, masks = phantoms
    cfg = ProtectConfig(
        images=images,
        masks=masks,
        out=out,
        seed=1,
        target_psnr=50.0,
        method_settings=settings,
        protector=protector,
        mark=False,  # the protector's arithmetic (the mark alone is numpy, the same with any thread count)
    )
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return protect_dataset(cfg, **engine)
    finally:
        torch.set_num_threads(before)


def _outputs(summary: ProtectSummary) -> dict[str, bytes]:
    return {result.output_path.name: result.output_path.read_bytes() for result in summary.results}


def _manifest(summary: ProtectSummary) -> dict:
    """The manifest apart from the output folder and each case's seconds."""
    document = json.loads(summary.manifest_path.read_text())
    document["settings"].pop("out")
    for entry in document["cases"].values():
        entry.pop("seconds")
    return document


@pytest.mark.slow
def test_same_bytes_serial_on_workers_on_a_cluster_and_with_one_or_two_threads(
    phantoms, tiny_fit_settings, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    settings = tiny_fit_settings["umed"]
    one = _run(phantoms, tmp_path / "one", settings, threads=1)
    two = _run(phantoms, tmp_path / "two", settings, threads=2)
    assert [r.status for r in one.results] == ["protected"] * 3
    assert (tmp_path / "one" / "protector.pt").read_bytes() == (tmp_path / "two" / "protector.pt").read_bytes()
    assert _outputs(one) == _outputs(two)
    assert _manifest(one) == _manifest(two)

    protector = one.protector_path
    applied = {
        "serial, 2 threads": _run(phantoms, tmp_path / "a2", settings, threads=2, protector=protector),
        "serial, 1 thread": _run(phantoms, tmp_path / "a1", settings, threads=1, protector=protector),
        "2 workers": _run(phantoms, tmp_path / "w2", settings, threads=2, protector=protector, workers=2),
    }
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        applied["cluster"] = _run(
            phantoms, tmp_path / "c2", settings, threads=2, protector=protector, scheduler=address
        )
    reference = applied["serial, 2 threads"]
    for name, summary in applied.items():
        assert [r.status for r in summary.results] == ["protected"] * 3, name
        assert _outputs(summary) == _outputs(one), name  # the fitting run's bytes too
        assert _manifest(summary) == _manifest(reference), name
