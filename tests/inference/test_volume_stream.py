"""Volume files streamed from disk to disk by a 3-D network (n2n_fast/inference/volume_files.py, volume_zarr.py):
bitwise equal to the in-memory pass at the same plan for .npy, TIFF (mapped and page by page), MRC and Zarr; the
input's dtype, layout, voxel size and origin kept; no output under the final name after a crash; peak memory
bounded by the plan (a subprocess)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import n2n_fast
from n2n_fast.inference.folder import denoise_files
from n2n_fast.inference.volume_files import denoise_volume_file
from n2n_fast.inference.volume_sources import open_volume
from n2n_fast.mrc import VoxelGrid, read_mrc, write_mrc

ROOT = Path(__file__).resolve().parents[2]
# z tiles of 5 planes with an overlap of 2, y-x tiles of 16 with 8: several slabs and several tiles per slab
PLAN = dict(tile=(5, 16, 16), overlap=(2, 4, 4), batch_size=3, device="cpu", progress=False)


class Mix3d(torch.nn.Module):
    """A cheap volume-to-volume model (x + 0.1 * a 3x3x3 convolution mixing channels): the streaming, not the
    network, is under test, and a U-Net would cost seconds per tile row on the CPU."""
    dims = 3
    spatial_alignment = (1, 8, 8)
    alignment = 8

    def __init__(self, channels=1, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.in_channels = channels
        self.conv = torch.nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + 0.1 * self.conv(x)


def _volume(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    return rng.random(shape).astype(dtype)


def _in_memory(net, volume, axes):
    return n2n_fast.denoise(net, volume, axes=axes, **PLAN)


# ---- bitwise equal to the in-memory pass --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_npy_memmap_streams_bitwise_in_its_dtype(tmp_path, dtype):
    volume = _volume((11, 21, 19), dtype)
    np.save(tmp_path / "v.npy", volume)
    net = Mix3d()
    denoise_volume_file(net, tmp_path / "v.npy", tmp_path / "out.npy", axes="ZYX", **PLAN)
    out = np.load(tmp_path / "out.npy")
    assert out.dtype == dtype and out.shape == volume.shape
    np.testing.assert_array_equal(out, _in_memory(net, volume, "ZYX"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "v.npy"]  # no temporary left behind


@pytest.mark.parametrize("axes, shape", [("ZYXC", (9, 18, 17, 2)), ("CZYX", (2, 9, 18, 17))])
@pytest.mark.parametrize("compression", [None, "zlib"])  # a memory map, or pages read one slab at a time
def test_tiff_streams_bitwise_in_its_layout(tmp_path, axes, shape, compression):
    volume = _volume(shape, np.uint16, seed=1)
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack", metadata={"axes": axes},
                     compression=compression)
    source = open_volume(tmp_path / "v.tif")
    assert source.axes == axes and (source._read_pages is None) == (compression is None)
    net = Mix3d(channels=2)
    denoise_volume_file(net, tmp_path / "v.tif", tmp_path / "out.tif", **PLAN)
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        out, written_axes = tiff.series[0].asarray(), tiff.series[0].axes
    assert written_axes == axes and out.dtype == np.uint16
    np.testing.assert_array_equal(out, _in_memory(net, volume, axes))


def test_tiff_pages_read_only_the_slab(tmp_path, monkeypatch):
    """The page reader asks tifffile for the pages of the planes a slab needs, never the whole series."""
    volume = _volume((10, 16, 16), np.uint16, seed=2)
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack", metadata={"axes": "ZYX"},
                     compression="zlib")
    asked = []
    original = tifffile.TiffFile.asarray

    def spy(self, key=None, **kwargs):
        asked.append(list(key))
        return original(self, key=key, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "asarray", spy)
    source = open_volume(tmp_path / "v.tif")
    np.testing.assert_array_equal(source.read(3, 6)[..., 0], volume[3:6])
    assert asked == [[3, 4, 5]]


def test_mrc_keeps_voxel_size_origin_and_values(tmp_path):
    grid = VoxelGrid(voxel_size=(4.0, 2.0, 2.5), origin=(-1.5, 2.0, 30.0))
    volume = _volume((9, 20, 18), np.float32, seed=3)
    write_mrc(tmp_path / "tomo.mrc", volume, grid)
    net = Mix3d()
    denoise_volume_file(net, tmp_path / "tomo.mrc", tmp_path / "out.mrc", **PLAN)
    data, read_grid = read_mrc(tmp_path / "out.mrc")
    assert read_grid == grid and data.dtype == np.float32
    expected = _in_memory(net, volume, "ZYX")
    np.testing.assert_array_equal(np.asarray(data), expected)
    import mrcfile

    with mrcfile.open(tmp_path / "out.mrc", header_only=True) as mrc:  # statistics gathered slab by slab
        header = mrc.header
        np.testing.assert_allclose([header.dmin, header.dmax, header.dmean, header.rms],
                                   [expected.min(), expected.max(), expected.mean(), expected.std()], rtol=1e-5)


def test_uint8_to_mrc_widens_as_the_in_memory_writer_does(tmp_path):
    """MRC has no unsigned 8-bit mode: uint8 results go to uint16 exactly as io.write_stack writes them."""
    volume = _volume((7, 16, 17), np.uint8, seed=4)
    np.save(tmp_path / "v.npy", volume)
    net = Mix3d()
    denoise_volume_file(net, tmp_path / "v.npy", tmp_path / "streamed.mrc", axes="ZYX", **PLAN)
    from n2n_fast.conventions import INPUT_SCALE
    from n2n_fast.io import write_stack

    # the float results of the pass on uint8 input (scaled in by the float32 reciprocal of 255, as tiling scales)
    whole = n2n_fast.denoise(net, volume.astype(np.float32) * np.float32(INPUT_SCALE[torch.uint8]), axes="ZYX",
                             **PLAN)
    write_stack(str(tmp_path / "whole.mrc"), whole[..., None], np.uint8, "ZYX")
    streamed, whole_read = read_mrc(tmp_path / "streamed.mrc")[0], read_mrc(tmp_path / "whole.mrc")[0]
    assert streamed.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(streamed), np.asarray(whole_read))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_volume_streams_bitwise_with_its_metadata(tmp_path, zarr_format):
    zarr = pytest.importorskip("zarr")
    volume = _volume((2, 9, 18, 17), np.uint16, seed=5)  # c z y x, chunked along z
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    multiscale = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 2.0, 0.5, 0.5]}]}]}
    attributes = ({"multiscales": [{"version": "0.4", **multiscale}]} if zarr_format == 2
                  else {"ome": {"version": "0.5", "multiscales": [multiscale]}})
    group = zarr.open_group(str(tmp_path / "v.ome.zarr"), mode="w", zarr_format=zarr_format, attributes=attributes)
    group.create_array("0", data=volume, chunks=(1, 3, 18, 17))
    net = Mix3d(channels=2)
    n2n_fast.denoise_zarr(net, tmp_path / "v.ome.zarr", tmp_path / "out.ome.zarr", **PLAN)
    written = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r")
    assert dict(written.attrs) == attributes and written["0"].chunks == (1, 3, 18, 17)
    np.testing.assert_array_equal(written["0"][:], _in_memory(net, volume, "CZYX"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.zarr", "v.ome.zarr"]


def test_zarr_slab_reads_touch_only_its_chunks(tmp_path):
    zarr = pytest.importorskip("zarr")
    from n2n_fast.inference.volume_zarr import ZarrVolume

    array = zarr.create_array(str(tmp_path / "v.zarr"), shape=(12, 16, 16), chunks=(2, 16, 16), dtype=np.uint16,
                              dimension_names=["z", "y", "x"])
    array[:] = _volume((12, 16, 16), np.uint16, seed=6)
    reads = []
    original = type(array).__getitem__

    def spy(self, key):
        reads.append(key)
        return original(self, key)

    volume = ZarrVolume(array, "zyx")
    type(array).__getitem__ = spy
    try:
        planes = volume.read(4, 7)
    finally:
        type(array).__getitem__ = original
    assert reads == [(slice(4, 7), slice(None), slice(None))] and planes.shape == (3, 16, 16, 1)


# ---- a crash leaves nothing under the final name --------------------------------------------------------------
class _FailsAfter(Mix3d):
    """Raises on model call `calls` + 1: mid-volume, after earlier slabs were written."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def forward(self, x):
        if self.calls == 0:
            raise RuntimeError("model failed mid-volume")
        self.calls -= 1
        return super().forward(x)


