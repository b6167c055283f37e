"""Faults a protect run must report clearly and survive (issue 12), on real BraTS crops: every bad case named with
its problem while the batch goes on, nothing half-written left in OUT, consistent file modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umed.errors import ConfigError, InputError, OutputError
from umed.protect import protect_dataset
from umed.protect.protector_io import load_protector

CASE_A, CASE_B = "brats_2013_pat0003_1", "brats_2013_pat0004_1"
ROOT = Path(__file__).resolve().parents[2]


def _statuses(summary) -> dict[str, str]:
    return {result.case_id: result.status for result in summary.results}


def _error(summary, case_id: str) -> str:
    return next(result.error for result in summary.results if result.case_id == case_id)


def test_zero_byte_image_and_mask_fail_their_case_only(data, config, tmp_path: Path) -> None:
    images, masks = data
    (images / "zero_image.nii.gz").write_bytes(b"")
    nib.save(nib.load(masks / f"{CASE_A}.nii.gz"), masks / "zero_image.nii.gz")
    nib.save(nib.load(images / f"{CASE_A}.nii.gz"), images / "zero_mask.nii")
    (masks / "zero_mask.nii").write_bytes(b"")
    summary = protect_dataset(config(images, masks, tmp_path / "out"))
    status = _statuses(summary)
    assert status[CASE_A] == status[CASE_B] == "protected"
    assert status["zero_image"] == status["zero_mask"] == "failed"
    assert "zero_image.nii.gz: not a NIfTI file (expected a 348- or 540-byte header, got 0 bytes)" in _error(
        summary, "zero_image"
    )
    assert "zero_mask.nii: not a NIfTI file" in _error(summary, "zero_mask")


def test_every_case_with_structure_invalid_reports_each_and_passes_empty_ones(data, config, tmp_path: Path) -> None:
    images, masks = data
    for case in (CASE_A, CASE_B):  # a mask one slice short: a geometry error per case
        mask = nib.load(masks / f"{case}.nii.gz")
        nib.save(mask.slicer[:, :, :-1], masks / f"{case}.nii.gz")
    empty = nib.load(images / f"{CASE_A}.nii.gz")
    nib.save(empty, images / "empty.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(empty.shape, np.uint8), empty.affine), masks / "empty.nii.gz")
    summary = protect_dataset(config(images, masks, tmp_path / "out"))
    assert _statuses(summary) == {CASE_A: "failed", CASE_B: "failed", "empty": "passed_through"}
    for case in (CASE_A, CASE_B):
        assert f"{case}.nii.gz: mask shape differs from the image" in _error(summary, case)
    assert (tmp_path / "out" / "empty.nii.gz").read_bytes() == (images / "empty.nii.gz").read_bytes()


def test_labels_present_nowhere_list_the_labels_that_exist(data, config, tmp_path: Path) -> None:
    images, masks = data
    with pytest.raises(
        ConfigError,
        match=r"no case has any voxel of label\(s\) \[7\] \(expected labels present in "
        r"the masks: \[1, 2, 3, 4\]\)",
    ):
        protect_dataset(config(images, masks, tmp_path / "out", structure_labels=(7,)))
    assert not (tmp_path / "out").exists(), "an early refusal left an empty OUT"


def test_negative_labels_are_an_error_of_their_case(data, config, tmp_path: Path) -> None:
    images, masks = data
    mask = nib.load(masks / f"{CASE_B}.nii.gz")
    labels = np.asarray(mask.dataobj).astype(np.int16)
    labels[labels == 4] = -1
    nib.save(nib.Nifti1Image(labels, mask.affine), masks / f"{CASE_B}.nii.gz")
    summary = protect_dataset(config(images, masks, tmp_path / "out"))
    assert _statuses(summary) == {CASE_A: "protected", CASE_B: "failed"}
    assert f"{CASE_B}.nii.gz: negative labels (expected labels >= 0" in _error(summary, CASE_B)
    with pytest.raises(ConfigError, match="structure_labels: labels must be >= 0"):
        config(images, masks, tmp_path / "o2", structure_labels=(-1, 1))


def test_mask_without_image_is_reported_and_nfd_names_pair(data, config, tmp_path: Path) -> None:
    images, masks = data
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    os.rename(images / f"{CASE_B}.nii.gz", images / f"{nfc}.nii.gz")
    os.rename(masks / f"{CASE_B}.nii.gz", masks / f"{nfd}.nii.gz")
    nib.save(nib.load(masks / f"{CASE_A}.nii.gz"), masks / "orphan.nii.gz")
    summary = protect_dataset(config(images, masks, tmp_path / "out"))
    assert _statuses(summary) == {CASE_A: "protected", nfc: "protected"}
    warnings = json.loads(summary.manifest_path.read_text())["warnings"]
    assert any("orphan.nii.gz: mask without an image" in warning for warning in warnings)


def test_out_that_is_a_file_and_unwritable_out_are_clear_errors(data, config, tmp_path: Path) -> None:
    images, masks = data
    (tmp_path / "out_file").write_text("x")
    with pytest.raises(OutputError, match="out_file: not a folder"):
        protect_dataset(config(images, masks, tmp_path / "out_file"))
    with pytest.raises(OutputError, match="cannot create the output folder"):
        protect_dataset(config(images, masks, tmp_path / "out_file" / "below"))


def test_file_modes_are_0644_or_the_stricter_input_mode(data, config, tmp_path: Path) -> None:
    images, masks = data
    empty = nib.load(images / f"{CASE_A}.nii.gz")
    nib.save(empty, images / "empty.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(empty.shape, np.uint8), empty.affine), masks / "empty.nii.gz")
    old = os.umask(0o022)
    try:
        protect_dataset(config(images, masks, tmp_path / "open"))
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "open").iterdir()}
        assert set(modes.values()) == {0o644}, modes
        for path in images.iterdir():
            path.chmod(0o600)
        protect_dataset(config(images, masks, tmp_path / "private"))
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "private").iterdir()}
        assert set(modes.values()) == {0o600}, modes
    finally:
        os.umask(old)


def test_protector_json_without_weights_sha256_is_refused(data, config, tmp_path: Path) -> None:
    images, masks = data
    protect_dataset(config(images, masks, tmp_path / "out"))
    document = json.loads((tmp_path / "out" / "protector.json").read_text())
    del document["weights_sha256"]
    (tmp_path / "out" / "protector.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="protector.json: no weights_sha256"):
        load_protector(tmp_path / "out" / "protector.json")


def _run_python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_temporary_file_of_a_writer_killed_mid_write_is_swept(data, config, tmp_path: Path) -> None:
    images, masks = data
    out = tmp_path / "out"
    protect_dataset(config(images, masks, out))
    writer = _run_python(f"""
        import time
        from umed.io.atomic import atomic_file
        with atomic_file({str(out / (CASE_A + ".nii.gz"))!r}) as temp:
            temp.write_bytes(b"half a volume")
            print(temp, flush=True)
            time.sleep(60)
    """)
    temp = Path(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert temp.is_file() and temp.name.startswith(f".{CASE_A}.nii.gz."), "the killed writer left no temporary file"
    summary = protect_dataset(config(images, masks, out))
    assert set(_statuses(summary).values()) == {"skipped"}
    assert not temp.exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert any("removed a temporary file" in w for w in json.loads(summary.manifest_path.read_text())["warnings"])


@pytest.mark.slow
def test_write_failure_is_a_per_case_error_not_a_traceback(data, config, tmp_path: Path) -> None:
    """A file-size limit makes every large write fail in the OS (EFBIG), as a full disk does with ENOSPC."""
    images, masks = data
    protect_dataset(config(images, masks, tmp_path / "fit"))
    out = tmp_path / "out"
    limit = 100_000  # the manifest fits, a protected volume (~250 kB) does not
    code = f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from umed.cli import app
        app(["protect", {str(images)!r}, "-m", {str(masks)!r}, "-o", {str(out)!r},
             "--protector", {str(tmp_path / "fit" / "protector.json")!r}, "--no-mark"])
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{CASE_A}.nii.gz: cannot write the output (File too large)" in done.stdout
    assert "2 of 2 case(s) failed" in done.stderr
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def _in_own_mount_namespace(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )


@pytest.mark.slow
def test_read_only_and_full_file_systems_are_clear_errors(data, config, tmp_path: Path) -> None:
    """Real file systems (tmpfs in a private mount namespace): read-only OUT refused before the fit, a full disk
    (ENOSPC) a per-case error, no temporary file left."""
    if _in_own_mount_namespace(f"mount -t tmpfs -o size=64k tmpfs {tmp_path}").returncode != 0:
        pytest.skip("needs unshare -m and mount (root in a container)")
    images, masks = data
    protect_dataset(config(images, masks, tmp_path / "fit"))
    umed = f"{sys.executable} -c 'from umed.cli import app; app()' protect {images} -m {masks}"
    mount = tmp_path / "mnt"
    mount.mkdir()
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("method_settings: {steps: 2, crop: 32, batch_size: 2, base_channels: 4}\n")
    read_only = _in_own_mount_namespace(f"mount -t tmpfs -o ro tmpfs {mount} && {umed} -o {mount}/out -c {tiny}")
    assert read_only.returncode == 1 and "Traceback" not in read_only.stdout + read_only.stderr
    assert f"{mount}/out: cannot create the output folder (Read-only file system)" in read_only.stderr
    full = _in_own_mount_namespace(
        f"mount -t tmpfs -o size=120k tmpfs {mount} && {umed} -o {mount}/out --no-mark"
        f" --protector {tmp_path}/fit/protector.json"
        f" ; echo status=$? ; ls -A {mount}/out"
    )
    assert "status=1" in full.stdout and "Traceback" not in full.stdout + full.stderr, full.stdout + full.stderr
    assert "cannot write the output (No space left on device)" in full.stdout
    listing = full.stdout.split("status=1")[1].split()
    assert not [name for name in listing if name.startswith(".")], listing
