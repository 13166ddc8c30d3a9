"""Training data: images decoded once into a compact store, crops cut on the device, every choice counter-based.

Random layout (keep it stable: changing it changes every user's training crops). Data choices use Philox4x32-10
with the key `seed ^ DATA_KEY` (so they are independent of the noise, which is keyed by `seed` itself) and the
counter (c0, c1, c2, c3):
  purpose SAMPLE   (0): c0 = global sample index, c1 = 0, c2 = step, c3 = 0 ->
                        words: image, crop row, crop column, bits (bit 0 horizontal flip, bits 1-2 quarter turns);
  purpose PAIR     (1): c0 = global sample index, c1 = 0, c2 = step, c3 = 1 -> word 0: which two realisations;
  purpose NEIGHBOR (2): c0 = cell position y * (W/2) + x, c1 = global sample index, c2 = step, c3 = 2 ->
                        word 0: which ordered pair of neighbouring pixels of the 2x2 cell (Neighbor2Neighbor).
  purpose DEPTH    (3): c0 = global sample index, c1 = 0, c2 = step, c3 = 3 -> volumes only (train(dims=3),
                        n2n_fast/training/volumes.py), on top of SAMPLE's words read as for images:
                        word 0: the crop's first slice, word 1 bit 0: z flip.
A choice among n is `word % n`: the bias is below n / 2**32, far under anything training can notice.
The global sample index of sample i of rank r at any step is r * batch_size + i, so a sample's crop and noise do
not depend on how the batch is split across ranks.
"""
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..axes import check_axes, infer_axes, to_stack
from ..conventions import uint_peak
from ..io import SUPPORTED as IMAGE_SUFFIXES  # a folder's images: what io reads
from ..philox import host_words, philox_words
from ..value_range import check_unit_max, refuse_integers, scaling

DATA_KEY = 0x5A7A_5EED_C0FF_EE00  # below 2**63: keys travel as int64 into the extension
SAMPLE, PAIR, NEIGHBOR = 0, 1, 2
# (first, second) positions inside a 2x2 cell (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) that are
# horizontal or vertical neighbours: the eight ordered choices of Neighbor2Neighbor's random sub-sampler.
NEIGHBOR_PAIRS = ((0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2))


