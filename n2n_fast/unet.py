"""The Noise2Noise U-Net (Lehtinen et al. 2018, Appendix Table 2).

Five 2x2 max-pool levels with 48-channel 3x3 convolutions on the way down, nearest-neighbour upsampling and
96-channel convolutions on the way up, skip connections by concatenation, LeakyReLU(0.1) after every convolution
but the last, which is linear. He (Kaiming) initialisation as in the paper: with PyTorch's default init the net
starts near zero output and, e.g., tiled-vs-whole comparisons pass trivially.
Sizes that are not multiples of 32 are mirror-padded up to one and cropped back.
A network trained by n2n_fast.train carries the affine map its training data was normalised with
(`normalisation=(offset, scale)`, docs/normalisation.md): it takes and returns data in the data's own units and
computes inside on (x - offset) / scale. Without one (None, and every checkpoint written before it existed) the
network is the plain U-Net, bitwise as before.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from .padding import mirror_pad

ALIGNMENT = 32  # 2**5: five pooling levels


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


def _conv(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1)


class UNet(nn.Module):
    """U-Net of the paper. (B, in_channels, H, W) -> (B, out_channels, H, W), any H, W >= 1.

    in_channels: channels of the noisy input; out_channels: of the output (default: in_channels);
    features: encoder width (48 in the paper; the decoder uses twice as many);
    normalisation: None, or (offset, scale) with scale > 0: inputs are mapped to (x - offset) / scale on the way in
      and outputs back by y * scale + offset, in float32 (docs/normalisation.md)."""

    def __init__(self, in_channels, out_channels=None, features=48, normalisation=None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("features", features)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"UNet: {name} must be an int, got {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"UNet: {name} must be positive, got {value}")
        self.in_channels, self.out_channels, self.features = in_channels, out_channels, features
        self.normalisation = check_normalisation_map(normalisation, "UNet: normalisation")
        f, d = features, 2 * features
        self.enc_conv0 = _conv(in_channels, f)
        self.enc_conv1 = _conv(f, f)  # followed by pool1
        self.enc_conv2 = _conv(f, f)  # pool2
        self.enc_conv3 = _conv(f, f)  # pool3
        self.enc_conv4 = _conv(f, f)  # pool4
        self.enc_conv5 = _conv(f, f)  # pool5
        self.enc_conv6 = _conv(f, f)
        self.dec_conv5a, self.dec_conv5b = _conv(f + f, d), _conv(d, d)  # concat with pool4
        self.dec_conv4a, self.dec_conv4b = _conv(d + f, d), _conv(d, d)  # concat with pool3
        self.dec_conv3a, self.dec_conv3b = _conv(d + f, d), _conv(d, d)  # concat with pool2
        self.dec_conv2a, self.dec_conv2b = _conv(d + f, d), _conv(d, d)  # concat with pool1
        self.dec_conv1a = _conv(d + in_channels, 64)  # concat with the input
        self.dec_conv1b = _conv(64, 32)
        self.dec_conv1c = _conv(32, out_channels)  # linear output
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.kaiming_normal_(self.dec_conv1c.weight, nonlinearity="linear")

    def arguments(self):
        """Constructor arguments: what a checkpoint stores to rebuild the network."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "features": self.features,
                "normalisation": None if self.normalisation is None else list(self.normalisation)}

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

    def _core(self, x):
        act = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
        pool = lambda t: F.max_pool2d(t, 2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        skips = [x]
        h = act(self.enc_conv0(x))
        h = pool(act(self.enc_conv1(h)))
        skips.append(h)
        for conv in (self.enc_conv2, self.enc_conv3, self.enc_conv4):
            h = pool(act(conv(h)))
            skips.append(h)
        h = pool(act(self.enc_conv5(h)))
        h = act(self.enc_conv6(h))
        for conv_a, conv_b in ((self.dec_conv5a, self.dec_conv5b), (self.dec_conv4a, self.dec_conv4b),
                               (self.dec_conv3a, self.dec_conv3b), (self.dec_conv2a, self.dec_conv2b)):
            h = torch.cat([up(h), skips.pop()], dim=1)
            h = act(conv_b(act(conv_a(h))))
        h = torch.cat([up(h), skips.pop()], dim=1)
        h = act(self.dec_conv1b(act(self.dec_conv1a(h))))
        return self.dec_conv1c(h)

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"UNet: input must be a float torch.Tensor (B, {self.in_channels}, H, W), got "
                            f"{type(x).__name__} (n2n_fast.denoise takes numpy images)")
        if not x.is_floating_point():
            raise TypeError(f"UNet: input must be floating point (images scaled to [0, 1]), got {x.dtype}; "
                            "n2n_fast.denoise scales uint8/uint16 images itself")
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[0] == 0:
            raise ValueError(f"UNet: input must be (B, {self.in_channels}, H, W) with B >= 1, got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % ALIGNMENT, -width % ALIGNMENT
        x = self.to_network_units(x)  # per pixel: commutes with the mirror padding
        if pad_h or pad_w:
            x = mirror_pad(x, 0, pad_w, 0, pad_h)
        y = self._core(x)
        return self.to_data_units(y[..., :height, :width] if (pad_h or pad_w) else y)
