"""MRC files (docs/volumes.md §2): data, voxel size and origin round trips, memory-mapped reads, the modes read and
written, and clear errors naming the file."""
import mrcfile
import numpy as np
import pytest

from n2n_fast import io
from n2n_fast.mrc import VoxelGrid, read_mrc, write_mrc

GRID = VoxelGrid(voxel_size=(13.48, 6.74, 6.75), origin=(-120.5, 3.25, 1e4))


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _assert_grid(grid, expected):
    """The header stores float32 (the voxel size as cell / sampling): equal to float32 precision."""
    np.testing.assert_allclose(grid.voxel_size, expected.voxel_size, rtol=1e-6)
    np.testing.assert_allclose(grid.origin, expected.origin, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint16])
@pytest.mark.parametrize("shape", [(5, 9, 7), (11, 13)])
def test_round_trip_of_data_voxel_size_and_origin(tmp_path, rng, dtype, shape):
    data = (rng.integers(0, 65536, size=shape) if dtype == np.uint16 else rng.standard_normal(shape) * 40)
    data = data.astype(dtype)
    path = write_mrc(str(tmp_path / "v.mrc"), data, GRID)
    back, grid = read_mrc(path)
    assert back.dtype == np.dtype(dtype) and back.shape == shape and np.array_equal(back, data)
    _assert_grid(grid, GRID)
    with mrcfile.open(path, permissive=False) as mrc:  # a valid file for other readers, with its statistics
        assert mrc.header.ispg == (1 if len(shape) == 3 else 0)  # a volume; a single image
        assert float(mrc.header.dmax) == float(data.max()) and float(mrc.header.dmin) == float(data.min())
    assert not list(tmp_path.glob(".*tmp*")), "the atomic write left its temporary file"


def test_reads_are_read_only_memory_maps(tmp_path, rng):
    data = rng.random((4, 6, 5), dtype=np.float32)
    path = write_mrc(str(tmp_path / "t.rec"), data)
    volume, grid = read_mrc(path)
    assert isinstance(volume, np.memmap) and not volume.flags.writeable
    assert grid == VoxelGrid() and grid.anisotropy is None  # unset voxel size: no anisotropy to plan with
    stack, dtype, axes = io.read_stack(path)  # float32 in the file: the stack is a view of that memory map
    assert axes == "ZYX" and dtype == np.float32 and stack.shape == (4, 6, 5, 1)
    base = stack
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    assert np.array_equal(stack[..., 0], data)


def test_io_routes_mrc_suffixes_and_keeps_the_grid(tmp_path, rng):
    assert {".mrc", ".rec", ".map"} <= set(io.SUPPORTED)
    volume = rng.random((3, 8, 6), dtype=np.float32)
    path = str(tmp_path / "half.map")
    io.write_stack(path, volume[..., None], np.float32, "ZYX", voxel_grid=GRID)
    stack, dtype, axes = io.read_stack(path)
    assert (axes, dtype) == ("ZYX", np.float32) and np.array_equal(stack[..., 0], volume)
    _assert_grid(io.read_voxel_grid(path), GRID)
    assert io.read_voxel_grid(str(tmp_path / "other.tif")) is None
    # a single section is YX: read_image reads it, write_image writes it with its grid
    section = str(tmp_path / "section.mrc")
    io.write_image(section, volume[0], np.uint16, voxel_grid=GRID)
    pixels, dtype = io.read_image(section)
    assert dtype == np.uint16 and pixels.shape == (8, 6)
    assert np.array_equal(pixels, io.to_unit(io.from_unit(volume[0], np.uint16))[0])
    _assert_grid(io.read_voxel_grid(section), GRID)


