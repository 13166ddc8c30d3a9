"""denoise() of a volume by a 3-D network (UNet dims=3), in tiles planned from a memory budget (docs/volumes.md §4).

A numpy volume laid out as `axes` (ZYX, ZYXC, CZYX, ...; memmaps welcome) goes in; the result comes back in the
same layout and dtype (or into `out=`, an array or memmap): integers are scaled by their peak (uint8 / 255,
uint16 / 65535) and back, floats are [0, 1] unless value_range states their units, as in 2-D.

The volume streams through in slabs of tile planes along z, as 2-D images stream in bands of tile rows: for each
row of tiles along z, the source planes it needs are read (mirrored at the faces by the gather), its tiles are
gathered in batches of batch_size (tile_gather_3d: mirror padding and dtype conversion fused), run through the
network and blended (tile_blend_3d) into a float32 slab, and the planes no later tile touches are converted and
written out at once. Memory is therefore set by the plan (n2n_fast/inference/volume_plan.py), not by the volume.
Sources and sinks are the small interface of n2n_fast/inference/volume_stream.py; on CUDA the planes move through
the 2-D band movers (stream.py), so copies overlap compute. A volume that fits one tile is denoised exactly as the
network denoises it whole (the tile is the volume mirror-padded to the alignment, as UNet.forward pads it).
"""
import contextlib
import copy

import numpy as np
import torch

from ..axes import check_axes, infer_axes, to_stack
from ..conventions import precision_name
from ..devices import check_device
from ..padding import mirror_index
from ..tiling import tile_ops
from ..value_range import InUnits, check_value_range, denoise_limit
from .model_run import canonical as _canonical
from .model_run import check_model as _check_model
from .model_run import checked_output
from .model_run import move_band as _move_band
from .model_run import show_progress as _show_progress
from .dims import denoise_mode
from .stream import BandReader, RowWriter
from .volume_plan import activation_bytes_per_voxel, choose_volume_plan, spatial_alignment, tile_bytes
from .volume_stream import ArraySink, ArraySource, SinkPlanes, SourcePlanes, check_volume_dtype


def _volume_axes(model, image, axes):
    """The canonical axes of a volume `image`, or the error saying what to pass (inference/dims.py)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: a 3-D network (UNet dims=3) denoises numpy volumes given with axes= (e.g. "
                        f"'ZYX'), got {type(image).__name__}")
    if axes is None:
        try:
            axes = infer_axes(image.shape, name="image")
        except ValueError:
            raise ValueError(f"image: the model is a 3-D network (UNet dims=3); say how the array of shape "
                             f"{image.shape} is laid out with axes= (e.g. 'ZYX', 'ZYXC')") from None
    denoise_mode(model, axes, image.shape, "image")  # refuses a single image or a time series, saying why
    return check_axes(axes, image.shape)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")


def volume_plan(model, source, *, tile="auto", overlap="auto", memory_budget=None, batch_size=8, blend="cosine",
                device=None):
    """The VolumeDenoisePlan (volume_plan.py) denoise runs for a source (volume_stream.py) of shape (D, H, W, C)."""
    _check_batch_size(batch_size)
    depth, height, width, channels = source.shape
    if min(source.shape) < 1:
        raise ValueError(f"image: empty volume of shape (D, H, W, C) = {tuple(source.shape)}")
    model_device, _ = _check_model(model)
    device = _canonical(check_device(device) or model_device)
    per_voxel = activation_bytes_per_voxel(model, channels)
    cpu = device.type == "cpu"  # the column buffer is the CPU convolution's (volume_plan.SLOW_CONV3D_LIMIT)
    return choose_volume_plan((depth, height, width), channels, tile=tile, overlap=overlap,
                              memory_budget=memory_budget, batch_size=batch_size, alignment=spatial_alignment(model),
                              blend=blend, tile_cost=lambda tile: tile_bytes(model, channels, tile, per_voxel, cpu),
                              device=device, itemsize=np.dtype(source.dtype).itemsize)


def volume_source(model, image, axes):
    """(ArraySource of the numpy volume `image`, its canonical axes), after the layout checks."""
    axes = _volume_axes(model, image, axes)
    check_volume_dtype(image.dtype, "image")
    return ArraySource(to_stack(image, axes)), axes


def _destination(image, out, axes):
    """The array results go to, in the input's layout: `out` after checks, or a new array like `image`."""
    if out is None:
        return np.empty(image.shape, dtype=image.dtype.newbyteorder("="))
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: a volume is written into a numpy array or memmap, got {type(out).__name__}")
    if out.shape != image.shape:
        raise ValueError(f"out: must have the image's shape {image.shape}, got {out.shape}")
    if np.shares_memory(out, image):
        raise ValueError("out: shares memory with image; denoise never overwrites its input")
    if not out.flags.writeable:
        raise ValueError("out: the array is read-only")
    check_volume_dtype(out.dtype, "out")
    return out


def denoise_volume(model, image, axes=None, *, out=None, **options):
    """The denoised volume, in `image`'s layout and dtype, or written into `out` (see the module docstring);
    options as denoise_planes takes them."""
    source, axes = volume_source(model, image, axes)
    destination = _destination(image, out, axes)
    denoise_planes(model, source, ArraySink(to_stack(destination, axes)), **options)
    return destination


