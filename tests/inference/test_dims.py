"""denoise_mode: a 3-D network takes volumes only; a 2-D network takes images and stacks (slice by slice)."""
import pytest

from n2n_fast import UNet
from n2n_fast.inference.dims import denoise_mode


def test_modes():
    net2, net3 = UNet(1, features=4), UNet(1, features=4, dims=3, z_pools=1)
    assert denoise_mode(net2, "YX", (5, 6)) == "image"
    assert denoise_mode(net2, "ZYX", (3, 5, 6)) == "slices" and denoise_mode(net2, "TYX", (3, 5, 6)) == "slices"
    assert denoise_mode(net3, "ZYX", (3, 5, 6)) == "volume" and denoise_mode(net3, "ZYXC", (1, 5, 6, 1)) == "volume"
    assert denoise_mode(object(), "YXC", (5, 6, 3)) == "image"  # a model without dims is 2-D


@pytest.mark.parametrize("axes,shape,match", [
    ("YX", (5, 6), r"image: the model is a 3-D network .* is a single 2-D image \(axes 'YX'\); pass a volume "
                   r"with axes='ZYX'"),
    ("TYX", (4, 5, 6), "is a time series"),
])
def test_a_3d_network_refuses_what_is_not_a_volume(axes, shape, match):
    with pytest.raises(ValueError, match=match):
        denoise_mode(UNet(1, features=4, dims=3, z_pools=0), axes, shape)