def test_uint8_is_written_as_uint16_exactly(tmp_path, rng):
    """MRC has no unsigned 8-bit mode: uint8 becomes mode 6 scaled by 257, the same [0, 1] values."""
    levels = rng.integers(0, 256, size=(2, 5, 4), dtype=np.uint8)
    pixels, _ = io.to_unit(levels)
    path = str(tmp_path / "u8.mrc")
    io.write_stack(path, pixels[..., None], np.uint8, "ZYX")
    back, dtype, _ = io.read_stack(path)
    assert dtype == np.uint16 and np.array_equal(back[..., 0], pixels)


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_signed_modes_are_read_as_float32_in_their_own_units(tmp_path, rng, dtype):
    data = rng.integers(-100, 100, size=(3, 4, 5)).astype(dtype)
    path = str(tmp_path / "signed.mrc")
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
    stack, read_dtype, axes = io.read_stack(path)
    assert read_dtype == np.float32 and axes == "ZYX" and np.array_equal(stack[..., 0], data.astype(np.float32))


def _with_mode(path, mode):
    """Overwrite the header's mode word (the fourth int32), as a file from another program would carry it."""
    with open(path, "r+b") as handle:
        handle.seek(12)
        handle.write(np.array(mode, dtype="<i4").tobytes())


@pytest.mark.parametrize("mode,what", [(4, "complex float32"), (3, "complex int16"), (101, "packed 4-bit")])
def test_modes_it_cannot_read_are_clear_errors_naming_the_file(tmp_path, mode, what):
    path = str(tmp_path / f"mode{mode}.mrc")
    if mode == 4:
        with mrcfile.new(path) as mrc:
            mrc.set_data(np.ones((2, 3, 4), np.complex64))
    else:
        write_mrc(path, np.ones((2, 3, 4), np.float32))
        _with_mode(path, mode)
    for read in (read_mrc, io.read_stack):
        with pytest.raises(ValueError, match=rf"path: {path} is an MRC file of mode {mode} \({what}\).*"
                                             r"readable modes: 0 \(int8\), 1 \(int16\), 2 \(float32\)"):
            read(path)


def test_broken_files_and_bad_writes_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.mrc"
    garbage.write_bytes(b"\0" * 2000)
    with pytest.raises(ValueError, match=f"path: {garbage} is not a valid MRC file"):
        read_mrc(str(garbage))
    truncated = str(tmp_path / "truncated.mrc")
    write_mrc(truncated, np.ones((4, 8, 8), np.float32))
    with open(truncated, "r+b") as handle:
        handle.truncate(1024 + 100)
    with pytest.raises(ValueError, match=f"path: {truncated} is not a valid MRC file"):
        io.read_stack(truncated)
    with pytest.raises(ValueError, match="MRC files store float32, float16 or uint16 voxels, not float64"):
        write_mrc(str(tmp_path / "f64.mrc"), np.ones((2, 2), np.float64))
    with pytest.raises(ValueError, match="dtype: MRC files store .* not float64"):
        io.write_image(str(tmp_path / "f64.mrc"), np.ones((2, 2)), np.float64)
    with pytest.raises(ValueError, match="an MRC file holds one channel, got 3 channels"):
        io.write_image(str(tmp_path / "rgb.mrc"), np.ones((4, 4, 3)), np.float32)
    with pytest.raises(ValueError, match="an MRC file holds one channel"):
        io.write_stack(str(tmp_path / "c.mrc"), np.ones((2, 4, 4, 2)), np.float32, "ZYXC")
    with pytest.raises(TypeError, match="voxel_grid: expected an n2n_fast.mrc.VoxelGrid"):
        write_mrc(str(tmp_path / "g.mrc"), np.ones((2, 2), np.float32), (1, 1, 1))
    with pytest.raises(ValueError, match="voxel_size: expected three finite numbers"):
        VoxelGrid(voxel_size=(1.0, 2.0))
    with pytest.raises(ValueError, match="voxel_size: must not be negative"):
        VoxelGrid(voxel_size=(1.0, -2.0, 1.0))
    assert not list(tmp_path.glob(".*tmp*")), "a failed write left its temporary file behind"


def test_anisotropy_from_the_voxel_size():
    assert VoxelGrid(voxel_size=(30.0, 10.0, 10.0)).anisotropy == pytest.approx(3.0)
    assert VoxelGrid(voxel_size=(0.0, 10.0, 10.0)).anisotropy is None
