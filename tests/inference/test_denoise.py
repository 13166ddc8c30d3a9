"""n2n_fast/inference/denoise.py: n2n_fast.denoise end to end: kinds and layouts in and out, stitch exactness, blend quality
against whole-image inference with a trained paper U-Net, determinism, bounded memory, bad input, and the
`denoise` CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from checkpoints import save_model  # tests/checkpoints.py
import n2n_fast
from n2n_fast.padding import mirror_pad
from n2n_fast.inference.denoise import denoise
from tolerance import assert_close

TILED_VS_WHOLE_MIN_PSNR = 50.0  # dB, docs/tiling.md §6 (float32 both sides, tile 256 / overlap 64)
STITCH_ATOL = 1e-5  # docs/tiling.md §6: stitch == whole image mirror-padded by the margin
BF16_VS_FLOAT32_MIN_PSNR = 40.0  # dB; measured 59.7 on the full astronaut with the trained U-Net


class Pointwise(nn.Module):
    """y = 0.7 x + 0.1003: no spatial context, so any tiling must reproduce it (coefficients chosen so that 8- and
    16-bit results never land near a rounding tie, where float noise of the blend could flip them)."""
    alignment = 32

    def forward(self, x):
        return x * 0.7 + 0.1003


class SmallConv(nn.Module):
    """Fully convolutional, receptive field radius 3 (three 3x3 convolutions, zero padding)."""
    alignment = 32

    def __init__(self, channels):
        super().__init__()
        self.in_channels = channels
        self.net = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, channels, 3, padding=1))

    def forward(self, x):
        return self.net(x)


def _psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _expected_pointwise(image):
    """Pointwise applied in float32 and converted back like denoise does (round + clip for integers)."""
    if isinstance(image, torch.Tensor):
        return _expected_pointwise(image.float().numpy()).astype(np.float32)
    peak = {np.uint8: 255.0, np.uint16: 65535.0}.get(image.dtype.type)
    if peak is None:
        return image.astype(np.float32) * np.float32(0.7) + np.float32(0.1003)
    unit = image.astype(np.float32) * np.float32(1.0 / peak)
    return np.clip(np.round((unit * np.float32(0.7) + np.float32(0.1003)) * peak), 0, peak)


@pytest.mark.parametrize("make", [
    lambda r: r.integers(0, 256, (45, 70), dtype=np.uint8),
    lambda r: r.integers(0, 65536, (33, 97, 3), dtype=np.uint16),
    lambda r: r.random((1, 1)).astype(np.float32),
    lambda r: r.random((80, 3, 2)).astype(np.float64),
    lambda r: r.random((40, 50)).astype(np.float16),
])
@pytest.mark.parametrize("backend", ["extension", "reference"])
def test_numpy_in_numpy_out(make, backend):
    image = make(np.random.default_rng(7))
    before = image.copy()
    result = denoise(Pointwise(), image, tile=64, overlap=16, backend=backend)
    assert isinstance(result, np.ndarray) and result.shape == image.shape and result.dtype == image.dtype
    np.testing.assert_array_equal(image, before)  # never modifies its input
    expected = _expected_pointwise(image)
    tol = 1e-3 if image.dtype == np.float16 else 1e-6
    np.testing.assert_allclose(result.astype(np.float64), expected, atol=tol if result.dtype.kind == "f" else 0)


@pytest.mark.parametrize("shape,dtype", [((3, 37, 41), torch.float32), ((2, 1, 20, 65), torch.uint8),
                                         ((1, 2, 9, 9), torch.bfloat16)])
def test_tensor_in_tensor_out(gen, shape, dtype):
    image = (torch.rand(shape, generator=gen) * (255 if dtype == torch.uint8 else 1)).to(dtype)
    result = denoise(Pointwise(), image, tile=64, overlap=16)
    assert isinstance(result, torch.Tensor) and result.shape == image.shape and result.dtype == dtype
    if dtype == torch.uint8:
        expected = torch.from_numpy(_expected_pointwise(image.numpy())).to(dtype)
        assert torch.equal(result, expected)
    else:
        assert_close(result.float(), image.float() * 0.7 + 0.1003, dtype)


def test_writes_into_out_and_memmap(tmp_path, gen):
    image = np.random.default_rng(3).integers(0, 65536, (130, 70), dtype=np.uint16)
    path = tmp_path / "in.u16"
    source = np.memmap(path, dtype=np.uint16, mode="w+", shape=image.shape)
    source[:] = image
    source.flush()
    source = np.memmap(path, dtype=np.uint16, mode="r", shape=image.shape)
    out = np.memmap(tmp_path / "out.u16", dtype=np.uint16, mode="w+", shape=image.shape)
    returned = denoise(Pointwise(), source, tile=64, overlap=16, out=out)
    assert returned is out
    np.testing.assert_array_equal(out, _expected_pointwise(image))
    floats = np.full(image.shape, np.nan, np.float32)  # poisoned: every element must be written
    denoise(Pointwise(), source, tile=64, overlap=16, out=floats)
    np.testing.assert_allclose(floats, image.astype(np.float32) / 65535 * 0.7 + 0.1003, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (5, 200), (61, 77), (150, 97)])
def test_stitch_reproduces_padded_whole_image(gen, size):
    torch.manual_seed(size[0] * 1000 + size[1])
    model = SmallConv(2).eval()
    image = torch.rand((1, 2) + size, generator=gen)
    tile, overlap = 64, 16  # margin 8 >= receptive-field radius 3
    margin = overlap // 2
    result = denoise(model, image, tile=tile, overlap=overlap, blend="stitch", batch_size=3)
    with torch.no_grad():
        whole = model(mirror_pad(image, margin, margin, margin, margin))[..., margin:-margin, margin:-margin]
    torch.testing.assert_close(result, whole, rtol=0, atol=STITCH_ATOL)


def test_ext_equals_reference_and_runs_are_bit_identical(gen):
    torch.manual_seed(0)
    model = SmallConv(3).eval()
    image = torch.rand((2, 3, 90, 131), generator=gen)
    first = denoise(model, image, tile=64, overlap=16, batch_size=4)
    assert torch.equal(first, denoise(model, image, tile=64, overlap=16, batch_size=4))
    assert_close(denoise(model, image, tile=64, overlap=16, batch_size=4, backend="reference"), first)
    # batches only change which tiles share a model call; the per-pixel sum order is the tile order
    pointwise = [denoise(Pointwise(), image, tile=64, overlap=16, batch_size=b) for b in (1, 3, 64)]
    assert all(torch.equal(pointwise[0], other) for other in pointwise[1:])


# Measured tiled-vs-whole PSNR with this recipe: 58.5 dB (cosine) on the 2-core dev CPU; 54-56 dB for seeds 0-2 on
# an H100. Less trained networks are more sensitive to tile borders (lr 3e-4: 44-51 dB).
TRAIN_STEPS, TRAIN_CROP, TRAIN_BATCH = 300, 32, 4


def _train_unet():
    """The paper U-Net (He init) trained N2C on Gaussian noise (sigma 25/255) on photographs other than the test
    one. ~1 minute on an idle 2-core CPU."""
    import skimage.data

    torch.manual_seed(0)
    photos = [torch.from_numpy(p).permute(2, 0, 1).float() / 255
              for p in (skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket())]
    model = n2n_fast.UNet(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(TRAIN_STEPS):
        crops = []
        for _ in range(TRAIN_BATCH):
            photo = photos[int(torch.randint(len(photos), (1,), generator=gen))]
            y = int(torch.randint(photo.shape[1] - TRAIN_CROP, (1,), generator=gen))
            x = int(torch.randint(photo.shape[2] - TRAIN_CROP, (1,), generator=gen))
            crops.append(photo[:, y:y + TRAIN_CROP, x:x + TRAIN_CROP])
        clean = torch.stack(crops)
        noisy = clean + torch.randn(clean.shape, generator=gen) * (25 / 255)
        loss = torch.mean((model(noisy) - clean) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def trained_unet(request):
    """Trained once, then kept in pytest's cache keyed by the U-Net's source and this recipe (delete
    .pytest_cache, or run with -p no:cacheprovider, to retrain)."""
    import hashlib
    import inspect

    from n2n_fast import unet

    recipe = (inspect.getsource(unet) + inspect.getsource(_train_unet) + torch.__version__
              + f"{TRAIN_STEPS} {TRAIN_CROP} {TRAIN_BATCH}")
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)
    path = cache.mkdir("n2n_fast_tiling") / f"unet_{key}.pt" if cache is not None else None
    if path is not None and path.exists():
        model = n2n_fast.UNet(3)
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        model = _train_unet()
        if path is not None:
            torch.save(model.state_dict(), path)
    return model.eval()


@pytest.fixture(scope="module")
def astronaut_noisy():
    import skimage.data

    clean = skimage.data.astronaut().astype(np.float32) / 255  # 512 x 512: 3 x 3 tiles at the defaults
    return (clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)).astype(np.float32)


def test_blend_matches_whole_image_inference(trained_unet, astronaut_noisy):
    tiled = denoise(trained_unet, astronaut_noisy, tile=256, overlap=64)  # docs/tiling.md §6: 3 x 3 tiles
    with torch.no_grad():
        whole = trained_unet(torch.from_numpy(astronaut_noisy).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert _psnr(tiled, whole) >= TILED_VS_WHOLE_MIN_PSNR
    assert np.array_equal(tiled, denoise(trained_unet, astronaut_noisy, tile=256, overlap=64))  # bit-identical


def test_bf16_mode_runs_close_to_float32(trained_unet, astronaut_noisy):
    crop = np.ascontiguousarray(astronaut_noisy[:256, :300])
    fast = denoise(trained_unet, crop, tile=256, overlap=64, precision="bf16")
    exact = denoise(trained_unet, crop, tile=256, overlap=64)
    assert fast.dtype == np.float32 and _psnr(fast, exact) > BF16_VS_FLOAT32_MIN_PSNR


def test_progress_bar(capsys):
    denoise(Pointwise(), np.zeros((70, 70), np.float32), tile=32, overlap=0, progress=True)
    assert "tile" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,match", [
    (dict(tile=100), "multiple"), (dict(tile=256, overlap=128), "tile / 2"), (dict(overlap=-1), ">= 0"),
    (dict(tile="big"), "auto"), (dict(memory_budget=0), "memory_budget"), (dict(memory_budget=1000), "too small"),
    (dict(blend="linear"), "blend"), (dict(precision="fp8"), "precision"), (dict(batch_size=0), "batch_size"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        denoise(Pointwise(), np.zeros((40, 40), np.float32), **kwargs)


def test_bad_images_and_models():
    image = np.zeros((40, 40, 3), np.float32)
    with pytest.raises(ValueError, match="empty"):
        denoise(Pointwise(), np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        denoise(Pointwise(), np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        denoise(Pointwise(), np.zeros((4, 4), np.int32))
    with pytest.raises(TypeError, match="numpy array or a torch.Tensor"):
        denoise(Pointwise(), [[0.0]])
    poisoned = image.copy()
    poisoned[33, 7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        denoise(Pointwise(), poisoned)
    with pytest.raises(ValueError, match="output shape"):
        denoise(nn.Conv2d(3, 3, 3), image)
    with pytest.raises(ValueError, match="channels"):
        denoise(n2n_fast.UNet(1, features=8), image)
    with pytest.raises(ValueError, match="shape"):
        denoise(Pointwise(), image, out=np.zeros((40, 41, 3), np.float32))
    with pytest.raises(ValueError, match="never overwrites"):
        denoise(Pointwise(), image, out=image)
    with pytest.raises(TypeError, match="model"):
        denoise(lambda x: x, image)


def test_memory_bounded_by_tile_band(tmp_path):
    """A 4096^2 uint16 memmap denoised into a memmap: peak RSS growth stays far below a whole-image float32 copy."""
    script = f"""
