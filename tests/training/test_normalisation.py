"""n2n_fast/training/normalisation.py and the map in the U-Net: data in its own units trains and denoises.

The quality cases are the measurements of docs/normalisation.md made small: each trains a features-16 U-Net for a few
hundred steps on one image. The PSNR margins are deterministic here (fixed seeds, float32, one thread), so they
cannot fail by chance; the runs without the map show that the margins are not reached for free.
"""
import hashlib

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast import checkpoint as ckpt
from n2n_fast.training.normalisation import data_map, image_moments

pytestmark = pytest.mark.slow
PEAK = 100  # photons at full scale: fluorescence-like low counts in a 16-bit container
STEPS = dict(steps=300, batch_size=4, crop=64, features=16, progress=False, plot=False)


def _photo(side=128):
    from skimage import data
    from skimage.transform import resize

    return resize(data.camera().astype(np.float32) / 255, (side, side), anti_aliasing=True).astype(np.float32)


def _psnr(a, b, data_range):
    return 10 * np.log10(data_range ** 2 / np.mean((np.asarray(a, np.float64) - b) ** 2))


def _sha(model):
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode() + value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_moments_are_exact_for_a_large_offset_and_streamed_by_blocks():
    rng = np.random.default_rng(0)
    image = (1e4 + rng.standard_normal((600, 7, 1))).astype(np.float32)  # 600 rows: three blocks
    count, mean, m2 = image_moments([image, image[:5]])
    both = np.concatenate([image.reshape(-1), image[:5].reshape(-1)]).astype(np.float64)
    assert count == both.size
    assert mean == pytest.approx(both.mean(), rel=1e-14)
    assert m2 / count == pytest.approx(both.var(), rel=1e-9)
    counts = rng.integers(0, 200, (40, 30, 1)).astype(np.uint16)
    assert data_map([[counts]], "data") == pytest.approx((counts.mean() / 65535, counts.std() / 65535), rel=1e-12)


def test_low_count_uint16_counts_train_as_well_as_floats(tmp_path):
    """uint16 counts of peak 100 with Poisson noise in counts: at least 3 dB above the noisy input and within 1 dB of
    the same data trained as floats in [0, 1]; without the map the 16-bit run stays far below (it sees values under
    0.002, and Adam's eps swamps its gradients)."""
    counts = np.round(_photo() * PEAK).astype(np.uint16)
    noisy = np.random.default_rng(1).poisson(counts).astype(np.uint16)
    clean, data_range = counts.astype(np.float64), float(counts.max() - counts.min())
    noisy_psnr = _psnr(noisy, clean, data_range)
    results = {}
    for name, normalisation in (("uint16", "auto"), ("float", "auto"), ("uint16 unmapped", None)):
        as_float = name == "float"
        trained = n2n_fast.train(data=[counts.astype(np.float32) / PEAK] if as_float else [counts],
                                 noise=n2n_fast.Poisson(float(PEAK) if as_float else 65535.0),
                                 out_dir=tmp_path / name.replace(" ", "_"), normalisation=normalisation, **STEPS)
        source = (noisy.astype(np.float32) / PEAK) if as_float else noisy
        out = n2n_fast.denoise(trained.model, source)
        assert out.dtype == source.dtype
        results[name] = _psnr(out.astype(np.float64) * (PEAK if as_float else 1), clean, data_range)
    assert results["uint16"] >= noisy_psnr + 3, (noisy_psnr, results)
    assert abs(results["uint16"] - results["float"]) <= 1, results
    assert results["uint16 unmapped"] < results["uint16"] - 2, results  # the failure the map fixes


def _blobs(side=96):
    from scipy.ndimage import gaussian_filter
    from skimage.data import binary_blobs

    return gaussian_filter(binary_blobs(side, blob_size_fraction=0.15, rng=3).astype(np.float32), 1.5)


def test_float_pairs_in_arbitrary_units_train_without_a_range(tmp_path):
    """A phantom scaled by 100 and offset by -30 (tomogram-like floats), two independent noisy copies: no
    value_range needed, at least 4 dB above the noisy input, the output in the input's units."""
    clean = _blobs() * 100 - 30
    rng = np.random.default_rng(2)
    first, second = (clean + 35 * rng.standard_normal(clean.shape).astype(np.float32) for _ in range(2))
    trained = n2n_fast.train(pairs=([first], [second]), out_dir=tmp_path / "run", **STEPS)
    offset, scale = trained.model.normalisation
    assert offset == pytest.approx(float(np.mean([first, second])), rel=1e-6)
    out = n2n_fast.denoise(trained.model, first)
    data_range = float(clean.max() - clean.min())
    assert out.dtype == np.float32 and abs(float(out.mean()) - float(clean.mean())) < 5  # the input's units
    assert _psnr(out, clean, data_range) >= _psnr(first, clean, data_range) + 4


