"""Tiled inference over volumes: tile_gather_3d and tile_blend_3d, extension vs reference, and the round trip
(gather, identity network, blend) against what users write by hand (reflect-pad the volume, slice the tiles in a
loop, accumulate window-weighted tiles and the window sum, divide at the end).

Bytes each op must move (the floor GB/s is taken against): gather reads the source voxel of every tile element
and writes it (in + out element size per tile element); blend reads the float32 tiles and reads + writes the
float32 output once per tile element (4 + 8 bytes); the round trip is the sum of the two.

    pytest benchmarks/bench_tiling3d.py --benchmark-only                  small sizes
    N2N_FAST_BENCH_FULL=1 pytest benchmarks/bench_tiling3d.py --benchmark-only
"""
import pytest
import torch
import torch.nn.functional as F

from n2n_fast import _backend
from n2n_fast.conventions import BLEND_MODES
from n2n_fast.inference.plan import axis_origins

from conftest import FULL

SHAPE = (1, 1, 64, 512, 512) if FULL else (1, 1, 24, 80, 80)  # (N, C, D, H, W), uint8
TILE = (32, 128, 128) if FULL else (16, 32, 32)
OVERLAP = (8, 32, 32) if FULL else (4, 8, 8)
ALIGNMENT = 8
_REFERENCE_SECONDS = {}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _grid(device):
    """The uint8 volume, the tile index, the per-axis origins and tile extents of a cosine grid."""
    gen = torch.Generator().manual_seed(0)
    volume = (torch.rand(SHAPE, generator=gen) * 255).to(torch.uint8).to(device)
    origins, extents = [], []
    for length, tile, overlap in zip(SHAPE[2:], TILE, OVERLAP):
        axis, extent = axis_origins(length, tile, tile - overlap, ALIGNMENT)
        origins.append(torch.tensor(axis, device=device))
        extents.append(extent)
    index = torch.tensor([(0, a, b, c) for a in range(len(origins[0])) for b in range(len(origins[1]))
                          for c in range(len(origins[2]))], device=device)
    return volume, index, origins, extents


def _bytes(index, extents):
    elements = index.shape[0] * SHAPE[1] * extents[0] * extents[1] * extents[2]
    return elements * (1 + 4), elements * 12  # gather uint8 -> fp32, blend fp32


def _record(benchmark, record_throughput, op, impl, nbytes, device):
    size = "x".join(map(str, SHAPE[2:])) + " tiles " + "x".join(map(str, TILE))
    seconds = record_throughput(benchmark, op=op, size=size, impl=impl, nbytes=nbytes,
                                reference_seconds=_REFERENCE_SECONDS.get(op), device=device)
    if impl == "reference" and seconds:
        _REFERENCE_SECONDS[op] = seconds


def _ops(impl, device):
    return (_backend.choose("tile_gather_3d", device, impl)[1], _backend.choose("tile_blend_3d", device, impl)[1])


@pytest.mark.parametrize("impl", ["reference", "extension"])
def test_tile_gather_3d(benchmark, record_throughput, device, impl):
    gather, _ = _ops(impl, device)
    volume, index, (z, y, x), extents = _grid(device)

    def run():
        gather(volume, index, z, y, x, *extents, SHAPE[2], 0, torch.float32)
        _sync(device)

    run()
    benchmark(run)
    _record(benchmark, record_throughput, "tile_gather_3d uint8->fp32", impl, _bytes(index, extents)[0], device)


@pytest.mark.parametrize("impl", ["reference", "extension"])
def test_tile_blend_3d(benchmark, record_throughput, device, impl):
    _, blend = _ops(impl, device)
    _, index, (z, y, x), extents = _grid(device)
    tiles = torch.rand((index.shape[0], SHAPE[1], *extents), device=device)
    out = torch.zeros(SHAPE, device=device)

    def run():
        blend(out, tiles, index, z, y, x, *SHAPE[2:], 0, *OVERLAP, BLEND_MODES["cosine"])
        _sync(device)

    run()
    benchmark(run)
    _record(benchmark, record_throughput, "tile_blend_3d fp32", impl, _bytes(index, extents)[1], device)


def _by_hand(volume, index, origins, extents):
    """What a user writes without the ops: reflect padding, a loop of slices, a Hann window product, a divide."""
    ends = [int(o[-1]) + e - length for o, e, length in zip(origins, extents, SHAPE[2:])]
    padded = F.pad(volume.to(torch.float32) / 255, (0, ends[2], 0, ends[1], 0, ends[0]), mode="reflect")
    windows = []
    for extent, overlap in zip(extents, OVERLAP):
        window = torch.ones(extent, device=volume.device)
        ramp = torch.arange(overlap, device=volume.device) + 0.5
        window[:overlap] = 0.5 - 0.5 * torch.cos(torch.pi * ramp / overlap)
        window[extent - overlap:] = window[:overlap].flip(0)
        windows.append(window.clamp(min=1e-3))
    weight = windows[0][:, None, None] * windows[1][None, :, None] * windows[2]
    total = torch.zeros(padded.shape, device=volume.device)
    weights = torch.zeros(padded.shape[2:], device=volume.device)
    for _, iz, iy, ix in index.tolist():
        z, y, x = (int(o[i]) for o, i in zip(origins, (iz, iy, ix)))
        box = (slice(z, z + extents[0]), slice(y, y + extents[1]), slice(x, x + extents[2]))
        tile = padded[(slice(None), slice(None), *box)]  # the identity network
        total[(slice(None), slice(None), *box)] += tile * weight
        weights[box] += weight
    return (total / weights)[..., :SHAPE[2], :SHAPE[3], :SHAPE[4]]


@pytest.mark.parametrize("impl", ["reference", "extension", "by-hand"])
def test_gather_blend_3d(benchmark, record_throughput, device, impl):
    volume, index, origins, extents = _grid(device)

    def ops_round_trip():
        gather, blend = _ops(impl, device)
        out = torch.zeros(SHAPE, device=device)
        blend(out, gather(volume, index, *origins, *extents, SHAPE[2], 0, torch.float32), index, *origins,
              *SHAPE[2:], 0, *OVERLAP, BLEND_MODES["cosine"])
        return out

    def run():
        out = _by_hand(volume, index, origins, extents) if impl == "by-hand" else ops_round_trip()
        _sync(device)
        return out

    result = run()
    torch.testing.assert_close(result, volume.to(torch.float32) / 255, rtol=1e-5, atol=1e-5)  # identity round trip
    benchmark(run)
    _record(benchmark, record_throughput, "tile_gather_3d + tile_blend_3d", impl, sum(_bytes(index, extents)),
            device)