@pytest.mark.parametrize("suffix", [".npy", ".tif", ".mrc"])
def test_a_model_failing_after_two_slabs_leaves_no_output(tmp_path, suffix):
    volume = _volume((13, 16, 16), np.float32, seed=7)
    np.save(tmp_path / "v.npy", volume)
    plan = dict(PLAN, overlap=(2, 0, 0), batch_size=1)  # one model call per slab
    with pytest.raises(RuntimeError, match="mid-volume"):
        denoise_volume_file(_FailsAfter(2), tmp_path / "v.npy", tmp_path / f"out{suffix}", axes="ZYX", **plan)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]
    (tmp_path / f"old{suffix}").write_bytes(b"the previous output")  # overwritten only by a complete result
    with pytest.raises(RuntimeError, match="mid-volume"):
        denoise_volume_file(_FailsAfter(2), tmp_path / "v.npy", tmp_path / f"old{suffix}", axes="ZYX", **plan)
    assert (tmp_path / f"old{suffix}").read_bytes() == b"the previous output"


def test_a_killed_process_leaves_no_output_under_the_final_name(tmp_path):
    """os._exit mid-volume (no cleanup runs, as for SIGKILL): the final name never appears."""
    np.save(tmp_path / "v.npy", _volume((13, 16, 16), np.float32, seed=8))
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(ROOT / "tests" / "inference")!r})
        from test_volume_stream import Mix3d, PLAN
        from n2n_fast.inference.volume_files import denoise_volume_file

        class Dies(Mix3d):
            calls = 2
            def forward(self, x):
                if self.calls == 0:
                    os._exit(7)
                self.calls -= 1
                return super().forward(x)

        plan = dict(PLAN, overlap=(2, 0, 0), batch_size=1)
        denoise_volume_file(Dies(), {str(tmp_path / "v.npy")!r}, {str(tmp_path / "out.npy")!r}, axes="ZYX", **plan)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 7, run.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "out.npy" not in names and any(n.startswith(".out.npy.") for n in names)  # only the temporary