import resource, numpy as np, torch
from torch import nn
from n2n_fast.inference.denoise import denoise
class Half(nn.Module):
    alignment = 32
    def forward(self, x):
        return x * 0.5
side = 4096
image = np.memmap(r"{tmp_path}/in", dtype=np.uint16, mode="w+", shape=(side, side))
image[:] = 1000
image.flush()
out = np.memmap(r"{tmp_path}/out", dtype=np.uint16, mode="w+", shape=(side, side))
denoise(Half(), np.zeros((300, 300), np.uint16), tile=256, overlap=64)  # warm up allocators and kernels
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
denoise(Half(), np.memmap(r"{tmp_path}/in", dtype=np.uint16, mode="r", shape=(side, side)), out=out, tile=256,
        overlap=64)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
assert int(out[5, 5]) == 500 and int(out[-1, -1]) == 500
print(grown * 1024)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert result.returncode == 0, result.stderr[-3000:]
    grown = int(result.stdout.split()[-1])
    whole_float32 = 4096 * 4096 * 4
    # mapped pages of input and output (2 x 32 MiB) may count as resident; a float32 image copy would add 64 MiB
    assert grown < 2 * 4096 * 4096 * 2 + whole_float32 // 2, f"peak RSS grew by {grown / 2**20:.0f} MiB"


