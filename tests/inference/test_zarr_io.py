"""Zarr / OME-Zarr through denoise: bitwise equal to the in-memory path with the same tile and overlap, metadata kept
(axes, units, pixel sizes, NGFF version and zarr format), bounded memory on an image larger than the budget
(measured in a subprocess), the CLI, and bad input."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from extras import require_extra

require_extra("zarr", "zarr")

import zarr  # noqa: E402

import n2n_fast  # noqa: E402
from n2n_fast import UNet, denoise  # noqa: E402
from n2n_fast.cli import main  # noqa: E402
from n2n_fast.inference.zarr_io import denoise_zarr  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class _Residual(torch.nn.Module):
    """x + 0.1 * UNet(x): an untrained U-Net alone sends most pixels below 0, which integer outputs clip to 0."""

    def __init__(self, channels):
        super().__init__()
        self.net, self.in_channels = UNet(channels, features=8), channels

    def forward(self, x):
        return x + 0.1 * self.net(x)


def _net(channels, seed=0):
    torch.manual_seed(seed)
    return _Residual(channels).eval()


def _ome_axes(axes):
    kinds = {"t": ("time", "second"), "c": ("channel", None), "z": ("space", "micrometer"),
             "y": ("space", "micrometer"), "x": ("space", "micrometer")}
    return [{"name": a, "type": kinds[a][0], **({"unit": kinds[a][1]} if kinds[a][1] else {})} for a in axes]


def _write_ome(path, data, axes, version, chunks):
    """An OME-Zarr image with two resolution levels, written as NGFF `version` describes (0.4: zarr v2, metadata
    in the group's attributes; 0.5: zarr v3, under "ome")."""
    scale = [{"t": 2.0, "c": 1.0, "z": 1.5}.get(a, 0.65) for a in axes]
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [s * (2 ** level if a in "yx" else 1) for s, a in zip(scale, axes)]}]}
        for level in (0, 1)]
    multiscale = {"name": "sample", "axes": _ome_axes(axes), "datasets": datasets}
    zarr_format = 2 if version == "0.4" else 3
    attributes = ({"multiscales": [{"version": "0.4", **multiscale}]} if version == "0.4"
                  else {"ome": {"version": "0.5", "multiscales": [multiscale]}})
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format, attributes=attributes)
    extra = {"dimension_names": list(axes)} if zarr_format == 3 else {
        "chunk_key_encoding": {"name": "v2", "separator": "/"}}
    group.create_array("0", data=data, chunks=chunks, **extra)
    half = data[(slice(None),) * (data.ndim - 2) + (slice(None, None, 2), slice(None, None, 2))]
    group.create_array("1", data=np.ascontiguousarray(half), chunks=chunks, **extra)
    return attributes


def _as_nchw(data, axes):
    """The (N, C, H, W) tensor the in-memory path gets for `data` with `axes` (stack axes, then c, y, x)."""
    order = [axes.index(a) for a in axes if a not in "cyx"] + [axes.index(a) for a in "cyx" if a in axes]
    moved = data.transpose(order)
    channels = data.shape[axes.index("c")] if "c" in axes else 1
    return torch.from_numpy(np.ascontiguousarray(moved.reshape(-1, channels, *moved.shape[-2:])))


def _in_memory(net, images, **options):
    """The in-memory path for a stack: each 2-D image denoised on its own, as denoise_zarr does plane by plane (one
    call over the whole stack would batch tiles of different planes together, which changes float32 rounding)."""
    return torch.cat([denoise(net, image, **options) for image in images.split(1)])


