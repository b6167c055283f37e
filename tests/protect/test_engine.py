"""umed.protect.engine through umed.protect.protect_dataset on real BraTS cases (cut small): local worker processes
and a Dask LocalCluster give the serial run's bytes and manifest, and a worker killed during a case loses nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import umed
from umed.errors import ConfigError
from umed.protect import ProtectSummary, protect_dataset
from umed.protect.engine import map_jobs
from umed.settings import ProtectConfig

BRATS = Path(__file__).resolve().parents[3] / "shared" / "data" / "brats2015"
CASES = ("brats_2013_pat0001_1", "brats_2013_pat0003_1", "brats_2013_pat0004_1")


@pytest.fixture(scope="module")
def brats_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three real BraTS T1c cases cut to 80 x 80 x 16 voxels around the tumour centre, written as NIfTI."""
    if not BRATS.is_dir():
        pytest.skip("../shared/data/brats2015 not available")
    root = tmp_path_factory.mktemp("brats_small")
    images, masks = root / "images", root / "masks"
    images.mkdir(), masks.mkdir()
    for case in CASES:
        image, mask = nib.load(BRATS / "t1c" / f"{case}.nii.gz"), nib.load(BRATS / "masks" / f"{case}.nii.gz")
        labels = np.asarray(mask.dataobj)
        x, y, z = (int(np.flatnonzero(labels.any(axis=axes)).mean()) for axes in ((1, 2), (0, 2), (0, 1)))
        box = (slice(x - 40, x + 40), slice(y - 40, y + 40), slice(z - 8, z + 8))
        nib.save(image.slicer[box], images / f"{case}.nii.gz")
        nib.save(mask.slicer[box], masks / f"{case}.nii.gz")
    return images, masks


@pytest.fixture(scope="module")
def protector_path(brats_small: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, tiny_fit_settings) -> Path:
    """A tiny UMed protector fitted (on the client) on the three cases, tumour core, 50 dB."""
    images, masks = brats_small
    cfg = ProtectConfig(
        images=images,
        masks=masks,
        out=tmp_path_factory.mktemp("fit"),
        method="umed",
        seed=0,
        structure_labels=(1, 3, 4),
        target_psnr=50.0,
        method_settings=tiny_fit_settings["umed"],
        mark=False,  # a fitted protector (the mark alone fits nothing)
    )
    return protect_dataset(cfg).protector_path


def _apply(brats_small: tuple[Path, Path], protector: Path, out: Path, **engine) -> ProtectSummary:
    images, masks = brats_small
    # no mark: these runs exercise the protector itself on every engine
    return protect_dataset(
        ProtectConfig(images=images, masks=masks, out=out, protector=protector, mark=False), **engine
    )


@pytest.fixture(scope="module")
def serial(brats_small, protector_path, tmp_path_factory) -> ProtectSummary:
    return _apply(brats_small, protector_path, tmp_path_factory.mktemp("serial") / "out", workers=1)


def _assert_same_run(run: ProtectSummary, reference: ProtectSummary) -> None:
    """Same output bytes, same manifest apart from the output folder and each case's seconds, nothing else left."""
    assert [r.status for r in run.results] == ["protected"] * len(CASES)
    for result in reference.results:
        assert (run.manifest_path.parent / result.output_path.name).read_bytes() == result.output_path.read_bytes()
    documents = []
    for summary in (run, reference):
        document = json.loads(summary.manifest_path.read_text())
        document["settings"].pop("out")
        for entry in document["cases"].values():
            entry.pop("seconds")
        documents.append(document)
    assert documents[0] == documents[1]
    assert list(documents[0]["cases"]) == list(CASES)  # case order, whatever order the workers finished in
    names = sorted(p.name for p in run.manifest_path.parent.iterdir())
    assert names == sorted([f"{case}.nii.gz" for case in CASES] + ["manifest.json"])


def test_two_local_workers_give_the_serial_bytes_and_manifest(brats_small, protector_path, serial, tmp_path) -> None:
    _assert_same_run(_apply(brats_small, protector_path, tmp_path / "out", workers=2), serial)


def test_a_local_cluster_gives_the_serial_bytes_and_manifest_and_survives_a_killed_worker(
    brats_small, protector_path, serial, tmp_path
) -> None:
    """A 2-worker LocalCluster through --scheduler; then again, killing the worker that is computing a case."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        assert set(client.run(_umed_file).values()) == {umed.__file__}  # the workers run this tree's code
        _assert_same_run(
            _apply(brats_small, protector_path, tmp_path / "cluster", scheduler=cluster.scheduler_address), serial
        )

        runs: dict[str, ProtectSummary] = {}
        thread = threading.Thread(
            target=lambda: runs.setdefault(
                "killed", _apply(brats_small, protector_path, tmp_path / "killed", scheduler=cluster.scheduler_address)
            )
        )
        thread.start()
        busy = _wait_for_a_busy_worker(client)
        pids = client.run(os.getpid)
        os.kill(pids[busy], signal.SIGKILL)
        thread.join(timeout=240)
        assert not thread.is_alive()
        assert busy not in client.scheduler_info()["workers"] or client.run(os.getpid).get(busy) != pids[busy]
    _assert_same_run(runs["killed"], serial)


def _umed_file() -> str:
    import umed as package

    return package.__file__


def _executing(dask_worker) -> list[str]:
    return [str(task.key) for task in dask_worker.state.executing]


def _wait_for_a_busy_worker(client, timeout: float = 120.0) -> str:
    """The address of the first worker seen executing a case (not merely holding it in its queue)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [worker for worker, keys in client.run(_executing).items() if any("protect_job" in k for k in keys)]
        if busy:
            return busy[0]
        time.sleep(0.01)
    raise AssertionError("no worker started a case")


def test_map_jobs_keeps_every_result_with_its_index_and_refuses_zero_workers() -> None:
    assert sorted(map_jobs(divmod, [7, 9, 11], 4, workers=1)) == [(0, (1, 3)), (1, (2, 1)), (2, (2, 3))]
    with pytest.raises(ConfigError, match="workers"):
        list(map_jobs(divmod, [1], 2, workers=0))


def test_an_unreachable_scheduler_is_a_clear_error(brats_small, protector_path, tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        _apply(brats_small, protector_path, tmp_path / "out", scheduler="tcp://127.0.0.1:9")


def test_a_missing_scheduler_file_is_a_clear_error(brats_small, protector_path, tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such scheduler file"):
        _apply(brats_small, protector_path, tmp_path / "out", scheduler=str(tmp_path / "scheduler.json"))