def test_cli_denoise_file_and_folder(tmp_path):
    from n2n_fast.cli import main
    from n2n_fast.io import read_image, write_image

    torch.manual_seed(0)
    model = n2n_fast.UNet(3, features=8)
    checkpoint = save_model(model, tmp_path / "model.pt")
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_image(str(folder / "a.png"), rng.random((70, 50, 3)), dtype=np.uint8)
    write_image(str(folder / "b.tif"), rng.random((40, 33, 3)), dtype=np.uint16)
    assert main(["denoise", "--checkpoint", str(checkpoint), "--quiet", str(folder / "a.png"),
                 str(tmp_path / "a_out.png")]) == 0
    pixels, dtype = read_image(str(tmp_path / "a_out.png"))
    assert pixels.shape == (70, 50, 3) and dtype == np.uint8
    with torch.no_grad():
        source = torch.from_numpy(read_image(str(folder / "a.png"))[0]).permute(2, 0, 1)[None]
        whole = model(source)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert np.abs(pixels - whole).max() <= 1 / 255 + 1e-6  # one tile: equal to whole-image inference
    assert main(["denoise", "--checkpoint", str(checkpoint), "--quiet", "--tile", "32", "--overlap", "0", "--blend",
                 "stitch",
                 str(folder), str(tmp_path / "out")]) == 0
    assert read_image(str(tmp_path / "out" / "b.tif"))[1] == np.uint16
    assert main(["denoise", "--checkpoint", str(checkpoint), str(tmp_path / "missing.png"), "x.png"]) == 2