# ---- memory ---------------------------------------------------------------------------------------------------
class Mix3dWide(Mix3d):
    spatial_alignment = (1, 32, 32)
    alignment = 32


_MEASURE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch
    sys.path.insert(0, sys.argv[3])
    from test_volume_stream import Mix3dWide
    from n2n_fast.inference.volume_files import denoise_volume_file

    torch.set_num_threads(1)
    source, target = sys.argv[1], sys.argv[2]
    options = dict(tile=(4, 128, 128), overlap=(1, 0, 0), batch_size=2, device="cpu", progress=False)
    warm = source + ".warm.npy"  # the same planes' sizes: one-time allocations happen before the baseline
    np.save(warm, np.load(source, mmap_mode="r")[:8])
    denoise_volume_file(Mix3dWide(), warm, target + ".warm.npy", axes="ZYX", **options)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan = denoise_volume_file(Mix3dWide(), source, target, axes="ZYX", **options)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "estimated": plan.estimated_bytes,
                      "plan": plan.describe()}))
""")


def test_peak_memory_is_bounded_by_the_plan(tmp_path):
    """A 192 x 256 x 256 uint16 memmap (24 MiB; 48 MiB as float32) streamed into a .npy memmap in slabs of 4
    planes (plan estimate 6.5 MiB). Asserted: peak RSS growth <= 3 x the estimate + 4 MiB (23.5 MiB). The margin
    is for what the plan does not count: a finished slab passes through io.from_unit's temporaries (float32 rint
    and clip, the integer cast) and the sink's copy, the reference tiling ops make tile-sized temporaries, and the
    allocators keep some freed memory. It fails if a pass holds the volume (a float32 copy alone is 48 MiB) or if
    mapped file pages stay resident: without mapped_pages.release_pages the growth measured 36 MiB at this size
    (both files' pages), with it 11.5-14.1 MiB (1 thread, shared CPU). The volume is deep rather than the brief's
    48 planes so that the files' pages (2 x 24 MiB) would exceed the bound."""
    volume = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.uint16, shape=(192, 256, 256))
    rng = np.random.default_rng(9)
    for z in range(0, 192, 32):
        volume[z:z + 32] = rng.integers(0, 65535, (32, 256, 256), dtype=np.uint16, endpoint=True)
    volume.flush()
    del volume
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / "v.npy"), str(tmp_path / "out.npy"),
                          str(ROOT / "tests" / "inference")], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    usage = json.loads(run.stdout.strip().splitlines()[-1])
    growth = (usage["after_kib"] - usage["before_kib"]) * 1024
    print(f"{usage['plan']}; peak RSS growth {growth / 2**20:.1f} MiB")
    assert growth <= 3 * usage["estimated"] + 4 * 2**20
    out = np.load(tmp_path / "out.npy", mmap_mode="r")
    assert out.shape == (192, 256, 256) and out[-4:].any()  # every slab written, the last included


