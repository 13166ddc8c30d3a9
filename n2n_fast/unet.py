"""The Noise2Noise U-Net (Lehtinen et al. 2018, Appendix Table 2).

Five 2x2 max-pool levels with 48-channel 3x3 convolutions on the way down, nearest-neighbour upsampling and
96-channel convolutions on the way up, skip connections by concatenation, LeakyReLU(0.1) after every convolution
but the last, which is linear. He (Kaiming) initialisation as in the paper: with PyTorch's default init the net
starts near zero output and, e.g., tiled-vs-whole comparisons pass trivially.
Sizes that are not multiples of 32 are mirror-padded up to one and cropped back.
"""
import torch
from torch import nn
from torch.nn import functional as F

from .padding import mirror_pad

ALIGNMENT = 32  # 2**5: five pooling levels
MAX_FEATURES = 1024  # as train() accepts


def _conv(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1)


class UNet(nn.Module):
    """U-Net of the paper. (B, in_channels, H, W) -> (B, out_channels, H, W), any H, W >= 1.

    in_channels: channels of the noisy input; out_channels: of the output (default: in_channels);
    features: encoder width (48 in the paper; the decoder uses twice as many)."""

    def __init__(self, in_channels, out_channels=None, features=48):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("features", features)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"UNet: {name} must be an int, got {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"UNet: {name} must be positive, got {value}")
        if features > MAX_FEATURES:  # 10**5 would try to allocate terabytes of weights
            raise ValueError(f"UNet: features must be at most {MAX_FEATURES} (the paper uses 48), got {features}")
        self.in_channels, self.out_channels, self.features = in_channels, out_channels, features
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
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "features": self.features}

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
        weight = self.enc_conv0.weight
        if x.device != weight.device or (x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)):
            raise TypeError(f"UNet: input is {x.dtype} on {x.device}, the network's weights {weight.dtype} on "
                            f"{weight.device}; convert one to the other (x.to(weight) or net.to(x))")
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % ALIGNMENT, -width % ALIGNMENT
        if pad_h or pad_w:
            x = mirror_pad(x, 0, pad_w, 0, pad_h)
        y = self._core(x)
        return y[..., :height, :width] if (pad_h or pad_w) else y