@pytest.mark.gpu
def test_cuda_denoise_matches_cpu(gen):
    """Host image streamed to the GPU in bands (pinned buffers, side stream), and a CUDA tensor in place."""
    torch.manual_seed(0)
    model = SmallConv(3).eval()
    image = np.random.default_rng(1).integers(0, 65536, (300, 419, 3), dtype=np.uint16)
    on_cpu = denoise(model, image, tile=64, overlap=16)
    on_gpu = denoise(model, image, tile=64, overlap=16, device="cuda")
    assert isinstance(on_gpu, np.ndarray) and np.abs(on_gpu.astype(np.int64) - on_cpu).max() <= 1
    tensor = torch.from_numpy(image.astype(np.float32) / 65535).permute(2, 0, 1)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # float32 convolutions on both sides
        expected = denoise(model, tensor, tile=64, overlap=16, batch_size=5)
        result = denoise(model.cuda(), tensor.cuda(), tile=64, overlap=16, batch_size=5)
        again = denoise(model, tensor.cuda(), tile=64, overlap=16, batch_size=5)
    assert result.device.type == "cuda" and torch.equal(result, again)
    assert_close(result.cpu(), expected, scale=10)


def test_big_endian_and_flipped_inputs_are_denoised_not_left_unwritten():
    """A big-endian float32 array came back unwritten (results went into a byte-swapped copy); np.fliplr views were
    refused by torch. Both now equal the native, contiguous input's result."""
    net = n2n_fast.UNet(1, features=8).eval()
    x = np.random.default_rng(0).random((40, 44)).astype(np.float32)
    want = n2n_fast.denoise(net, x)
    got = n2n_fast.denoise(net, x.astype(">f4"))
    assert got.dtype == np.float32 and np.array_equal(got, want)
    flipped = np.fliplr(x)
    assert np.array_equal(n2n_fast.denoise(net, flipped), n2n_fast.denoise(net, flipped.copy()))
    with pytest.raises(ValueError, match="out: must be in native byte order"):
        n2n_fast.denoise(net, x, out=np.empty((40, 44), dtype=">f4"))