# ---- files, the command line and bad input -------------------------------------------------------------------
def test_denoise_files_and_cli_stream_a_3d_checkpoint(tmp_path):
    from checkpoints import save_model  # tests/checkpoints.py
    from n2n_fast.cli import main

    torch.manual_seed(0)
    net = n2n_fast.UNet(1, features=2, dims=3, z_pools=0).eval()
    checkpoint = save_model(net, tmp_path / "model.pt")
    volume = _volume((5, 33, 32), np.uint16, seed=10)
    np.save(tmp_path / "v.npy", volume)
    logged, plan = [], dict(tile=(4, 32, 32), overlap=(1, 0, 0), device="cpu")
    denoise_files(net, str(tmp_path / "v.npy"), str(tmp_path / "a.npy"), axes="ZYX", log=logged.append, **plan)
    assert any("streamed" in line for line in logged) and any("plan:" in line for line in logged)
    expected = n2n_fast.denoise(net, volume, axes="ZYX", **plan)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)
    assert main(["denoise", "--checkpoint", str(checkpoint), "--quiet", "--axes", "ZYX", "--tile", "32",
                 "--overlap", "0", "--device", "cpu", str(tmp_path / "v.npy"), str(tmp_path / "b.tif")]) == 0
    whole = n2n_fast.denoise(net, volume, axes="ZYX", tile=32, overlap=0, device="cpu")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), whole)


def test_bad_targets_and_inputs_are_refused_before_any_output(tmp_path):
    net = Mix3d(channels=2)
    np.save(tmp_path / "two.npy", _volume((5, 16, 16, 2), np.float32))
    with pytest.raises(ValueError, match="MRC file holds one channel"):
        denoise_volume_file(net, tmp_path / "two.npy", tmp_path / "out.mrc", axes="ZYXC", **PLAN)
    with pytest.raises(ValueError, match=r"target: .*\.png"):
        denoise_volume_file(net, tmp_path / "two.npy", tmp_path / "out.png", axes="ZYXC", **PLAN)
    with pytest.raises(ValueError, match="channels"):
        denoise_volume_file(Mix3d(), tmp_path / "two.npy", tmp_path / "out.npy", axes="ZYXC", **PLAN)
    with pytest.raises(ValueError, match="time series"):
        denoise_volume_file(net, tmp_path / "two.npy", tmp_path / "out.npy", axes="TYXC", **PLAN)
    np.save(tmp_path / "int32.npy", np.zeros((5, 16, 16), np.int32))
    with pytest.raises(TypeError, match="int32"):
        denoise_volume_file(Mix3d(), tmp_path / "int32.npy", tmp_path / "out.npy", axes="ZYX", **PLAN)
    np.save(tmp_path / "levels.npy", np.full((5, 16, 16), 200, np.float32))  # 0-255 floats, no value_range
    with pytest.raises(ValueError, match="float pixels reach"):
        denoise_volume_file(Mix3d(), tmp_path / "levels.npy", tmp_path / "out.npy", axes="ZYX", **PLAN)
    # a compressed TIFF whose pages each hold a row of every plane (z inside the page): not streamable by pages
    tifffile.imwrite(tmp_path / "yxz.tif", _volume((16, 16, 5), np.uint16), photometric="minisblack",
                     metadata={"axes": "YXZ"}, compression="zlib")
    with pytest.raises(ValueError, match="z axis lies inside one TIFF page"):
        denoise_volume_file(Mix3d(), tmp_path / "yxz.tif", tmp_path / "out.npy", **PLAN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int32.npy", "levels.npy", "two.npy", "yxz.tif"]
