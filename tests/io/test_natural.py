"""PNG and TIFF: grey images round-trip pixel for pixel; colour, stacks and broken files are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from umed.errors import InputError
from umed.io import load_case, load_mask, quantize, save_case


def test_every_isbi_image_and_mask_round_trips_bit_for_bit(isbi_dir: Path, tmp_path: Path) -> None:
    for folder in ("images", "masks"):
        sources = sorted((isbi_dir / folder).glob("*.png"))
        assert len(sources) == 30
        for source in sources:
            array, meta = load_case(source)
            assert array.shape == meta.shape == (512, 512) and array.dtype == np.uint8
            assert meta.format == "png" and meta.case_id == source.stem
            out = save_case(array, meta, tmp_path / folder / source.name)
            reread = np.asarray(Image.open(out))
            assert reread.dtype == np.uint8 and reread.tobytes() == np.asarray(Image.open(source)).tobytes()
            assert Image.open(out).mode == "L"
    assert len(list((tmp_path / "images").iterdir())) == 30


def test_isbi_mask_loads_as_integer_labels(isbi_dir: Path) -> None:
    image, meta = load_case(isbi_dir / "images" / "0.png")
    labels, _ = load_mask(isbi_dir / "masks" / "0.png", image_meta=meta)
    assert labels.dtype == np.int16 and set(np.unique(labels)) == {0, 255}


def test_png_modes(png_files, tmp_path: Path) -> None:
    for name, path in png_files.items():
        array, meta = load_case(path)
        out = save_case(array, meta, tmp_path / path.name)
        before, after = Image.open(path), Image.open(out)
        assert after.mode == before.mode, name
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before))
    array, meta = load_case(png_files["grey16"])
    assert array.dtype == np.uint16 and meta.disk_dtype == np.uint16
    assert Image.open(tmp_path / "palette.png").getpalette()[:12] == [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]


def test_tiff_round_trips(tiff_files, tmp_path: Path) -> None:
    for path in tiff_files.values():
        array, meta = load_case(path)
        assert meta.format == "tiff" and array.ndim == 2
        out = save_case(array, meta, tmp_path / path.name)
        reread = tifffile.imread(out)
        assert reread.dtype == array.dtype
        assert reread.tobytes() == tifffile.imread(path).tobytes()


def test_quantize_rounds_and_clips_to_uint8(png_files) -> None:
    array, meta = load_case(png_files["grey8"])
    values = np.full(meta.shape, 1.4)
    values[0, 0], values[0, 1], values[0, 2] = 300.0, -5.0, 2.5
    quantized = quantize(values, meta)
    assert quantized.dtype == np.uint8
    assert (quantized[0, 0], quantized[0, 1], quantized[0, 2], quantized[1, 1]) == (255, 0, 2, 1)


def test_colour_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(InputError, match="grey images") as error:
        load_case(path)
    assert str(error.value).startswith(f"{path}: ") and "got RGB" in str(error.value)


def test_truncated_png_names_the_file(png_files, tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(png_files["grey8"].read_bytes()[:60])
    with pytest.raises(InputError, match="unreadable or truncated PNG") as error:
        load_case(path)
    assert str(error.value).startswith(f"{path}: ")


def test_multi_page_and_colour_tiff_are_refused(tmp_path: Path) -> None:
    stack = tmp_path / "stack.tif"
    for _ in range(3):
        tifffile.imwrite(stack, np.zeros((4, 4), np.uint16), append=True)
    with pytest.raises(InputError, match="expected 1 page, got 3") as error:
        load_case(stack)
    assert str(error.value).startswith(str(stack))
    colour = tmp_path / "colour.tif"
    tifffile.imwrite(colour, np.zeros((4, 4, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="grey 2D"):
        load_case(colour)
    garbage = tmp_path / "garbage.tiff"
    garbage.write_bytes(b"II*\x00" + b"\xff" * 20)
    with pytest.raises(InputError, match="unreadable or truncated TIFF"):
        load_case(garbage)


def test_save_with_the_wrong_suffix_writes_nothing(png_files, tmp_path: Path, list_files) -> None:
    array, meta = load_case(png_files["grey8"])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="does not match the format png"):
        save_case(array, meta, out / "grey8.tif")
    assert list_files(out) == []
