"""A trained U-Net as an ONNX model with dynamic batch and spatial sizes (height and width; depth too for a 3-D
network), checked against PyTorch.

Why the U-Net is wrapped: its eager forward pads to its alignment only when the size needs it (a Python branch), so
an exporter keeps whichever branch the example input took and the graph fails at other sizes; and
`padding.mirror_index` takes a remainder by a Python int, which the dynamo exporter cannot translate when that int
is a symbolic size. `AlignedUNet` always pads every spatial axis (by zero elements when aligned) to that axis's
multiple in `net.spatial_alignment` ((32, 32), or (2**z_pools, 32, 32) for volumes), with the padded length
computed by integer arithmetic on the size and the reflection on int64 tensors, so one graph serves every batch
and size. In eager mode it equals `UNet.forward` bitwise (the padding gathers the same pixels; tests check it).
"""
import contextlib
import io
import logging

import numpy as np
import torch
from torch import nn

from ..extras import require
from ..unet import ALIGNMENT

ONNX_INPUT, ONNX_OUTPUT = "input", "output"
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
# onnxruntime (MLAS) and torch (oneDNN) sum the convolutions in different orders: the paper U-Net's outputs differ
# by a few float32 ulps of values near 1 (measured: up to about 2e-6); these bounds leave room for other CPUs.
ONNX_RTOL, ONNX_ATOL = 1e-4, 1e-5
_EXAMPLE_SIZE = 2 * ALIGNMENT  # the traced example's height and width; batch and all spatial sizes are dynamic
_CHECK_SHAPE = (2, 33, 47)  # (batch, height, width) run through onnxruntime after export: unaligned and batched
# A volume's check is smaller across (19 x 13 pads to 32 x 32): its depth pads to up to 32 slices and a 3x3x3
# convolution costs 3x a 3x3 one per voxel, so at 33 x 47 the paper network's check would cost about 100x the 2-D
# one; at 19 x 13, about 24x.
_CHECK_HEIGHT_WIDTH_3D = (19, 13)
# The lowest opset torch's dynamo exporter writes natively (asking for less fails in its version converter), so older
# runtimes read the file too: onnxruntime >= 1.14, where torch 2.14's default, opset 20, needs 1.17.
ONNX_OPSET = 18


def _mirror_positions(length, size):
    """int64 tensor of `length` source positions for an axis of `size` pixels: 0..size-1, then reflected about
    the edge pixels and repeated periodically (docs/design.md §5), 0 everywhere when size == 1. Same values as
    `padding.mirror_index(arange(length), size)`; the period is a 0-d tensor so the remainder exports."""
    positions = torch.arange(length)
    size = torch.full((), size, dtype=torch.int64)
    period = torch.clamp(2 * (size - 1), min=1)  # 1 for a one-pixel side: every position maps to 0
    positions = torch.remainder(positions, period)
    return torch.where(positions < size, positions, period - positions)


