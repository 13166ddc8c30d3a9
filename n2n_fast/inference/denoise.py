"""n2n_fast.denoise: run a network over an image of any size in overlapping tiles, blended back seam-free.

The image streams through in tile rows: for each row of tiles, batches of `batch_size` tiles are gathered
(tile_gather: mirror padding and dtype conversion fused), run through the model and blended (tile_blend) into a
float32 band of the output; rows no later tile touches are converted and written out, and the band moves on.
Peak memory is therefore a band of tile-height rows plus one tile batch, whatever the image size, and an image in
host memory (or a memmap) reaches the GPU one band at a time (n2n_fast/inference/stream.py moves the bands).
Geometry: n2n_fast/inference/plan.py; kernels: csrc/tiling.h; reference: n2n_fast/reference/tiling.py.
"""
import contextlib
import copy

import numpy as np
import torch

from ..conventions import precision_name
from ..devices import check_device
from ..tiling import tile_ops
from .auto_plan import activation_bytes_per_pixel, choose_plan
from .model_run import canonical as _canonical
from .model_run import check_model as _check_model
from .model_run import checked_output
from .model_run import move_band as _move_band
from .model_run import show_progress as _show_progress
from .plan import source_rows, tile_row_rows
from .stream import BandReader, RowWriter
from ..value_range import InUnits, check_value_range, denoise_limit

