"""The tensors a bioimage.io package declares: the tile sizes and halo of each spatial axis, the input dtype, and
the test input (a given image or volume cropped to a declared size, or a seeded synthetic one).

Images are (batch, channel, y, x), volumes (batch, channel, z, y, x).
"""
from dataclasses import dataclass

import numpy as np

from ..conventions import UINT_PEAKS
from ..unet import ALIGNMENT

# input dtype -> the value that means 1.0
PEAKS = {**{name: float(peak) for name, peak in UINT_PEAKS.items()}, "float32": 1.0}
# Tiles for tools that tile by the description (deepImageJ), along y and x: a halo of half the default `denoise`
# overlap per side (64 px, measured for tiles below 384 px: docs/tiling.md §2), which is also one cell of the
# network's deepest level (the alignment, 32 px).
HALO = 32
TEST_SIZE = 128  # side of the generated test image
TEST_VOLUME_SIDE = 96  # y-x side of the generated test volume (the smallest declared tile: 3-D convolutions cost)


@dataclass(frozen=True)
class SpaceAxis:
    """A spatial axis of the package's tensors: `id` ("z", "y" or "x"), input sizes `min` + k·`step`, and the
    `halo` cut from each side of the output."""
    id: str
    halo: int
    step: int

    @property
    def min(self):
        """The smallest multiple of `step` that keeps an aligned core (one step) once the halo is cut from both
        sides: 96 along y and x."""
        return self.step * (2 * self.halo // self.step + 1)


def space_axes(net):
    """The SpaceAxis of each spatial axis of `net` (a UNet), in tensor order.

    y and x: sizes 96 + k·32, halo 32 (HALO). z (dims=3): sizes 3a + k·a with a halo of a, for the z alignment
    a = 2**z_pools (other sizes are mirror-padded inside the network, at a cost): y-x's rule, a halo of one cell of
    the deepest level, holds along z in z's own units (docs/export.md §4). No seam study of 3-D tiles exists
    to measure a z overlap (3-D tiling is not built: docs/volumes.md §3); this halo is at least y-x's in physical
    distance wherever z_pools came from the anisotropy rule with z voxels at least as long as y-x's
    (docs/volumes.md §1: then 2**z_pools · anisotropy >= 32 pixels), and no thicker than the training stack when
    it came from the depth rule (2**z_pools <= depth)."""
    yx = [SpaceAxis(axis, HALO, ALIGNMENT) for axis in ("y", "x")]
    if net.dims == 2:
        return yx
    z_alignment = net.spatial_alignment[0]
    return [SpaceAxis("z", z_alignment, z_alignment)] + yx


def declared_dtype(given, state):
    """The declared input dtype: as given, else the training data's single integer dtype, else float32."""
    if given is None:
        dtypes = ((state or {}).get("train_args", {}).get("data") or {}).get("dtypes") or []
        given = dtypes[0] if len(dtypes) == 1 and dtypes[0] in ("uint8", "uint16") else "float32"
    if given not in PEAKS:
        raise ValueError(f"input_dtype: expected one of {', '.join(PEAKS)}, got {given!r}")
    return given


def make_test_input(test_image, net, dtype):
    """(1, C, H, W) or (1, C, D, H, W) test input in `dtype`: `test_image` ((H, W) / (H, W, C) for an image,
    (D, H, W) / (D, H, W, C) for a volume, in that dtype), cropped at its far ends to the largest declared size,
    or a seeded synthetic noisy pattern (128² image) or phantom (volume of the smallest declared tile)."""
    axes = space_axes(net)
    channels, spatial = net.in_channels, ("D, H, W" if net.dims == 3 else "H, W")
    if test_image is None:
        unit = _pattern(channels) if net.dims == 2 else _phantom([a.min for a in axes[:1]] + [TEST_VOLUME_SIDE] * 2,
                                                                  channels)
        test_image = (np.rint(unit * PEAKS[dtype]) if dtype != "float32" else unit).astype(dtype)
    test_image = np.asarray(test_image)
    data = test_image[..., None] if test_image.ndim == len(axes) else test_image
    if data.ndim != len(axes) + 1 or data.shape[-1] != channels or str(data.dtype) != dtype:
        layout = spatial + (", C" if channels > 1 else "")
        raise ValueError(f"test_image: expected ({layout}) with {channels} channel(s) of dtype {dtype}, got shape "
                         f"{test_image.shape} of dtype {test_image.dtype}")
    if any(side < axis.min for side, axis in zip(data.shape, axes)):
        minimum = "x".join(str(axis.min) for axis in axes)
        unit = "pixels" if net.dims == 2 else "voxels (D x H x W)"
        raise ValueError(f"test_image: needs at least {minimum} {unit}, got {data.shape[:-1]}")
    crop = tuple(slice(axis.min + (side - axis.min) // axis.step * axis.step) for side, axis in zip(data.shape, axes))
    return np.ascontiguousarray(np.moveaxis(data[crop], -1, 0)[None])


def _pattern(channels):
    """(TEST_SIZE, TEST_SIZE, C) in [0, 1]: stripes and checks per channel with Gaussian noise (seeded)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:TEST_SIZE, 0:TEST_SIZE] / TEST_SIZE
    clean = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (3 + c) * x) * np.cos(2 * np.pi * 2 * y)
                      for c in range(channels)], axis=-1)
    return np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)


def _phantom(shape, channels, blobs=12):
    """(D, H, W, C) in [0, 1]: soft-edged spheres in [0.1, 0.9] (blobs, as a light-microscopy stack shows nuclei)
    with Gaussian noise, seeded; made with numpy alone, since the export extra brings no image library."""
    rng = np.random.default_rng(0)
    grid = np.meshgrid(*(np.arange(n) + 0.5 for n in shape), indexing="ij")
    clean = np.zeros((*shape, channels))
    for channel in range(channels):
        for _ in range(blobs):
            centre, radius = rng.uniform(0, shape), rng.uniform(0.1, 0.25) * min(shape[1:])
            distance = np.sqrt(sum((axis - c) ** 2 for axis, c in zip(grid, centre)))
            # a logistic edge 1.5 voxels wide: smooth at the voxel scale, as a blurred binary blob is
            clean[..., channel] = np.maximum(clean[..., channel], 1 / (1 + np.exp((distance - radius) / 1.5)))
    return np.clip(0.1 + 0.8 * clean + rng.normal(0, 0.1, clean.shape), 0, 1)