class AlignedUNet(nn.Module):
    """`UNet` whose mirror padding to its alignment is part of the traced graph: (B, C, H, W) -> (B, C', H, W),
    or (B, C, D, H, W) -> (B, C', D, H, W) for a 3-D net, for any sizes >= 1, equal to `net(x)`. Each spatial axis
    is padded at its far end to its multiple in `net.spatial_alignment`, as UNet.forward does. Wraps (shares)
    `net`'s parameters."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        sizes = x.shape[2:]
        x = self.net.to_network_units(x)  # the training data's map, when the net has one, is part of the graph
        for dim, (size, alignment) in enumerate(zip(sizes, self.net.spatial_alignment), 2):
            padded = (size + alignment - 1) // alignment * alignment
            x = x.index_select(dim, _mirror_positions(padded, size))
        y = self.net._core(x)
        for dim, size in enumerate(sizes, 2):
            y = y.narrow(dim, 0, size)
        return self.net.to_data_units(y)


class _TorchvisionNotes(logging.Filter):
    """Drops the exporter's "torchvision is not installed. Skipping torchvision::nms" records: it looks up the
    ONNX translations of torchvision's ops on every export, whether or not the model uses any (the U-Net does not),
    and logs one warning per op when torchvision is missing. Every other record passes."""

    def filter(self, record):
        return not str(record.msg).startswith("torchvision is not installed")


@contextlib.contextmanager
def _without_torchvision_notes():
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    notes = _TorchvisionNotes()
    logger.addFilter(notes)
    try:
        yield
    finally:
        logger.removeFilter(notes)


def _example_and_probe_shapes(net):
    """(shape traced at export, shape run through onnxruntime after it), both (B, C, [D,] H, W). The traced sizes
    are twice the alignment (64, and 2 * 2**z_pools slices), so the deepest level's maps are 2 wide: torch.export
    specialises sizes 0 and 1, and a deepest map of size 1 would fix the input's size. A volume is traced at batch
    2: traced at batch 1, a one-channel volume's ONNX input came out with the batch fixed to 1 (torch 2.14;
    three channels and 2-D kept it dynamic). The probe's depth is at least 3 slices and, when z is pooled, one
    short of the z alignment (unaligned, padded by one slice)."""
    channels, batch, height, width = net.in_channels, *_CHECK_SHAPE
    if net.dims == 2:
        return (1, channels, _EXAMPLE_SIZE, _EXAMPLE_SIZE), (batch, channels, height, width)
    z_alignment = net.spatial_alignment[0]
    return ((2, channels, 2 * z_alignment, _EXAMPLE_SIZE, _EXAMPLE_SIZE),
            (batch, channels, max(3, z_alignment - 1), *_CHECK_HEIGHT_WIDTH_3D))


def write_onnx(net, path):
    """Export `net` (a CPU UNet, 2-D or 3-D) to the ONNX file `path` (weights inside, dynamic batch and spatial
    sizes), check it with onnx.checker and onnxruntime, and return its opset version."""
    onnx, _, _ = require("export", "export(format='onnx')", *ONNX_MODULES)
    example_shape, probe_shape = _example_and_probe_shapes(net)
    example = torch.rand(*example_shape, generator=torch.Generator().manual_seed(0))
    names = ("depth", "height", "width")[3 - net.dims:]
    dims = {0: torch.export.Dim("batch"), **{axis: torch.export.Dim(name) for axis, name in enumerate(names, 2)}}
    with contextlib.redirect_stdout(io.StringIO()), _without_torchvision_notes():  # the exporter prints progress
        torch.onnx.export(AlignedUNet(net).eval(), (example,), str(path), dynamo=True, external_data=False,
                          opset_version=ONNX_OPSET, dynamic_shapes={"x": dims}, input_names=[ONNX_INPUT],
                          output_names=[ONNX_OUTPUT])
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    probe = torch.rand(*probe_shape, generator=torch.Generator().manual_seed(1))
    error = onnx_error(path, net, probe)
    if error is not None:
        raise RuntimeError(f"export: the ONNX model differs from the PyTorch model at {tuple(probe.shape)}: {error}")
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def run_onnx(path, array):
    """onnxruntime's output for the float32 (B, C, H, W) or (B, C, D, H, W) numpy `array` on the CPU."""
    (onnxruntime,) = require("export", "running an ONNX model", "onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(array, dtype=np.float32)})[0]


def onnx_error(path, net, x):
    """None when the ONNX model at `path` matches `net` on the tensor `x` within float32 tolerance, else a
    description of the largest difference."""
    with torch.no_grad():
        expected = net(x).numpy()
    got = run_onnx(path, x.numpy())
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    bound = ONNX_ATOL + ONNX_RTOL * np.abs(expected)
    excess = np.abs(got - expected) - bound
    if (excess > 0).any() or not np.isfinite(got).all():
        return f"max abs difference {np.abs(got - expected).max():.3g} (tolerance {ONNX_ATOL} + {ONNX_RTOL}·|y|)"
    return None