PRECISIONS = ("float32", "bfloat16")  # "bf16" is accepted too (conventions.precision_name)
_NUMPY_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)
_TENSOR_DTYPES = (torch.uint8, torch.uint16, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _as_nchw(array, name):
    """(zero-copy (N, C, H, W) tensor view, layout) of a numpy (H, W)/(H, W, C) array or a (C, H, W)/(N, C, H, W)
    tensor."""
    if getattr(array, "is_band_store", False):  # a chunked store (zarr_io.ZarrImage): read and written by bands
        return array, "NCHW"
    if isinstance(array, np.ndarray):
        if array.ndim not in (2, 3):
            raise ValueError(f"{name}: numpy images must be (H, W) or (H, W, C), got shape {array.shape}")
        if array.dtype.type not in _NUMPY_DTYPES:
            raise TypeError(f"{name}: unsupported dtype {array.dtype}; accepted: uint8, uint16, float16, float32, "
                            f"float64")
        if not array.dtype.isnative or any(stride < 0 for stride in array.strides):
            # big-endian or flipped views (np.fliplr): torch reads neither; a native copy (inputs only: an `out`
            # like that is refused by _destination, since writes into a copy would be lost)
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        import warnings

        with warnings.catch_warnings():  # read-only arrays and memmaps are only ever read through this view
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(array)
        if array.ndim == 2:
            return tensor[None, None], "HW"
        return tensor.permute(2, 0, 1)[None], "HWC"
    if isinstance(array, torch.Tensor):
        if array.dim() not in (3, 4):
            raise ValueError(f"{name}: tensors must be (C, H, W) or (N, C, H, W), got shape {tuple(array.shape)}")
        if array.dtype not in _TENSOR_DTYPES:
            raise TypeError(f"{name}: unsupported dtype {array.dtype}; accepted: uint8, uint16, float16, bfloat16, "
                            f"float32, float64")
        return (array[None], "CHW") if array.dim() == 3 else (array, "NCHW")
    raise TypeError(f"{name}: expected a numpy array or a torch.Tensor, got {type(array).__name__}")


def _shares_memory(a, b):
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.shares_memory(a, b)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.device == b.device:
        a_start, b_start = a.data_ptr(), b.data_ptr()
        a_end = a_start + a.untyped_storage().nbytes()
        b_end = b_start + b.untyped_storage().nbytes()
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() or (a_start < b_end and b_start < a_end)
    return False


def _destination(image, out):
    """The array results go to: `out` after checks, or a new array like `image`."""
    if out is None:
        if getattr(image, "is_band_store", False):
            raise ValueError("out: required when image is a chunked store (use n2n_fast.denoise_zarr)")
        if isinstance(image, np.ndarray):  # same dtype, in native byte order (a big-endian result is a copy away)
            return np.empty(image.shape, dtype=image.dtype.newbyteorder("="))
        return torch.empty_like(image, memory_format=torch.contiguous_format)
    if type(out) is not type(image) and not (isinstance(out, np.ndarray) and isinstance(image, np.ndarray)):
        raise TypeError(f"out: must be the same kind as image ({type(image).__name__}), got {type(out).__name__}")
    if tuple(out.shape) != tuple(image.shape):
        raise ValueError(f"out: must have the image's shape {tuple(image.shape)}, got {tuple(out.shape)}")
    if _shares_memory(out, image):
        raise ValueError("out: shares memory with image; denoise never overwrites its input")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError("out: the array is read-only")
    if isinstance(out, np.ndarray) and (not out.dtype.isnative or any(stride < 0 for stride in out.strides)):
        raise ValueError(f"out: must be in native byte order with non-negative strides (results are written "
                         f"through a torch view), got dtype {out.dtype.str} strides {out.strides}")
    _as_nchw(out, "out")  # dtype check
    return out


def _image_shape(image, batch_size):
    """(N, C, H, W) of a non-empty image, after the checks of the image and batch_size arguments."""
    view, _ = _as_nchw(image, "image")
    if min(view.shape) < 1:
        raise ValueError(f"image: empty image of shape {tuple(image.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    return tuple(view.shape)


def denoise_plan(model, image, *, tile="auto", overlap="auto", memory_budget=None, batch_size=8, blend="cosine",
                 device=None, axes=None):
    """The DenoisePlan (n2n_fast/inference/auto_plan.py) denoise runs for these arguments; .describe() says it in words.
    A 3-D network (UNet dims=3) on a numpy volume laid out as `axes` gets its VolumeDenoisePlan
    (n2n_fast/inference/volume_plan.py); a 2-D network given a Z/T stack, the plan of each of its slices.

    Deterministic: the same image shape, model architecture and arguments give the same plan on any machine (only
    memory_budget=None reads the machine, and only its total memory)."""
    options = dict(tile=tile, overlap=overlap, memory_budget=memory_budget, batch_size=batch_size, blend=blend,
                   device=device)
    if getattr(model, "dims", 2) == 3:
        from .volume import volume_plan, volume_source

        return volume_plan(model, volume_source(model, image, axes)[0], **options)
    if axes is not None:
        from ..axes import check_axes, to_stack

        if not isinstance(image, np.ndarray):
            raise TypeError(f"image: axes= takes a numpy array, got {type(image).__name__}")
        image = np.ascontiguousarray(to_stack(image, check_axes(axes, image.shape))[0])
        return denoise_plan(model, image, **options)
    n_images, channels, height, width = _image_shape(image, batch_size)
    model_device, _ = _check_model(model)
    device = _canonical(check_device(device) or model_device)
    return choose_plan(n_images, channels, height, width, tile=tile, overlap=overlap, memory_budget=memory_budget,
                       batch_size=batch_size, alignment=getattr(model, "alignment", 32), blend=blend,
                       bytes_per_pixel=activation_bytes_per_pixel(model, channels), device=device)


def denoise_stack(model, image, axes, **options):
    """denoise() of a numpy array laid out as `axes` ("ZYX", "TYXC", "CYX", ...; n2n_fast/axes.py): Z/T stacks
    slice by slice, the result in the same layout and dtype."""
    from ..axes import check_axes, from_stack, to_stack

    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: axes= takes a numpy array, got {type(image).__name__}")
    axes = check_axes(axes, image.shape)
    slices = [denoise(model, np.ascontiguousarray(plane), **options) for plane in to_stack(image, axes)]
    return np.ascontiguousarray(from_stack(np.stack(slices), axes))


def denoise(model, image, *, tile="auto", overlap="auto", memory_budget=None, batch_size=8, blend="cosine",
            precision="float32", device=None, out=None, progress=None, backend=None, axes=None, value_range=None):
    """Denoise `image` of any size with `model` in overlapping tiles.

    image: numpy (H, W) or (H, W, C) (uint8, uint16, float16/32/64; memmaps welcome) or a tensor (C, H, W) or
      (N, C, H, W) on any device. Integers are scaled by their peak; floats are [0, 1] unless value_range says.
    value_range: float images only (n2n_fast/value_range.py): None (floats in [0, 1]; a maximum above 4 is
      refused), (low, high) (the data's units: scaled to [0, 1] for the model, results mapped back to those units)
      or "hdr" (as they are, values above 1 allowed).
    model: maps (B, C, h, w) to (B, C, h, w) for h, w multiples of its `alignment` attribute (default 32).
    tile, overlap: "auto" (default), or the tile side and overlap in pixels; tile a multiple of the alignment,
      0 <= overlap < tile / 2 (tile - overlap is rounded down to the alignment). A tile larger than the image
      shrinks to it. tile="auto": the largest tiles whose activations fit memory_budget, laid out so the network
      processes few pixels beyond the image; overlap="auto": the smallest overlap measured to keep tiled vs
      whole-image PSNR >= 50 dB on trained U-Nets (docs/tiling.md).
    memory_budget: bytes for one model call's activations plus the output band, sizing tile="auto"; None: a
      quarter of total RAM capped at 1 GiB on the CPU, half the GPU's total memory on CUDA. Too small for one tile
      of the network's alignment: ValueError. denoise_plan() returns the plan these arguments give.
    batch_size: at most this many tiles per model call (tile="auto": fewer when the budget says so).
    blend: "cosine" (raised-cosine ramps over the overlap), "gaussian", or "stitch" (keep each tile's centre,
      dropping overlap / 2: exact for models whose receptive field fits that margin).
    precision: "float32", or "bfloat16" ("bf16": bfloat16 autocast and channels_last).
    device: where the model runs (default: the model's device). out: array/tensor/memmap of the image's shape to
      write into (its dtype decides the result's). progress: None (a bar for large images on a terminal) or bool.
    backend: force "extension" or "reference" for the tiling ops.
    axes: the layout of a numpy `image` ("ZYX", "TYXC", ...: Z/T stacks are denoised slice by slice).
    Returns `out` (or a new array/tensor of the same kind, layout and dtype as `image`). The input is never
    modified. A 3-D network (UNet dims=3) denoises a numpy volume (or memmap) given with axes= ("ZYX", "ZYXC",
    "CZYX", ...) in 3-D tiles streamed in slabs along z (n2n_fast/inference/volume.py): tile and overlap are then
    an int, a (z, y, x) triple or "auto", multiples of the network's alignment per axis (spatial_alignment)."""
    if getattr(model, "dims", 2) == 3:
        from .volume import denoise_volume

        return denoise_volume(model, image, axes, tile=tile, overlap=overlap, memory_budget=memory_budget,
                              batch_size=batch_size, blend=blend, precision=precision, device=device, out=out,
                              progress=progress, backend=backend, value_range=value_range)
    if isinstance(image, torch.Tensor) and image.dim() == 5:
        from .volume import refuse_volume_batch

        refuse_volume_batch(image)
    if axes is not None:
        return denoise_stack(model, image, axes, tile=tile, overlap=overlap, memory_budget=memory_budget,
                             batch_size=batch_size, blend=blend, precision=precision, device=device,
                             progress=progress, backend=backend, value_range=value_range)
    n_images, channels, height, width = _image_shape(image, batch_size)
    view, _ = _as_nchw(image, "image")
    value_range = check_value_range(value_range)
    limit = denoise_limit(value_range, view.dtype, None if out is None else _as_nchw(out, "out")[0].dtype)
    if getattr(model, "normalisation", None) is not None:
        limit = None  # the network's own map, not [0, 1], says what units it takes (docs/normalisation.md)
    bf16 = precision_name(precision, accepted=PRECISIONS) == "bfloat16"
    model_device, model_dtype = _check_model(model)
    chosen = denoise_plan(model, image, tile=tile, overlap=overlap, memory_budget=memory_budget,
                          batch_size=batch_size, blend=blend, device=device)
    plan, batch_size = chosen.plan, chosen.batch_size
    in_channels = getattr(model, "in_channels", channels)
    if in_channels != channels:
        raise ValueError(f"image: has {channels} channels, the model takes {in_channels}")
    device = _canonical(check_device(device) or model_device)
    destination = _destination(image, out)
    dest_view, _ = _as_nchw(destination, "out")

    run_model = model
    if _canonical(model_device) != device or bf16:
        run_model = copy.deepcopy(model).to(device)
        if bf16:
            run_model = run_model.to(memory_format=torch.channels_last)
    if isinstance(value_range, tuple):  # tiles in the data's units: the model sees [0, 1], results go back
        run_model = InUnits(run_model, value_range)
    ops = tile_ops(device, backend)
    row_origins = torch.tensor(plan.row_origins, dtype=torch.int64, device=device)
    col_origins = torch.tensor(plan.col_origins, dtype=torch.int64, device=device)
    # every tile's (image, row tile, column tile) in processing order, uploaded once: a per-batch upload from
    # pageable memory would wait for the device to drain and stall the pipeline
    all_tiles = torch.tensor([(n, r, c) for r in range(len(plan.row_origins)) for n in range(n_images)
                              for c in range(len(plan.col_origins))], dtype=torch.int64).to(device)
    was_training = run_model.training
    run_model.eval()
    bar = None
    if _show_progress(progress, plan.count * n_images):
        from tqdm import tqdm

        bar = tqdm(total=plan.count * n_images, unit="tile", desc="denoise")
    try:
        with torch.inference_mode(), (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                                      else contextlib.nullcontext()):
            _tile_rows(run_model, plan, tuple(view.shape), BandReader(view, device, limit),
                       RowWriter(dest_view, device), ops, (row_origins, col_origins, all_tiles), batch_size, bf16,
                       model_dtype, bar)
    finally:
        if was_training:
            run_model.train()
        if bar is not None:
            bar.close()
    return destination


def _tile_rows(run_model, plan, shape, reader, writer, ops, geometry, batch_size, bf16, model_dtype, bar):
    """The tiled pass, one row of tiles at a time: gather tiles from the source band, run the model, blend into
    the output band, hand finished rows to the writer while the next band is staged."""
    gather, blend_op = ops
    row_origins, col_origins, all_tiles = geometry
    n_images, channels, height, width = shape
    per_row = n_images * len(plan.col_origins)
    band, band_top = None, 0
    n_rows = len(plan.row_origins)
    reader.prefetch(source_rows(plan, 0))
    for r in range(n_rows):
        first, last = tile_row_rows(plan, r)
        band = _move_band(band, band_top, first, last, (n_images, channels), (width,), all_tiles.device)
        band_top = first
        source, source_top = reader.take(source_rows(plan, r))
        for start in range(0, per_row, batch_size):
            index = all_tiles[r * per_row + start:r * per_row + min(start + batch_size, per_row)]
            tiles = gather(source, index, row_origins, col_origins, plan.tile_h, plan.tile_w, height, source_top,
                           model_dtype)
            if bf16:
                tiles = tiles.contiguous(memory_format=torch.channels_last)
            result = checked_output(run_model(tiles), tiles, "an image-to-image")
            blend_op(band, result, index, row_origins, col_origins, height, width, band_top, plan.overlap,
                     plan.mode)
            if bar is not None:
                bar.update(index.shape[0])
        if r + 1 < n_rows:  # queued work runs on the device while the next band is staged
            reader.prefetch(source_rows(plan, r + 1))
        done = plan.row_origins[r + 1] if r + 1 < n_rows else height
        done = min(max(done, first), last)
        writer.write(band[:, :, :done - first], first)
        band = band[:, :, done - first:]
        band_top = done
    writer.finish()
