"""The affine map the network sees its training data through, computed once from that data (docs/normalisation.md).

train(normalisation="auto") maps x -> (x - mean) / std, with the mean and standard deviation of every pixel of the
training images (all realisations of real pairs) in the units the crops are cut in (integers divided by their peak,
floats as given or scaled by a stated value_range). The map lives in the network (UNet(normalisation=...)), so a
checkpoint carries it and denoise, tiling, streaming and export apply it without being told. Noise is synthesised
in the data's own units, before the map: Poisson counts stay counts.

Why mean/std and not percentiles: the L2/L1/L0 minimisers are unchanged under any affine map, so the map only has
to bring the data to unit scale; the mean and standard deviation do that for low-count and arbitrary-unit data
alike, are computed exactly in one streamed pass (a memmap is read in row blocks, never copied whole), and are what
cryoCARE uses for tomograms. Percentile maps (CSBDeep) serve display ranges and clipping, which Noise2Noise must not
do (clipping biases the zero-mean noise). Measured in docs/normalisation.md.
"""
import math
import os

import numpy as np

from ..conventions import uint_peak
from ..unet import check_normalisation_map

ROWS_PER_BLOCK = 256  # a memmap is read this many rows at a time (a 16k-wide uint16 image: 8 MiB per block)


def check_normalisation(value):
    """"auto", None or (offset, scale): the accepted forms of train(normalisation=)."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"normalisation: expected 'auto', None or (offset, scale), got {value!r}")
        return value
    return check_normalisation_map(value, "normalisation")


def _block_moments(block, peak):
    """(count, mean, sum of squared deviations) of one block, in float64, in the crops' units."""
    values = block.astype(np.float64).reshape(-1)
    if peak != 1.0:
        values /= peak
    mean = float(values.mean())
    return values.size, mean, float(np.square(values - mean).sum())


def _merge(a, b):
    """Chan et al.'s pairwise merge of (count, mean, M2): exact for any offset, unlike sum(x**2) - n * mean**2."""
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


def image_moments(images):
    """(count, mean, M2) over every pixel of `images` ((H, W, C) arrays or memmaps), streamed in row blocks in a
    fixed order, so the same images give the same bits."""
    total = (0, 0.0, 0.0)
    for image in images:
        peak = float(uint_peak(image.dtype) or 1.0)
        for row in range(0, image.shape[0], ROWS_PER_BLOCK):
            block = _block_moments(np.asarray(image[row:row + ROWS_PER_BLOCK]), peak)
            total = block if total[0] == 0 else _merge(total, block)
    return total


def data_map(realisations, where):
    """(offset, scale) = (mean, standard deviation) of every training image, or a ValueError naming `where` when
    the data gives no scale (constant, e.g. all zeros) or holds non-finite values."""
    count, mean, m2 = image_moments([image for images in realisations for image in images])
    std = math.sqrt(m2 / count) if count else 0.0
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise ValueError(f"{where}: the training data holds non-finite values (mean {mean}, std {std}); "
                         "remove NaN/Inf pixels")
    if std == 0.0 or std < 1e-12 * max(1.0, abs(mean)):
        raise ValueError(f"{where}: every training pixel has the value {mean:g} (a constant or all-zero image): "
                         "there is nothing to denoise and no scale to normalise by; check the files, or pass "
                         "normalisation=(offset, scale) to state the map")
    return mean, std


def describe_source(name, source):
    """`name` and, when the user gave paths, the paths: what an error about the data as a whole names."""
    sources = source if isinstance(source, (tuple, list)) else [source]
    paths = [str(s) for s in sources if isinstance(s, (str, os.PathLike))]
    return f"{name} ({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''})" if paths else name


def choose_map(normalisation, realisations, where):
    """The map the network gets: data_map for "auto", None (no map: the network sees the crops as they are) or the
    (offset, scale) given."""
    normalisation = check_normalisation(normalisation)
    if normalisation == "auto":
        return data_map(realisations, where)
    return normalisation


def loss_exponent(kind):
    """p such that the loss of the data-unit prediction is scale**p times the loss in the network's units: L2 2,
    L1 1, L0 its annealed gamma (a device tensor, read per step), HDR 0 (relative: scale-free up to its eps)."""
    return {"l2": 2.0, "l1": 1.0, "l0": None, "hdr": 0.0}[kind]