def denoise_planes(model, source, sink, *, tile="auto", overlap="auto", memory_budget=None, batch_size=8,
                   blend="cosine", precision="float32", device=None, progress=None, backend=None, value_range=None):
    """Denoise a source into a sink (volume_stream.py) in the tiles of volume_plan(); returns the plan it ran.
    Arguments as n2n_fast.denoise takes them."""
    value_range = check_value_range(value_range)
    limit = denoise_limit(value_range, source.dtype, sink.dtype)
    if getattr(model, "normalisation", None) is not None:
        limit = None  # the network's own map, not [0, 1], says what units it takes (docs/normalisation.md)
    bf16 = precision_name(precision, accepted=("float32", "bfloat16")) == "bfloat16"
    chosen = volume_plan(model, source, tile=tile, overlap=overlap, memory_budget=memory_budget,
                         batch_size=batch_size, blend=blend, device=device)
    channels = source.shape[3]
    in_channels = getattr(model, "in_channels", channels)
    if in_channels != channels:
        raise ValueError(f"image: has {channels} channels, the model takes {in_channels}")
    model_device, model_dtype = _check_model(model)
    device = _canonical(check_device(device) or model_device)
    run_model = model
    if _canonical(model_device) != device or bf16:
        run_model = copy.deepcopy(model).to(device)
        if bf16:  # measured faster for 3-D convolutions in bf16 (docs/volumes.md §5)
            run_model = run_model.to(memory_format=torch.channels_last_3d)
    if isinstance(value_range, tuple):  # the data's units: the model sees [0, 1], results go back
        run_model = InUnits(run_model, value_range)
    plan = chosen.plan
    origins = [torch.tensor(o, dtype=torch.int64, device=device) for o in plan.origins]
    all_tiles = torch.tensor(plan.index(), dtype=torch.int64).to(device)  # uploaded once (see denoise.py)
    bar = None
    if _show_progress(progress, plan.count):
        from tqdm import tqdm

        bar = tqdm(total=plan.count, unit="tile", desc="denoise")
    was_training = run_model.training
    run_model.eval()
    try:
        with torch.inference_mode(), (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                                      else contextlib.nullcontext()):
            _tile_slabs(run_model, plan, channels, BandReader(SourcePlanes(source), device, limit),
                        RowWriter(SinkPlanes(sink), device), tile_ops(device, backend, dims=3),
                        (*origins, all_tiles), chosen.batch_size, bf16, model_dtype, bar)
    finally:
        run_model.train(was_training)
        if bar is not None:
            bar.close()
    return chosen


def source_planes(plan, r):
    """Volume planes [lo, hi) the tiles of z tile row r read (mirror padding folded back into the volume)."""
    front, depth = plan.origins[0][r], plan.shape[0]
    planes = mirror_index(torch.arange(front, front + plan.tile[0]), depth)
    return int(planes.min()), int(planes.max()) + 1


def _tile_slabs(run_model, plan, channels, reader, writer, ops, geometry, batch_size, bf16, model_dtype, bar):
    """The tiled pass, one row of tiles along z at a time: gather tiles from the source planes, run the model,
    blend into the float32 slab, hand finished planes to the writer while the next source planes are staged."""
    gather, blend = ops
    z_origins, y_origins, x_origins, all_tiles = geometry
    depth, height, width = plan.shape
    tile_d, tile_h, tile_w = plan.tile
    n_rows, per_row = plan.grid[0], plan.grid[1] * plan.grid[2]
    slab, slab_top = None, 0
    reader.prefetch(source_planes(plan, 0))
    for r in range(n_rows):
        front = plan.origins[0][r]
        first, last = max(front, 0), min(front + tile_d, depth)
        slab = _move_band(slab, slab_top, first, last, (1, channels), (height, width), all_tiles.device)
        slab_top = first
        source, source_top = reader.take(source_planes(plan, r))
        for start in range(0, per_row, batch_size):
            index = all_tiles[r * per_row + start:r * per_row + min(start + batch_size, per_row)]
            tiles = gather(source, index, z_origins, y_origins, x_origins, tile_d, tile_h, tile_w, depth,
                           source_top, model_dtype)
            if bf16:
                tiles = tiles.contiguous(memory_format=torch.channels_last_3d)
            result = checked_output(run_model(tiles), tiles, "a volume-to-volume")
            blend(slab, result, index, z_origins, y_origins, x_origins, depth, height, width, slab_top,
                  *plan.overlap, plan.mode)
            if bar is not None:
                bar.update(index.shape[0])
        if r + 1 < n_rows:  # queued work runs on the device while the next source planes are staged
            reader.prefetch(source_planes(plan, r + 1))
        done = plan.origins[0][r + 1] if r + 1 < n_rows else depth
        done = min(max(done, first), last)
        writer.write(slab[:, :, :done - first], first)
        slab = slab[:, :, done - first:]
        slab_top = done
    writer.finish()


def refuse_volume_batch(image):
    """A 2-D network given a (N, C, D, H, W) tensor: say what to pass instead of a shape error."""
    if isinstance(image, torch.Tensor) and image.dim() == 5:
        raise ValueError(f"image: a tensor of shape {tuple(image.shape)} is a batch of volumes (N, C, D, H, W) but "
                         "the model is a 2-D network (UNet dims=2); denoise a numpy volume slice by slice with "
                         "axes='ZYX', or train a 3-D network (train(..., dims=3)) for volumes")