def _as_image(array, where, value_range=None, any_units=False):
    """(H, W, C) array kept in its compact dtype (uint8, uint16) or float32 in [0, 1] units (value_range: checked,
    n2n_fast/value_range.py), or in any units when `any_units` (no synthetic noise level depends on them: real
    pairs, Neighbor2Neighbor on noisy data); errors name `where`."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array or an image path, got {type(array).__name__}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or min(array.shape) == 0:
        raise ValueError(f"{where}: an image must be (H, W) or (H, W, C), got shape {array.shape}")
    if array.dtype in (np.uint8, np.uint16):
        refuse_integers(value_range, array.dtype, where)
        return array if isinstance(array, np.memmap) else np.ascontiguousarray(array)  # a memmap stays on disk
    if array.dtype.kind != "f":
        raise TypeError(f"{where}: image dtype must be uint8, uint16 or float (values in [0, 1]), got {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: image contains NaN or Inf")
    if isinstance(value_range, tuple):  # the data's units -> [0, 1], the units the network and the noise work in
        low, scale = scaling(value_range)
        return (array - np.float32(low)) / np.float32(scale)
    if not any_units:
        check_unit_max(array, value_range, where)
    return array


def _read(path, where, axes, value_range=None, any_units=False):
    """[(image, label)]: the 2-D images of one file (one, or each slice of a Z/T stack) as compact (H, W, C) arrays,
    each with the label its errors name. An alpha channel is refused (docs/data.md): noise and loss would treat it
    as a colour, training a network that then takes RGBA only, and the colours under transparent pixels are
    arbitrary, so neither keeping it nor dropping it in silence is right; dropping it is one conversion away."""
    from ..io import has_alpha, read_stack

    try:
        stack, _, _ = read_stack(path, axes, keep_integers=True)  # uint8/uint16 stay compact in the store
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"{where}: cannot read image {str(path)!r} ({type(exc).__name__}: {exc})") from exc
    if has_alpha(path, stack.shape[-1]):
        kind = "grey + alpha" if stack.shape[-1] == 2 else "RGBA"
        raise ValueError(f"{where}: {str(path)!r} is {kind}; training takes grey or colour images without alpha. "
                         f"Drop the alpha channel first (e.g. PIL: Image.open(p).convert("
                         f"{'L' if stack.shape[-1] == 2 else 'RGB'!r}).save(p)), or pass the pixels as arrays")
    labels = [f"{where} ({path})" + (f" slice {z}" if len(stack) > 1 else "") for z in range(len(stack))]
    return [(_as_image(image, label, value_range, any_units), label) for image, label in zip(stack, labels)]


def _array_images(array, where, axes, value_range=None, any_units=False):
    """[(image, label)] of an array: one image, or the images of a stack."""
    if axes is None and array.ndim == 4:  # an (N, H, W, C) stack, as before axes existed
        return [(_as_image(image, f"{where}[{i}]", value_range, any_units), f"{where}[{i}]")
                for i, image in enumerate(array)]
    if axes is None:  # (H, W) or (H, W, C) with C <= 4; a (4, 256, 256) array must say what it is
        if array.ndim == 3:
            infer_axes(array.shape, name=where)
        return [(_as_image(array, where, value_range, any_units), where)]
    stack = to_stack(array, check_axes(axes, array.shape))
    labels = [f"{where}[{i}]" if len(stack) > 1 else where for i in range(len(stack))]
    return [(_as_image(image, label, value_range, any_units), label) for image, label in zip(stack, labels)]


def load_images(source, name, axes=None, value_range=None, labels=None, any_units=False):
    """A list of (H, W, C) arrays from a folder, an image path, a list of paths/arrays, or an array. Z/T stacks
    (axes such as "ZYX", n2n_fast/axes.py) become one 2-D image per slice.

    An array without axes is one image when 2-D (H, W) or 3-D (H, W, C), a stack when 4-D (N, H, W, C).
    value_range: the stated range of float images, checked (n2n_fast/value_range.py).
    labels: a list that receives, per image, the name its errors use (e.g. "data[3] (folder/c.png)");
    any_units: floats of an unstated range are taken as they are (no [0, 1] check)."""
    loaded = _load(source, name, axes, value_range, any_units)
    if labels is not None:
        labels.extend(label for _, label in loaded)
    return [image for image, _ in loaded]


def _load(source, name, axes, value_range, any_units):
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"{name}: folder {str(path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            return [item for i, p in enumerate(files)
                    for item in _read(p, f"{name}[{i}]", axes, value_range, any_units)]
        if not path.exists():
            raise ValueError(f"{name}: {str(path)!r} does not exist")
        return _read(path, name, axes, value_range, any_units)
    if isinstance(source, np.ndarray):
        return _array_images(source, name, axes, value_range, any_units)
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError(f"{name}: empty list of images")
        return [entry for i, item in enumerate(source)
                for entry in (_read(item, f"{name}[{i}]", axes, value_range, any_units)
                              if isinstance(item, (str, os.PathLike))
                              else _array_images(item, f"{name}[{i}]", axes, value_range, any_units))]
    raise TypeError(f"{name}: expected a folder, an image path, a list of paths or arrays, or a numpy array; "
                    f"got {type(source).__name__}")


def check_images(images, name, crop=None, labels=None):
    """Same channel count everywhere, and every image at least crop x crop. labels (from load_images) name the
    images in errors; without them, name[i]."""
    labels = labels or [f"{name}[{i}]" for i in range(len(images))]
    channels = [image.shape[2] for image in images]
    if len(set(channels)) != 1:
        common = max(set(channels), key=channels.count)  # the odd ones out are the images to name
        odd = [f"{label} has {c}" for label, c in zip(labels, channels) if c != common]
        raise ValueError(f"{name}: images must all have the same number of channels; most have {common}, but "
                         f"{'; '.join(odd[:3])}{f' (and {len(odd) - 3} more)' if len(odd) > 3 else ''}. Convert "
                         "those (e.g. grey to RGB) or leave them out")
    if crop is not None:
        for label, image in zip(labels, images):
            if min(image.shape[:2]) < crop:
                raise ValueError(f"{label}: image of {image.shape[0]}x{image.shape[1]} is smaller than the "
                                 f"crop {crop}x{crop}; use a smaller crop= or larger images")


def _scale(array):
    return float(uint_peak(array.dtype) or 1.0)


def training_stores(data, pairs, crop, device, axes=None, value_range=None, any_units=False):
    """(stores, realisations): the training images decoded once and checked (aligned pairs, one channel count,
    each at least crop x crop), kept compact on `device`, and the decoded (H, W, C) arrays of each realisation."""
    if pairs is not None:
        if not isinstance(pairs, (tuple, list)) or len(pairs) < 2:
            raise ValueError(f"pairs: expected a tuple of >= 2 aligned sources, got {type(pairs).__name__}")
        labels = []
        realisations = [load_images(source, f"pairs[{k}]", axes, value_range, labels if k == 0 else None, any_units)
                        for k, source in enumerate(pairs)]
        first = [i.shape for i in realisations[0]]
        for k, images in enumerate(realisations[1:], 1):
            mine = [i.shape for i in images]
            if mine != first:
                raise ValueError(f"pairs[{k}]: {len(mine)} images of shapes {mine[:4]}... do not match pairs[0]'s "
                                 f"{len(first)} of {first[:4]}: realisations must be aligned images of the same scenes")
        for k, images in enumerate(realisations[1:], 1):
            if all(np.array_equal(a, b) for a, b in zip(images, realisations[0])):
                raise ValueError(f"pairs[{k}]: the same images as pairs[0]; Noise2Noise needs two independent noisy "
                                 "realisations of each scene (identical pairs teach the identity map)")
    else:
        labels = []
        realisations = [load_images(data, "data", axes, value_range, labels, any_units)]
    check_images(realisations[0], "pairs[0]" if pairs is not None else "data", crop, labels)
    return [ImageStore(images, device) for images in realisations], realisations


def validation_pairs(val, noise, channels, device, seed, axes=None, value_range=None, any_units=False):
    """[(noisy, clean)] (1, C, H, W) float32 tensors on `device`: val's clean images noised once with `noise`
    (seed `seed`, step 0, image index as the sample index: fixed across runs), or val = (noisy, clean) as given."""
    if val is None:
        return []
    val_noisy, val_clean = val if isinstance(val, tuple) and len(val) == 2 else (None, val)
    labels = []
    clean_images = load_images(val_clean, "val", axes, value_range, labels, any_units)
    check_images(clean_images, "val", labels=labels)
    if clean_images[0].shape[2] != channels:
        raise ValueError(f"val: images have {clean_images[0].shape[2]} channels, the training data {channels}")
    clean_store = ImageStore(clean_images, device)
    noisy_store = None if val_noisy is None else ImageStore(load_images(val_noisy, "val[0]", axes, value_range,
                                                                        any_units=any_units), device)
    return validation_set(clean_store, noisy_store, noise, seed)


def validation_set(clean_store, noisy_store, noise, seed):
    """[(noisy, clean)]: every item of `clean_store` (an ImageStore or a VolumeStore) as a (1, C, ...) float32
    tensor with its twin in `noisy_store`, or noised once with validation_noise(noise) (seed `seed`, step 0, the
    item's index as the sample index: fixed across runs)."""
    from ..noise import add_noise

    if noisy_store is not None and noisy_store.sizes != clean_store.sizes:
        raise ValueError(f"val: noisy sizes {noisy_store.sizes} do not match clean sizes {clean_store.sizes}")
    fixed = None if noise is None else validation_noise(noise)
    out = []
    for i in range(len(clean_store)):
        clean = clean_store.full(i)
        noisy = (noisy_store.full(i) if noisy_store is not None
                 else add_noise(clean, fixed, seed=seed, step=0, index=i, stream=0))
        out.append((noisy, clean))
    return out


def validation_noise(noise):
    """The noise model validation uses: a (low, high) range becomes its midpoint, one fixed level for every
    validation image, so validation PSNR compares across steps and runs (a level drawn per image would not)."""
    values = [getattr(noise, spec.name) for spec in dataclasses.fields(noise)]
    middle = [(v[0] + v[1]) / 2 if isinstance(v, (tuple, list)) else v for v in values]
    return type(noise)(*middle)


def _tensor(array):
    """torch.from_numpy, also of a read-only array (a user's, e.g. np.frombuffer) without torch's warning about
    writes through the tensor: the store only ever reads its images (files are decoded into writable arrays)."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array)


def scaled_and_turned(patch, scale, bits):
    """A float crop in [0, 1] units (integers divided by their peak `scale`, as a float32 factor), flipped in x
    (bit 0) then turned in the YX plane by (bits >> 1) & 3 quarter turns: the crop picks' YX bits, for images and
    volumes alike (the layout above)."""
    if scale != 1.0:
        patch = patch * (1.0 / scale)
    if bits & 1:
        patch = patch.flip(-1)
    if (bits >> 1) & 3:
        patch = torch.rot90(patch, (bits >> 1) & 3, dims=(-2, -1))
    return patch


class ImageStore:
    """Images as compact (C, H, W) tensors on `device` when they fit (else pinned host memory), cut into float
    crops on the device. uint8/uint16 numpy memmaps (data larger than RAM) stay on disk: each crop is read from
    the file (the OS page cache does the rest) and sent to the device."""

    def __init__(self, images, device):
        self.device = torch.device(device)
        self.sizes = [image.shape[:2] for image in images]
        self.channels = images[0].shape[2]
        self.scales = [_scale(image) for image in images]
        resident = [image for image in images if not isinstance(image, np.memmap)]
        nbytes = sum(image.nbytes for image in resident)
        on_device = self.device.type == "cpu" or nbytes < 0.5 * torch.cuda.mem_get_info(self.device)[0]
        self.images = []
        for image in images:
            if isinstance(image, np.memmap):
                self.images.append(image)  # (H, W, C), read per crop
                continue
            # uint16 has no arithmetic on every device in torch; int32 keeps it exact (cast back on the device)
            tensor = _tensor(image.astype(np.int32) if image.dtype == np.uint16 else image)
            tensor = tensor.permute(2, 0, 1).contiguous()
            self.images.append(tensor.to(self.device) if on_device else tensor.pin_memory())

    def __len__(self):
        return len(self.images)

    def crops(self, picks, crop):
        """(B, C, crop, crop) float32 on the device for picks [(image, row, col, bits), ...]; crop may be an int
        or (height, width) (then bits must not turn a non-square crop)."""
        height, width = (crop, crop) if isinstance(crop, int) else crop
        out = []
        for image, row, col, bits in picks:
            source = self.images[image]
            if isinstance(source, np.memmap):
                patch = np.ascontiguousarray(source[row:row + height, col:col + width])
                patch = torch.from_numpy(patch.astype(np.int32) if patch.dtype == np.uint16 else patch)
                patch = patch.permute(2, 0, 1)
            else:
                patch = source[:, row:row + height, col:col + width]
            out.append(scaled_and_turned(patch.to(self.device, non_blocking=True).float(), self.scales[image], bits))
        return torch.stack(out)

    def full(self, image):
        """Image `image` as a (1, C, H, W) float32 tensor on the device."""
        return self.crops([(image, 0, 0, 0)], tuple(self.sizes[image]))


def _words(seed, index, count, step, purpose):
    return host_words(seed ^ DATA_KEY, index, count, 0, step, purpose)


def draw_crops(seed, step, index, count, sizes, crop):
    """[(image, row, col, bits)] for global samples index .. index + count - 1 at `step` (host ints: no sync)."""
    picks = []
    for w_image, w_row, w_col, bits in zip(*_words(seed, index, count, step, SAMPLE)):
        image = w_image % len(sizes)
        height, width = sizes[image]
        picks.append((image, w_row % (height - crop + 1), w_col % (width - crop + 1), bits & 7))
    return picks


def draw_realisations(seed, step, index, count, realisations):
    """[(input, target)] realisation numbers, distinct, for each sample (pairs among `realisations` >= 2)."""
    choices = realisations * (realisations - 1)
    out = []
    for word in _words(seed, index, count, step, PAIR)[0]:
        q = word % choices
        first, second = divmod(q, realisations - 1)
        out.append((first, second + (second >= first)))
    return out


def neighbor_choice(shape, seed, step, index, device):
    """Neighbor2Neighbor's random sub-sampler for a (B, C, H, W) batch: (B, H/2 * W/2, 2) positions inside each
    2x2 cell, a function of (seed, step, global sample index, cell) drawn on the device."""
    batch, cells = shape[0], (shape[2] // 2) * (shape[3] // 2)
    counters = torch.zeros(batch, cells, 4, dtype=torch.int32, device=device)
    counters[..., 0] = torch.arange(cells, dtype=torch.int32, device=device)
    counters[..., 1] = torch.arange(index, index + batch, dtype=torch.int32, device=device)[:, None]
    counters[..., 2] = step
    counters[..., 3] = NEIGHBOR
    choice = philox_words(counters, seed ^ DATA_KEY)[..., 0] & 7  # 8 choices, a power of two: no bias at all
    return torch.tensor(NEIGHBOR_PAIRS, dtype=torch.int64, device=device)[choice.long()]


def neighbor_split(images, choice):
    """The two (B, C, H/2, W/2) sub-images g1, g2 picked by `choice` (from neighbor_choice)."""
    batch, channels, height, width = images.shape
    cells_h, cells_w = height // 2, width // 2
    # pixel_unshuffle puts a cell's four pixels (top-left, top-right, bottom-left, bottom-right) on their own axis
    cells = F.pixel_unshuffle(images[:, :, :2 * cells_h, :2 * cells_w], 2)
    cells = cells.reshape(batch, channels, 4, cells_h * cells_w)
    shape = (batch, channels, cells_h, cells_w)
    return tuple(torch.gather(cells, 2, choice[:, None, None, :, k].expand(batch, channels, 1, -1)).reshape(shape)
                 for k in (0, 1))


def describe(images):
    """What a checkpoint records about the data, to refuse resuming on different data."""
    return {"count": len(images), "shapes": [list(image.shape) for image in images[:64]],
            "dtypes": sorted({str(image.dtype) for image in images})}


def cut_pairs(stores, picks, which, crop):
    """(inputs, targets): the same crop of realisations `which[i] = (a, b)` of each sample (real noisy pairs)."""
    inputs = torch.cat([stores[a].crops([pick], crop) for pick, (a, _) in zip(picks, which)])
    targets = torch.cat([stores[b].crops([pick], crop) for pick, (_, b) in zip(picks, which)])
    return inputs, targets
