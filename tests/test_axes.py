"""n2n_fast/axes.py and stacks through io, data and train: a Z stack is a set of 2-D images, never channels."""
import numpy as np
import pytest
import tifffile

from checkpoints import save_model  # tests/checkpoints.py
import n2n_fast
from n2n_fast.training import data
from n2n_fast.axes import check_axes, from_stack, infer_axes, to_stack
from n2n_fast.io import read_image, read_stack

LAYOUTS = [("YX", (5, 6)), ("YXC", (5, 6, 3)), ("CYX", (2, 5, 6)), ("ZYX", (4, 5, 6)), ("TYX", (3, 5, 6)),
           ("ZCYX", (4, 2, 5, 6)), ("TYXC", (3, 5, 6, 2)), ("ZYXC", (3, 5, 6, 1)), ("yxs", (5, 6, 3))]


@pytest.mark.parametrize("axes,shape", LAYOUTS)
def test_to_stack_and_back_is_exact(axes, shape):
    array = np.random.default_rng(0).random(shape)
    canonical = check_axes(axes, shape)
    stack = to_stack(array, canonical)
    assert stack.ndim == 4 and stack.shape[1:3] == (5, 6)
    assert np.array_equal(from_stack(stack, canonical), array)


@pytest.mark.parametrize("axes,shape,match", [
    ("YX", (4, 5, 6), "2 letters for an array of 3 dimensions"), ("ZTYX", (2, 2, 5, 6), "at most one of Z and T"),
    ("XY", (5, 6), "Y then X"), ("QYX", (4, 5, 6), "unknown letters Q"), (3, (5, 6), "expected a string")])
def test_bad_axes_are_named(axes, shape, match):
    with pytest.raises((ValueError, TypeError), match=f"axes: .*{match}|axes: {match}"):
        check_axes(axes, shape)


def test_ambiguous_shapes_must_be_stated():
    assert infer_axes((5, 6)) == "YX" and infer_axes((5, 6, 3)) == "YXC"
    with pytest.raises(ValueError, match="could be a stack of 2-D images or channels; say which with axes="):
        infer_axes((4, 256, 256))


def test_multipage_tiff_is_refused_without_axes_and_read_as_slices_with_them(tmp_path):
    """A 4-slice stack without axes metadata used to train a 4-channel model; a 20-slice one a 20x256 image."""
    stack = np.random.default_rng(1).integers(0, 65536, (4, 40, 44), dtype=np.uint16)
    pages = tmp_path / "pages.tif"  # pages written one by one, no axes metadata: tifffile calls the axis Q/I
    with tifffile.TiffWriter(pages) as writer:
        for z in stack:
            writer.write(z, photometric="minisblack", metadata=None)
    with pytest.raises(ValueError, match="could be a stack of 2-D images or channels"):
        read_stack(str(pages))
    pixels, dtype, axes = read_stack(str(pages), axes="ZYX")
    assert pixels.shape == (4, 40, 44, 1) and dtype == np.uint16 and axes == "ZYX"
    np.testing.assert_array_equal(np.rint(pixels[..., 0] * 65535).astype(np.uint16), stack)
    with pytest.raises(ValueError, match="holds a stack of 4 images"):
        read_image(str(pages), axes="ZYX")
    images = data.load_images(str(pages), "data", axes="ZYX")
    assert len(images) == 4 and all(image.shape == (40, 44, 1) for image in images)


def test_imagej_stack_metadata_is_read_without_axes(tmp_path):
    stack = np.random.default_rng(2).integers(0, 256, (3, 20, 24), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    pixels, _, axes = read_stack(str(tmp_path / "z.tif"))
    assert axes == "ZYX" and pixels.shape == (3, 20, 24, 1)


def test_train_on_a_z_stack_trains_a_single_channel_model(tmp_path):
    stack = np.random.default_rng(3).integers(0, 256, (4, 40, 44), dtype=np.uint8)
    result = n2n_fast.train(data=stack, axes="ZYX", noise=n2n_fast.Gaussian(0.1), steps=2, batch_size=2, crop=32,
                            features=8, out_dir=tmp_path, progress=False, plot=False, precision="float32")
    assert result.model.in_channels == 1
    with pytest.raises(ValueError, match="axes: 'YXC' does not fit"):
        n2n_fast.train(data=stack[:, :, :, None], axes="YXC", noise=n2n_fast.Gaussian(0.1), steps=1,
                       out_dir=tmp_path / "b", progress=False)


def test_big_endian_uint16_npy_is_accepted(tmp_path):
    array = np.arange(20 * 24, dtype=">u2").reshape(20, 24) * 100
    np.save(tmp_path / "be.npy", array)
    pixels, dtype = read_image(str(tmp_path / "be.npy"))
    assert dtype == np.uint16 and np.array_equal(np.rint(pixels * 65535).astype(np.int64), array.astype(np.int64))


def test_folder_of_npy_files_is_read(tmp_path):
    for i in range(2):
        np.save(tmp_path / f"{i}.npy", np.zeros((40, 44), np.uint8))
    assert len(data.load_images(str(tmp_path), "data")) == 2


def test_denoise_a_z_stack_slice_by_slice_in_its_own_layout(tmp_path):
    from n2n_fast.cli import main
    from n2n_fast.io import read_stack
    from n2n_fast.inference.denoise import denoise

    net = n2n_fast.UNet(1, features=8).eval()
    stack = np.random.default_rng(4).integers(0, 65536, (3, 40, 44), dtype=np.uint16)
    out = denoise(net, stack, axes="ZYX", tile=64, overlap=0)
    assert out.shape == stack.shape and out.dtype == np.uint16
    np.testing.assert_array_equal(out[1], denoise(net, stack[1], tile=64, overlap=0))  # slice by slice
    save_model(net, tmp_path / "c.pt")
    with tifffile.TiffWriter(tmp_path / "z.tif") as writer:
        for plane in stack:
            writer.write(plane, photometric="minisblack", metadata=None)
    argv = ["denoise", "--checkpoint", str(tmp_path / "c.pt"), str(tmp_path / "z.tif"), str(tmp_path / "o.tif"),
            "--tile", "64", "--overlap", "0"]
    assert main(argv) == 2  # ambiguous without --axes
    assert main(argv + ["--axes", "ZYX"]) == 0
    pixels, dtype, axes = read_stack(str(tmp_path / "o.tif"))
    assert axes == "ZYX" and dtype == np.uint16 and pixels.shape == (3, 40, 44, 1)
    # the CLI hands denoise [0, 1] floats read by io (uint16 / 65535), the API call scaled inside the tile gather
    # (uint16 * float32(1 / 65535)): one unit of the 16-bit output apart at most
    written = np.rint(pixels[..., 0] * 65535).astype(np.int64)
    assert np.abs(written - out.astype(np.int64)).max() <= 1