# ---- bitwise equality with the in-memory path ------------------------------------------------------------------
def test_plain_zarr_uint16_equals_in_memory_bitwise(tmp_path):
    image = (np.random.default_rng(0).random((300, 170)) * 65535).astype(np.uint16)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(50, 70), dimension_names=["y", "x"])
    net = _net(1)
    target = denoise_zarr(net, tmp_path / "in.zarr", tmp_path / "out.zarr", tile=96, overlap=32)
    result = zarr.open_array(str(target), mode="r")
    expected = denoise(net, image, tile=96, overlap=32)
    assert result.dtype == np.uint16 and result.chunks == (50, 70)
    np.testing.assert_array_equal(result[:], expected)
    assert result.metadata.dimension_names == ("y", "x")
    assert len(np.unique(expected)) > 1000  # a real output, not a constant


@pytest.mark.parametrize("axes,shape,chunks", [("tcyx", (2, 3, 130, 90), (1, 3, 64, 64)),
                                               ("tyxc", (2, 130, 90, 3), (1, 40, 64, 3)),
                                               ("zyx", (3, 70, 101), (2, 32, 32))])
def test_stacks_equal_in_memory_bitwise(tmp_path, axes, shape, chunks):
    data = np.random.default_rng(1).random(shape).astype(np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=chunks, zarr_format=2,
                      attributes={"_ARRAY_DIMENSIONS": list(axes)})
    channels = shape[axes.index("c")] if "c" in axes else 1
    net = _net(channels)
    denoise_zarr(net, tmp_path / "in.zarr", tmp_path / "out.zarr", tile=64, overlap=16)
    result = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    expected = _in_memory(net, _as_nchw(data, axes), tile=64, overlap=16)
    assert torch.equal(_as_nchw(result[:], axes), expected)
    assert not torch.equal(expected, _as_nchw(data, axes))
    assert result.attrs["_ARRAY_DIMENSIONS"] == list(axes)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_keeps_axes_units_pixel_sizes_and_version(tmp_path, version):
    data = (np.random.default_rng(2).random((3, 2, 100, 75)) * 255).astype(np.uint8)  # c, z, y, x
    attributes = _write_ome(tmp_path / "in.zarr", data, "czyx", version, chunks=(3, 1, 48, 48))
    net = _net(3)
    denoise_zarr(net, tmp_path / "in.zarr", tmp_path / "out.zarr", tile=64, overlap=16)
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert group.metadata.zarr_format == (2 if version == "0.4" else 3)
    written = dict(group.attrs)
    multiscale = (written["multiscales"] if version == "0.4" else written["ome"]["multiscales"])[0]
    source = (attributes["multiscales"] if version == "0.4" else attributes["ome"]["multiscales"])[0]
    assert multiscale["axes"] == source["axes"]  # names, types and units
    assert multiscale["datasets"] == source["datasets"][:1]  # pixel sizes of level 0; one level written
    if version == "0.5":
        assert written["ome"]["version"] == "0.5"
    else:
        assert multiscale["version"] == "0.4"
        assert group["0"].metadata.dimension_separator == "/"
    expected = _in_memory(net, _as_nchw(data, "czyx"), tile=64, overlap=16)
    assert torch.equal(_as_nchw(group["0"][:], "czyx"), expected)


# ---- bounded memory ------------------------------------------------------------------------------------------
_MEASURE = textwrap.dedent("""
    import json, resource, sys
    import torch
    from n2n_fast.inference.zarr_io import denoise_zarr

    torch.set_num_threads(1)

    class Smooth(torch.nn.Module):  # a cheap image-to-image model: the test is about memory, not the network
        in_channels = 1

        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    small, large, out_small, out_large = sys.argv[1:5]
    options = dict(tile=256, overlap=64, batch_size=4, progress=False)
    denoise_zarr(Smooth(), small, out_small, **options)  # one-time allocations (threads, allocator) before the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    denoise_zarr(Smooth(), large, out_large, **options)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after}))
""")


def _write_by_blocks(path, shape, chunks, rows=512):
    """A float32 zarr array filled block by block, so the test process never holds the whole image either."""
    array = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=np.float32, dimension_names=["y", "x"])
    rng = np.random.default_rng(3)
    for top in range(0, shape[0], rows):
        height = min(rows, shape[0] - top)
        array[top:top + height] = rng.random((height, shape[1]), dtype=np.float32)
    return array


