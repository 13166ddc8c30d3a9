"""The paper U-Net: layer list, parameter count, sizes, the pad-and-crop rule, and bad arguments."""
import pytest
import torch
from torch import nn

from n2n_fast import UNet
from n2n_fast.padding import mirror_index, mirror_pad

# Appendix Table 2 of Lehtinen et al. 2018 for n = m = 3: (name, in, out) of every 3x3 convolution.
PAPER_LAYERS = [
    ("enc_conv0", 3, 48), ("enc_conv1", 48, 48), ("enc_conv2", 48, 48), ("enc_conv3", 48, 48),
    ("enc_conv4", 48, 48), ("enc_conv5", 48, 48), ("enc_conv6", 48, 48),
    ("dec_conv5a", 96, 96), ("dec_conv5b", 96, 96), ("dec_conv4a", 144, 96), ("dec_conv4b", 96, 96),
    ("dec_conv3a", 144, 96), ("dec_conv3b", 96, 96), ("dec_conv2a", 144, 96), ("dec_conv2b", 96, 96),
    ("dec_conv1a", 99, 64), ("dec_conv1b", 64, 32), ("dec_conv1c", 32, 3),
]


def test_layers_and_parameter_count_match_the_paper():
    net = UNet(3)
    convs = [(name, m.in_channels, m.out_channels) for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs == PAPER_LAYERS
    assert all(m.kernel_size == (3, 3) for m in net.modules() if isinstance(m, nn.Conv2d))
    assert sum(p.numel() for p in net.parameters()) == 991_203


def test_he_initialisation_keeps_activations_alive(gen):
    """With He init the output of an untrained net has a spread comparable to its input's (default init would
    shrink it towards zero, which makes tiled-vs-whole comparisons pass trivially)."""
    torch.manual_seed(0)
    out = UNet(3)(torch.rand(2, 3, 64, 64, generator=gen))
    assert out.std() > 0.05


@pytest.mark.parametrize("size", [(32, 64), (96, 32)])
def test_multiple_of_32_needs_no_padding(size, gen):
    net = UNet(1, 2, features=8).eval()
    x = torch.rand(2, 1, *size, generator=gen)
    with torch.no_grad():
        assert torch.equal(net(x), net._core(x))


@pytest.mark.parametrize("size", [(1, 1), (33, 17), (50, 97)])
def test_other_sizes_are_mirror_padded_and_cropped(size, gen):
    net = UNet(3, features=8).eval()
    x = torch.rand(1, 3, *size, generator=gen)
    height, width = size
    padded = mirror_pad(x, 0, -width % 32, 0, -height % 32)
    with torch.no_grad():
        expected = net._core(padded)[..., :height, :width]
        torch.testing.assert_close(net(x), expected, rtol=0, atol=0)


def test_mirror_index_rules():
    idx = torch.arange(-6, 10)
    # reflection without repeating the edge pixel, periodic beyond one reflection
    assert mirror_index(idx, 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert mirror_index(idx, 1).tolist() == [0] * 16  # one-pixel side: replication
    assert mirror_index(torch.arange(-2, 4), 2).tolist() == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"in_channels": 0}, ValueError, "in_channels must be positive, got 0"),
    ({"in_channels": 3, "out_channels": -1}, ValueError, "out_channels must be positive"),
    ({"in_channels": 3, "features": 0}, ValueError, "features must be positive"),
    ({"in_channels": 2.5}, TypeError, "in_channels must be an int"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        UNet(**kwargs)


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"input must be \(B, 3, H, W\)"):
        UNet(3, features=8)(torch.rand(1, 1, 32, 32))
