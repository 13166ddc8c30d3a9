"""Image I/O: round trips through every supported format and dtype, and clear errors for bad files."""
import numpy as np
import pytest
from PIL import Image

from n2n_fast.io import from_unit, read_image, to_unit, write_image


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("ext,dtype,shape", [
    (".png", np.uint8, (31, 45)), (".png", np.uint8, (31, 45, 3)), (".png", np.uint16, (17, 23)),
    (".tif", np.uint16, (17, 23, 3)), (".tif", np.uint16, (9, 11, 5)), (".tif", np.float32, (13, 7, 4)),
    (".tif", np.uint8, (13, 7)), (".npy", np.float32, (5, 6, 2)),
])
def test_round_trip_is_exact_in_kind(tmp_path, rng, ext, dtype, shape):
    if np.dtype(dtype).kind == "u":
        original = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    else:
        original = rng.random(shape, dtype=np.float32)
    pixels, _ = to_unit(original)
    path = str(tmp_path / f"image{ext}")
    write_image(path, pixels, dtype)
    back, back_dtype = read_image(path)
    assert back_dtype == np.dtype(dtype) and back.dtype == np.float32 and back.shape == shape
    assert np.array_equal(from_unit(back, dtype), original)


def test_sixteen_bit_png_written_by_pillow_is_read_as_uint16(tmp_path, rng):
    original = rng.integers(0, 65536, size=(19, 21), dtype=np.uint16)
    path = str(tmp_path / "g16.png")
    Image.fromarray(original).save(path)
    pixels, dtype = read_image(path)
    assert dtype == np.uint16 and np.array_equal(np.rint(pixels * 65535).astype(np.uint16), original)


def test_jpeg_and_palette_png_decode_to_rgb(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=100)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    for name in ("a.jpg", "p.png"):
        pixels, dtype = read_image(str(tmp_path / name))
        assert pixels.shape == (16, 24, 3) and dtype == np.uint8 and 0 <= pixels.min() and pixels.max() <= 1


def test_from_unit_rounds_and_clips():
    assert from_unit(np.array([-0.2, 0.5, 1.7], np.float32), np.uint8).tolist() == [0, 128, 255]


def test_bad_inputs_raise_clear_errors(tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="path: cannot read image"):
        read_image(str(corrupt))
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        read_image(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="unsupported file type"):
        read_image(str(tmp_path / "image.gif"))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        write_image(str(tmp_path / "x.tif"), np.zeros((1, 2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        to_unit(np.array([[0.1, np.nan]], np.float32))
    with pytest.raises(TypeError, match="unsupported dtype int32"):
        to_unit(np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError, match="cannot store"):
        write_image(str(tmp_path / "x.png"), np.zeros((4, 4, 5), np.float32))
    assert not list(tmp_path.glob("*.tmp*")), "a failed write left its temporary file behind"