@pytest.mark.slow
def test_an_image_larger_than_the_memory_budget_streams_through(tmp_path):
    # a 192 MiB float32 image, tall rather than wide (what a band holds grows with the width, not the height); its
    # denoising may add at most 48 MiB to the process's peak
    (height, width), budget_mib = (24576, 2048), 48
    _write_by_blocks(tmp_path / "small.zarr", (600, 700), (256, 256))
    _write_by_blocks(tmp_path / "large.zarr", (height, width), (256, 256))
    image_mib = height * width * 4 / 2**20
    run = subprocess.run([sys.executable, "-c", _MEASURE, *(str(tmp_path / n) for n in (
        "small.zarr", "large.zarr", "small_out.zarr", "large_out.zarr"))], capture_output=True, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    usage = json.loads(run.stdout.strip().splitlines()[-1])
    growth_mib = (usage["after_kib"] - usage["before_kib"]) / 1024
    print(f"image {image_mib:.0f} MiB, peak RSS {usage['before_kib'] / 1024:.0f} -> "
          f"{usage['after_kib'] / 1024:.0f} MiB (+{growth_mib:.1f} MiB, budget {budget_mib} MiB)")
    assert growth_mib < budget_mib < image_mib
    # the output is complete: every chunk written, values those of the model (a 3x3 mean keeps them in [0, 1])
    result = zarr.open_array(str(tmp_path / "large_out.zarr"), mode="r")
    rows = result[height // 2 - 3:height // 2 + 3]
    assert result.nchunks_initialized == result.nchunks and 0 < rows.min() and rows.max() < 1


# ---- command line and bad input --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    image = (np.random.default_rng(4).random((48, 48)) * 255).astype(np.uint8)
    return n2n_fast.train(data=image, noise=n2n_fast.Gaussian(0.1), steps=1, batch_size=1, crop=32, features=8,
                          precision="float32", out_dir=tmp_path_factory.mktemp("run"), progress=False, plot=False,
                          checkpoint_every=1).checkpoint


def test_cli_denoises_zarr_and_refuses_to_overwrite(tmp_path, checkpoint, capsys):
    image = (np.random.default_rng(5).random((90, 110)) * 255).astype(np.uint8)
    zarr.create_array(str(tmp_path / "in.zarr"), data=image, chunks=(40, 40), zarr_format=2)  # no axis names
    args = ["denoise", "--checkpoint", str(checkpoint), "--tile", "64", "--overlap", "16", "--quiet",
            str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr")]
    assert main(args) == 2
    assert "has no axis names; pass axes= (--axes)" in capsys.readouterr().err
    assert main(args + ["--axes", "yx"]) == 0
    expected = denoise(n2n_fast.load(checkpoint), image, tile=64, overlap=16)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], expected)
    assert main(args + ["--axes", "yx"]) == 2
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert main(args + ["--axes", "yx", "--overwrite"]) == 0
    assert main(args[:-1] + [str(tmp_path / "out.png"), "--axes", "yx"]) == 2
    assert "Zarr goes to Zarr" in capsys.readouterr().err


@pytest.mark.parametrize("axes,match", [
    ("yxq", r"axes: 'yxq' does not describe a 3-D image; expected 3 distinct letters from 'tczyx' including y and x"),
    ("yx", r"axes: 'yx' does not describe a 3-D image"),
    ("cyy", r"axes: 'cyy' does not describe a 3-D image"),
    ("tcz", r"including y and x"),
])
def test_unexpected_axes_are_clear_errors(tmp_path, axes, match):
    zarr.create_array(str(tmp_path / "in.zarr"), data=np.zeros((3, 40, 40), np.float32))
    with pytest.raises(ValueError, match=match):
        denoise_zarr(_net(3), tmp_path / "in.zarr", tmp_path / "out.zarr", axes=axes)
    assert not (tmp_path / "out.zarr").exists()


def test_ome_zarr_with_unexpected_axes_or_disagreeing_axes(tmp_path):
    _write_ome(tmp_path / "ok.zarr", np.zeros((2, 40, 40), np.float32), "cyx", "0.5", chunks=(2, 20, 20))
    with pytest.raises(ValueError, match="axes: 'zyx' disagrees with the OME-Zarr axes 'cyx'"):
        denoise_zarr(_net(2), tmp_path / "ok.zarr", tmp_path / "out.zarr", axes="zyx")
    group = zarr.open_group(str(tmp_path / "ok.zarr"), mode="r+")
    ome = dict(group.attrs)["ome"]
    ome["multiscales"][0]["axes"][0]["name"] = "angle"
    group.attrs["ome"] = ome
    with pytest.raises(ValueError, match=r"image axes \(OME-Zarr\): 'angleyx' does not describe a 3-D image"):
        denoise_zarr(_net(2), tmp_path / "ok.zarr", tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_bad_zarr_inputs_and_outputs(tmp_path):
    net = _net(1)
    zarr.create_array(str(tmp_path / "in.zarr"), data=np.zeros((40, 40), np.float32), dimension_names=["y", "x"])
    with pytest.raises(ValueError, match="is the input; denoise never overwrites its input"):
        denoise_zarr(net, tmp_path / "in.zarr", tmp_path / "in.zarr", overwrite=True)
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "notes.zarr" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not Zarr data; refusing to replace it"):
        denoise_zarr(net, tmp_path / "in.zarr", tmp_path / "notes.zarr", overwrite=True)
    with pytest.raises(ValueError, match="cannot open .* as Zarr"):
        denoise_zarr(net, tmp_path / "absent.zarr", tmp_path / "out.zarr")
    zarr.open_group(str(tmp_path / "plain_group.zarr"), mode="w")
    with pytest.raises(ValueError, match="zarr group without OME-NGFF multiscales metadata"):
        denoise_zarr(net, tmp_path / "plain_group.zarr", tmp_path / "out.zarr")
    zarr.create_array(str(tmp_path / "int.zarr"), data=np.zeros((40, 40), np.int32), dimension_names=["y", "x"])
    with pytest.raises(TypeError, match="image: unsupported dtype int32"):
        denoise_zarr(net, tmp_path / "int.zarr", tmp_path / "out.zarr")
    with pytest.raises(ValueError, match="out: required when image is a chunked store"):
        from n2n_fast.inference.zarr_io import ZarrImage

        denoise(net, ZarrImage(zarr.open_array(str(tmp_path / "in.zarr")), "yx"))
    assert not (tmp_path / "out.zarr").exists() and (tmp_path / "notes.zarr" / "keep.txt").exists()


def test_a_failed_run_leaves_no_output(tmp_path):
    zarr.create_array(str(tmp_path / "in.zarr"), data=np.full((40, 40), np.nan, np.float32),
                      dimension_names=["y", "x"])
    with pytest.raises(ValueError, match="NaN or Inf"):
        denoise_zarr(_net(1), tmp_path / "in.zarr", tmp_path / "out.zarr", tile=32, overlap=0)
    assert not (tmp_path / "out.zarr").exists()


def test_a_missing_or_old_zarr_names_the_extra(monkeypatch, tmp_path):
    from n2n_fast.extras import MissingExtra

    monkeypatch.setattr(zarr, "__version__", "2.18.3")
    with pytest.raises(MissingExtra, match=r"needs zarr >= 3 \(Python >= 3.11\), found 2.18.3: pip install "
                                           r"'n2n_fast\[zarr\]'"):
        denoise_zarr(_net(1), tmp_path / "in.zarr", tmp_path / "out.zarr")
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(MissingExtra, match=r"needs the optional packages of the \[zarr\] extra; missing: zarr"):
        denoise_zarr(_net(1), tmp_path / "in.zarr", tmp_path / "out.zarr")
