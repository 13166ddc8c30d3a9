"""The paper U-Net: layer list, parameter count, sizes, the pad-and-crop rule, and bad arguments; in 2-D and in 3-D
(the z-pooling schedule of docs/volumes.md §1)."""
import math

import pytest
import torch
from torch import nn

from checkpoints import save_model  # tests/checkpoints.py
from n2n_fast import UNet, checkpoint
from n2n_fast.padding import mirror_index, mirror_pad, mirror_pad_end
from n2n_fast.unet import z_pool_levels
from tolerance import assert_close

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
    with pytest.raises(ValueError, match=r"needs UNet\(..., dims=3\)"):
        UNet(1, features=4)(torch.rand(1, 1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"input must be \(B, 1, D, H, W\).*needs UNet\(..., dims=2\)"):
        UNet(1, features=4, dims=3)(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"D, H, W >= 1"):
        UNet(1, features=4, dims=3)(torch.rand(1, 1, 0, 8, 8))


@pytest.mark.parametrize("dims", [2, 3])
def test_float64_input_is_a_clear_type_error(dims):
    net = UNet(1, features=4, dims=dims, **({"z_pools": 0} if dims == 3 else {}))
    with pytest.raises(TypeError, match=r"input is torch.float64 but the network's weights are torch.float32; "
                                        r"pass x.float\(\)"):
        net(torch.rand(1, 1, *(1,) * (dims - 2), 8, 8, dtype=torch.float64))
    net.double()  # a float64 network takes float64 input
    assert net(torch.rand(1, 1, *(1,) * (dims - 2), 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_dims_2_is_the_default_and_old_checkpoints_load_as_2d(tmp_path, gen):
    """A checkpoint written before dims existed (model_args without it) loads as the same 2-D network."""
    torch.manual_seed(3)
    net = UNet(1, features=8).eval()
    torch.manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 UNet(1, features=8, dims=2).state_dict().values()))
    assert net.arguments() == {"in_channels": 1, "out_channels": 1, "features": 8, "dims": 2,
                               "normalisation": None}
    assert net.alignment == 32 and net.spatial_alignment == (32, 32) and net.z_pools is None
    old_args = {"in_channels": 1, "out_channels": 1, "features": 8}
    loaded = checkpoint.load(save_model(net, tmp_path / "old.pt", model_args=old_args))
    x = torch.rand(1, 1, 37, 41, generator=gen)
    with torch.no_grad():
        assert loaded.dims == 2 and torch.equal(loaded(x), net(x))


# ---- dims=3: the z-pooling schedule (docs/volumes.md §1) ----

def test_z_pool_levels_follow_the_depth():
    assert [z_pool_levels(depth) for depth in (1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 300)] == \
        [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert z_pool_levels() == 5  # unknown depth, isotropic: the paper's five levels


def test_z_pool_levels_follow_the_anisotropy():
    table = {0.5: 5, 1.0: 5, 1.99: 5, 2.0: 4, 3.0: 4, 4.0: 3, 7.9: 3, 8.0: 2, 16.0: 1, 31.0: 1, 32.0: 0, 100.0: 0}
    assert {a: z_pool_levels(anisotropy=a) for a in table} == table
    assert z_pool_levels(300, anisotropy=5.0) == 3 and z_pool_levels(2, anisotropy=5.0) == 1  # the smaller limit


@pytest.mark.parametrize("kwargs,error,match", [
    ({"depth": 0}, ValueError, "depth: the z extent must be at least 1"),
    ({"depth": 2.0}, TypeError, "depth: expected an int"),
    ({"anisotropy": 0.0}, ValueError, "anisotropy: expected a finite positive"),
    ({"anisotropy": math.nan}, ValueError, "anisotropy: expected a finite positive"),
    ({"anisotropy": "3"}, TypeError, "anisotropy: expected a number"),
])
def test_z_pool_levels_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        z_pool_levels(**kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"in_channels": 1, "dims": 4}, ValueError, "dims must be 2 .* or 3"),
    ({"in_channels": 1, "dims": True}, ValueError, "dims must be 2"),
    ({"in_channels": 1, "z_pools": 2}, ValueError, r"z_pools applies to volumes \(dims=3\) only"),
    ({"in_channels": 1, "dims": 3, "z_pools": 6}, ValueError, "z_pools must be at most 5"),
    ({"in_channels": 1, "dims": 3, "z_pools": -1}, ValueError, "z_pools must be at least 0"),
    ({"in_channels": 1, "dims": 3, "z_pools": 1.0}, TypeError, "z_pools must be an int"),
])
def test_bad_3d_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        UNet(**kwargs)