def test_the_map_is_recorded_and_training_is_bitwise_reproducible_and_resumable(tmp_path):
    counts = np.round(_photo(80) * PEAK).astype(np.uint16)
    kwargs = dict(data=[counts], noise=n2n_fast.Poisson(65535.0), batch_size=2, crop=32, features=8,
                  progress=False, plot=False, checkpoint_every=3)
    whole = n2n_fast.train(steps=6, out_dir=tmp_path / "whole", **kwargs)
    again = n2n_fast.train(steps=6, out_dir=tmp_path / "again", **kwargs)
    n2n_fast.train(steps=3, out_dir=tmp_path / "resumed", **kwargs)
    resumed = n2n_fast.train(steps=6, out_dir=tmp_path / "resumed", resume=True, **kwargs)
    assert _sha(whole.model) == _sha(again.model) == _sha(resumed.model)
    state = ckpt.read(whole.checkpoint)
    expected = [counts.mean() / 65535, counts.std() / 65535]
    assert state["model_args"]["normalisation"] == pytest.approx(expected, rel=1e-12)
    assert state["train_args"]["normalisation"] == state["model_args"]["normalisation"]
    assert n2n_fast.load(whole.checkpoint).normalisation == pytest.approx(expected, rel=1e-12)


def test_a_checkpoint_without_a_map_denoises_as_the_plain_network(tmp_path):
    """Checkpoints written before the map existed have no "normalisation" model argument: they load without one
    and denoise through the plain U-Net (its padded core, as the network computed before)."""
    net = n2n_fast.UNet(1, features=8).eval()
    path = tmp_path / "old.pt"
    old_args = {k: v for k, v in net.arguments().items() if k != "normalisation"}
    ckpt.save({"model": net.state_dict(), "model_args": old_args, "train_args": {}, "step": 1, "optimizer": {},
               "rng": {}, "history": []}, path)
    loaded = n2n_fast.load(path)
    assert loaded.normalisation is None
    image = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(image, (0, 24, 0, 24), mode="reflect")
    with torch.no_grad():
        assert torch.equal(loaded(image), loaded._core(padded)[..., :40, :40])
    assert np.array_equal(n2n_fast.denoise(loaded, image[0, 0].numpy()), n2n_fast.denoise(net, image[0, 0].numpy()))


@pytest.mark.parametrize("make, match", [
    (lambda: np.full((64, 64), 7, np.uint16), "every training pixel has the value"),
    (lambda: np.zeros((64, 64), np.uint8), "every training pixel has the value 0"),
    (lambda: np.where(np.eye(64, dtype=bool), np.nan, 0.5).astype(np.float32), "NaN or Inf"),
])
def test_bad_statistics_are_errors_naming_the_file(tmp_path, make, match):
    import tifffile

    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, make())
    with pytest.raises(ValueError, match=match) as error:
        n2n_fast.train(data=str(path),
                       targets="neighbor", steps=1, crop=32, features=8, out_dir=tmp_path / "run",
                       progress=False, plot=False)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("bad, kind", [("mean", ValueError), ((0.0, 0.0), ValueError), ((0.0, float("nan")),
                                                                                        ValueError),
                                       ((1.0,), TypeError), ((True, 1.0), TypeError)])
def test_bad_normalisation_arguments_are_refused_before_loading(tmp_path, bad, kind):
    with pytest.raises(kind, match="normalisation"):
        n2n_fast.train(data=str(tmp_path / "missing"), targets="neighbor", steps=1, out_dir=tmp_path / "run",
                       normalisation=bad)


@pytest.mark.parametrize("text, expected", [("auto", "auto"), ("none", None), ("0.5,0.25", (0.5, 0.25))])
def test_the_command_line_reads_normalisation(text, expected):
    from n2n_fast.cli import parse_normalisation

    assert parse_normalisation(text) == expected


@pytest.mark.parametrize("text", ["mean", "1,0", "1", "a,b"])
def test_the_command_line_refuses_a_bad_normalisation_by_its_flag(text):
    from n2n_fast.cli import parse_normalisation

    with pytest.raises(ValueError, match="^--normalisation: "):
        parse_normalisation(text)
