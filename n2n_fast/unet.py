"""The Noise2Noise U-Net (Lehtinen et al. 2018, Appendix Table 2), for images (dims=2) and volumes (dims=3).

Five 2x2 max-pool levels with 48-channel 3x3 convolutions on the way down, nearest-neighbour upsampling and
96-channel convolutions on the way up, skip connections by concatenation, LeakyReLU(0.1) after every convolution
but the last, which is linear. He (Kaiming) initialisation as in the paper: with PyTorch's default init the net
starts near zero output and, e.g., tiled-vs-whole comparisons pass trivially.
Sizes that are not multiples of 32 are mirror-padded up to one and cropped back.

dims=3 is the same network with 3x3x3 convolutions (same names, widths, activations, initialisation). Every level
pools y and x by 2; only the deepest `z_pools` levels pool z too (2x2x2, the others 1x2x2), so stacks of a few
slices and anisotropic voxels are not squeezed along z like y and x. `z_pool_levels` picks that number from the
data (docs/volumes.md §1); the alignment per axis (`spatial_alignment`) becomes (2**z_pools, 32, 32).

A network trained by n2n_fast.train carries the affine map its training data was normalised with
(`normalisation=(offset, scale)`, docs/normalisation.md): it takes and returns data in the data's own units and
computes inside on (x - offset) / scale. Without one (None, and every checkpoint written before it existed) the
network is the plain U-Net, bitwise as before.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from .padding import mirror_pad, mirror_pad_end

LEVELS = 5  # pooling levels of the paper's network
ALIGNMENT = 2 ** LEVELS  # along y and x: 32
MAX_FEATURES = 1024  # as train() accepts


def z_pool_levels(depth=None, anisotropy=1.0):
    """How many of the five levels of a dims=3 UNet pool z (the deepest ones; docs/volumes.md §1), in 0..5.

    depth: the z extent the network sees (the training crop's depth, a stack's slice count), or None when unknown.
      z is pooled at most log2(depth) times, so no level's feature map is thinner than one slice before padding:
      1 slice -> 0, 2-3 -> 1, 4-7 -> 2, 8-15 -> 3, 16-31 -> 4, 32 or more -> 5.
    anisotropy: z voxel size / y-x voxel size (1.0 isotropic; 3.0 when slices are three pixels apart). A level
      pools z only when z's voxel size at that level is less than twice y-x's (as nnU-Net plans its pooling), so
      y and x are pooled alone until the voxels are nearly isotropic: below 2 -> 5, [2, 4) -> 4, [4, 8) -> 3,
      [8, 16) -> 2, [16, 32) -> 1, 32 or more -> 0 (values below 1, z finer than y-x, pool z at every level).
    The result is the smaller of the two limits."""
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TypeError(f"depth: expected an int (the z extent in slices) or None, got {type(depth).__name__}")
        if depth < 1:
            raise ValueError(f"depth: the z extent must be at least 1 slice, got {depth}")
    if isinstance(anisotropy, bool) or not isinstance(anisotropy, (int, float)):
        raise TypeError(f"anisotropy: expected a number (z voxel size / y-x voxel size), got "
                        f"{type(anisotropy).__name__}")
    if not math.isfinite(anisotropy) or anisotropy <= 0:
        raise ValueError(f"anisotropy: expected a finite positive ratio (z voxel size / y-x voxel size), got "
                         f"{anisotropy}")
    # Before level l (1-based) y-x have been pooled l-1 times and z not yet (z pools at the deepest levels only), so
    # z's voxel is `anisotropy` and y-x's 2**(l-1) pixels: level l pools z when anisotropy < 2 * 2**(l-1). Once z is
    # pooled, both halve together and the ratio stays below 2: the z-pooling levels are the deepest ones.
    first = next((level for level in range(1, LEVELS + 1) if anisotropy < 2 ** level), LEVELS + 1)
    pools = LEVELS + 1 - first
    if depth is not None:
        pools = min(pools, depth.bit_length() - 1)  # the largest k with 2**k <= depth
    return pools


def check_normalisation_map(value, name="normalisation"):
    """None, or (offset, scale) as two Python floats with offset finite and scale finite and > 0."""
    if value is None:
        return None
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise TypeError(f"{name}: expected None or (offset, scale), two numbers, got {value!r}")
    offset, scale = float(value[0]), float(value[1])
    if not (math.isfinite(offset) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"{name}: offset must be finite and scale finite and > 0, got {value!r}")
    return offset, scale


def _conv(cin, cout, dims=2):
    return (nn.Conv2d if dims == 2 else nn.Conv3d)(cin, cout, 3, padding=1)


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"UNet: {name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"UNet: {name} must be {'positive' if low == 1 else f'at least {low}'}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"UNet: {name} must be at most {high}, got {value}")


class UNet(nn.Module):
    """U-Net of the paper. dims=2: (B, in_channels, H, W) -> (B, out_channels, H, W), any H, W >= 1;
    dims=3: (B, in_channels, D, H, W) -> (B, out_channels, D, H, W), any D, H, W >= 1.

    in_channels: channels of the noisy input; out_channels: of the output (default: in_channels);
    features: encoder width (48 in the paper; the decoder uses twice as many);
    dims: 2 for images, 3 for volumes (3x3x3 convolutions);
    z_pools: dims=3 only: how many of the five levels, the deepest ones, pool z as well as y and x (0..5; default
      5, isotropic volumes of 32 slices or more); `z_pool_levels(depth, anisotropy)` picks it from the data.
    `spatial_alignment`: the multiple each spatial axis is mirror-padded to inside forward ((32, 32), or
      (2**z_pools, 32, 32)); `alignment`: y's and x's, 32.
    normalisation: None, or (offset, scale) with scale > 0: inputs are mapped to (x - offset) / scale on the way in
      and outputs back by y * scale + offset, in float32 (docs/normalisation.md)."""

    def __init__(self, in_channels, out_channels=None, features=48, dims=2, z_pools=None, normalisation=None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("features", features)):
            _check_int(name, value, 1)
        if dims not in (2, 3) or isinstance(dims, bool):
            raise ValueError(f"UNet: dims must be 2 (images) or 3 (volumes), got {dims!r}")
        if dims == 2 and z_pools is not None:
            raise ValueError(f"UNet: z_pools applies to volumes (dims=3) only, got z_pools={z_pools!r} with dims=2")
        if dims == 3:
            z_pools = LEVELS if z_pools is None else z_pools
            _check_int("z_pools", z_pools, 0, LEVELS)
        if features > MAX_FEATURES:  # 10**5 would try to allocate terabytes of weights
            raise ValueError(f"UNet: features must be at most {MAX_FEATURES} (the paper uses 48), got {features}")
        self.in_channels, self.out_channels, self.features = in_channels, out_channels, features
        self.dims, self.z_pools = dims, z_pools
        self.normalisation = check_normalisation_map(normalisation, "UNet: normalisation")
        # per level (1..5): the max-pool kernel, which nearest upsampling undoes on the way back
        self._kernels = [2] * LEVELS if dims == 2 else \
            [(2 if level > LEVELS - z_pools else 1, 2, 2) for level in range(1, LEVELS + 1)]
        # `alignment` is y-x's (the int n2n_fast.denoise reads from any model); `spatial_alignment` every axis's
        self.alignment = ALIGNMENT
        self.spatial_alignment = (ALIGNMENT,) * 2 if dims == 2 else (2 ** z_pools, ALIGNMENT, ALIGNMENT)
        f, d = features, 2 * features
        conv = lambda cin, cout: _conv(cin, cout, dims)  # noqa: E731
        self.enc_conv0 = conv(in_channels, f)
        self.enc_conv1 = conv(f, f)  # followed by pool1
        self.enc_conv2 = conv(f, f)  # pool2
        self.enc_conv3 = conv(f, f)  # pool3
        self.enc_conv4 = conv(f, f)  # pool4
        self.enc_conv5 = conv(f, f)  # pool5
        self.enc_conv6 = conv(f, f)
        self.dec_conv5a, self.dec_conv5b = conv(f + f, d), conv(d, d)  # concat with pool4
        self.dec_conv4a, self.dec_conv4b = conv(d + f, d), conv(d, d)  # concat with pool3
        self.dec_conv3a, self.dec_conv3b = conv(d + f, d), conv(d, d)  # concat with pool2
        self.dec_conv2a, self.dec_conv2b = conv(d + f, d), conv(d, d)  # concat with pool1
        self.dec_conv1a = conv(d + in_channels, 64)  # concat with the input
        self.dec_conv1b = conv(64, 32)
        self.dec_conv1c = conv(32, out_channels)  # linear output
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.kaiming_normal_(self.dec_conv1c.weight, nonlinearity="linear")

    def arguments(self):
        """Constructor arguments: what a checkpoint stores to rebuild the network (one without "dims" is 2-D)."""
        args = {"in_channels": self.in_channels, "out_channels": self.out_channels, "features": self.features,
                "dims": self.dims, "normalisation": None if self.normalisation is None else list(self.normalisation)}
        if self.dims == 3:
            args["z_pools"] = self.z_pools
        return args

    def to_network_units(self, x):
        """`x` in the network's own units: (x - offset) / scale; `x` itself without a map."""
        if self.normalisation is None:
            return x
        offset, scale = self.normalisation
        return (x - offset) / scale

    def to_data_units(self, y):
        """The network's output `y` back in the data's units, float32 (a bf16 output would lose the offset's
        precision); `y` itself without a map."""
        if self.normalisation is None:
            return y
        offset, scale = self.normalisation
        return y.float() * scale + offset

    def _pool(self, t, level):
        if self.dims == 2:
            return F.max_pool2d(t, 2)
        return F.max_pool3d(t, self._kernels[level - 1])

    def _up(self, t, level):
        """Undo the pooling of `level` by nearest-neighbour repetition."""
        return F.interpolate(t, scale_factor=self._kernels[level - 1], mode="nearest")

    def _core(self, x):
        """The network on an input already aligned to `self.spatial_alignment`."""
        act = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
        skips = [x]
        h = act(self.enc_conv0(x))
        for level, conv in enumerate((self.enc_conv1, self.enc_conv2, self.enc_conv3, self.enc_conv4), 1):
            h = self._pool(act(conv(h)), level)
            skips.append(h)
        h = self._pool(act(self.enc_conv5(h)), 5)
        h = act(self.enc_conv6(h))
        for level, conv_a, conv_b in ((5, self.dec_conv5a, self.dec_conv5b), (4, self.dec_conv4a, self.dec_conv4b),
                                      (3, self.dec_conv3a, self.dec_conv3b), (2, self.dec_conv2a, self.dec_conv2b)):
            h = torch.cat([self._up(h, level), skips.pop()], dim=1)
            h = act(conv_b(act(conv_a(h))))
        h = torch.cat([self._up(h, 1), skips.pop()], dim=1)
        h = act(self.dec_conv1b(act(self.dec_conv1a(h))))
        return self.dec_conv1c(h)

    def _check_input(self, x):
        layout = f"(B, {self.in_channels}, H, W)" if self.dims == 2 else f"(B, {self.in_channels}, D, H, W)"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"UNet: input must be a float torch.Tensor {layout}, got "
                            f"{type(x).__name__} (n2n_fast.denoise takes numpy images)")
        if not x.is_floating_point():
            raise TypeError(f"UNet: input must be floating point (images scaled to [0, 1]), got {x.dtype}; "
                            "n2n_fast.denoise scales uint8/uint16 images itself")
        weight = self.enc_conv0.weight
        if x.device != weight.device:
            raise TypeError(f"UNet: input is on {x.device}, the network's weights on {weight.device}; move one to "
                            f"the other (x.to({str(weight.device)!r}) or net.to({str(x.device)!r}))")
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            hint = "x.float()" if weight.dtype == torch.float32 else f"x.to({weight.dtype})"
            raise TypeError(f"UNet: input is {x.dtype} but the network's weights are {weight.dtype}; pass {hint} "
                            f"(or convert the network, e.g. net.to({x.dtype}), or run under torch.autocast)")
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels or min(x.shape) == 0:
            if self.dims == 2 and x.dim() == 5:
                hint = "; a batch of volumes (B, C, D, H, W) needs UNet(..., dims=3)"
            elif self.dims == 3 and x.dim() == 4:
                hint = "; a batch of images (B, C, H, W) needs UNet(..., dims=2), or a depth axis: x.unsqueeze(2)"
            else:
                hint = ""
            spatial = "H, W" if self.dims == 2 else "D, H, W"
            raise ValueError(f"UNet: input must be {layout} with B, {spatial} >= 1, got {tuple(x.shape)}{hint}")

    def forward(self, x):
        self._check_input(x)
        # the map is per pixel: it commutes with the mirror padding and the crop back
        return self.to_data_units(self._aligned(self.to_network_units(x)))

    def _aligned(self, x):
        """_core on `x` mirror-padded to the alignment, cropped back to x's size."""
        if self.dims == 2:
            height, width = x.shape[-2:]
            pad_h, pad_w = -height % ALIGNMENT, -width % ALIGNMENT
            if pad_h or pad_w:
                x = mirror_pad(x, 0, pad_w, 0, pad_h)
            y = self._core(x)
            return y[..., :height, :width] if (pad_h or pad_w) else y
        size = x.shape[2:]
        pads = [-s % a for s, a in zip(size, self.spatial_alignment)]
        if not any(pads):
            return self._core(x)
        depth, height, width = size
        return self._core(mirror_pad_end(x, pads))[..., :depth, :height, :width]