def test_3d_structure_is_the_paper_network_in_3d():
    net = UNet(3, dims=3, z_pools=2)
    convs = [(name, m.in_channels, m.out_channels) for name, m in net.named_modules() if isinstance(m, nn.Conv3d)]
    assert convs == PAPER_LAYERS and not any(isinstance(m, nn.Conv2d) for m in net.modules())
    assert all(m.kernel_size == (3, 3, 3) and m.padding == (1, 1, 1) for m in net.modules()
               if isinstance(m, nn.Conv3d))
    assert net._kernels == [(1, 2, 2)] * 3 + [(2, 2, 2)] * 2  # the deepest two levels pool z
    assert net.spatial_alignment == (4, 32, 32) and net.alignment == 32
    assert net.arguments() == {"in_channels": 3, "out_channels": 3, "features": 48, "dims": 3,
                               "normalisation": None, "z_pools": 2}
    assert UNet(1, dims=3).z_pools == 5 and UNet(1, dims=3).spatial_alignment == (32, 32, 32)
    # He initialisation (fan-in = in_channels * 27): leaky_relu(0.1) gain, the last conv linear; zero biases
    for module, gain in ((net.dec_conv2a, math.sqrt(2 / (1 + 0.1 ** 2))), (net.dec_conv1c, 1.0)):
        fan_in = module.in_channels * 27
        assert module.weight.std().item() == pytest.approx(gain / math.sqrt(fan_in), rel=0.05)
    assert all(not m.bias.detach().any() for m in net.modules() if isinstance(m, nn.Conv3d))


def test_3d_net_on_one_slice_is_the_2d_net_with_the_middle_kernel_planes(gen):
    """Without z pooling a one-slice volume only meets the kernels' middle z plane (the others see the zero
    padding): the 3-D net is then exactly the 2-D paper network, activations, skips and linear output included."""
    net3 = UNet(2, 3, features=4, dims=3, z_pools=0).eval()
    net2 = UNet(2, 3, features=4).eval()
    net2.load_state_dict({k: v[:, :, 1] if v.dim() == 5 else v for k, v in net3.state_dict().items()})
    x = torch.rand(2, 2, 1, 21, 35, generator=gen)
    with torch.no_grad():
        assert_close(net3(x)[:, :, 0], net2(x[:, :, 0]))


def _padded_reference(net, x):
    """net._core on `x` mirror-padded (padding.mirror_index) to net.spatial_alignment on every axis, cropped."""
    size = x.shape[2:]
    for dim, (length, align) in enumerate(zip(size, net.spatial_alignment), 2):
        positions = torch.arange(length + (-length % align))
        x = x.index_select(dim, mirror_index(positions, length))
    return net._core(x)[..., :size[0], :size[1], :size[2]]


@pytest.mark.parametrize("depth", range(1, 9))
def test_stacks_of_1_to_8_slices_are_padded_and_cropped_on_every_axis(depth, gen):
    net = UNet(1, features=4, dims=3, z_pools=z_pool_levels(depth)).eval()
    x = torch.rand(1, 1, depth, 11, 7, generator=gen)
    with torch.no_grad():
        y = net(x)
        assert y.shape == x.shape
        torch.testing.assert_close(y, _padded_reference(net, x), rtol=0, atol=0)


@pytest.mark.parametrize("z_pools,size", [(5, (3, 5, 9)), (1, (2, 32, 32)), (2, (6, 33, 1))])
def test_3d_padding_beyond_the_volume_and_aligned_sizes(z_pools, size, gen):
    """Pads longer than the axis (3 slices to 32: periodic reflection), an aligned volume (no padding), a
    one-pixel side (replication)."""
    net = UNet(2, 1, features=4, dims=3, z_pools=z_pools).eval()
    x = torch.rand(2, 2, *size, generator=gen)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 1, *size)
        torch.testing.assert_close(y, _padded_reference(net, x), rtol=0, atol=0)
    assert torch.equal(mirror_pad_end(x, [0, 0, 0]), x)


def test_3d_gradients_reach_every_parameter(gen):
    net = UNet(1, features=4, dims=3, z_pools=1)
    x = torch.rand(1, 1, 2, 9, 10, generator=gen, requires_grad=True)
    net(x).square().mean().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"{name} got a zero gradient"
    assert x.grad.abs().sum() > 0


def test_3d_arguments_round_trip_through_a_checkpoint(tmp_path, gen):
    net = UNet(1, 2, features=4, dims=3, z_pools=3).eval()
    loaded, state = checkpoint.load_checkpoint(save_model(net, tmp_path / "c.pt"))
    assert state["model_args"] == net.arguments() == loaded.arguments()
    assert loaded.dims == 3 and loaded.spatial_alignment == (8, 32, 32)
    x = torch.rand(1, 1, 5, 9, 12, generator=gen)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_3d_bf16_autocast_runs(gen):
    net = UNet(1, features=4, dims=3, z_pools=2).eval()
    x = torch.rand(1, 1, 4, 17, 15, generator=gen)
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = net(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape and torch.isfinite(y.float()).all()
    # eleven bf16 convolutions deep: far looser than one op's bf16 tolerance, far tighter than the output's spread
    assert float((y.float() - expected).abs().max()) < 0.1 * float(expected.abs().max())
