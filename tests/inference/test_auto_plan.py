"""tile="auto", overlap="auto": the plan from a memory budget (n2n_fast/inference/auto_plan.py), and its seam quality on
a trained U-Net (docs/tiling.md §2, §6)."""
import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.inference import auto_plan
from n2n_fast.inference.denoise import denoise, denoise_plan
from n2n_fast.inference.plan import make_plan

SEAM_MIN_PSNR = 50.0  # dB, docs/tiling.md §2: tiled vs whole-image at the auto overlap, and between two budgets
MIB = 1 << 20
# Cheap stand-in for a trained network (benchmarks/seam_study.py measures this recipe too: docs/tiling.md).
# Width does not change the receptive field, which is what seams depend on; training length does, a little.
TEST_FEATURES, TEST_STEPS, TEST_CROP = 16, 400, 32


def _image(shape):
    return np.zeros(shape, np.float32)


def test_plan_is_the_same_on_any_machine():
    """Hard-coded plans: nothing but the inputs and the budget decides (no free memory, threads or timing)."""
    unet = n2n_fast.UNet(3)
    plan = denoise_plan(unet, _image((2048, 2048, 3)), memory_budget=1024 * MIB)
    assert (plan.plan.tile_h, plan.plan.tile_w, plan.plan.overlap, plan.batch_size) == (704, 704, 32, 1)
    assert plan.plan.row_origins == plan.plan.col_origins == (0, 672, 1344)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        again = denoise_plan(unet, _image((2048, 2048, 3)), memory_budget=1024 * MIB)
    finally:
        torch.set_num_threads(threads)
    assert again == plan
    strip = denoise_plan(n2n_fast.UNet(1, features=16), _image((100, 3000)), memory_budget=64 * MIB)
    assert (strip.plan.tile_h, strip.plan.tile_w, len(strip.plan.col_origins)) == (128, 480, 7)


def test_default_budget_reads_total_memory_only(monkeypatch):
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": (2 << 30) // 4096}  # a 2 GiB machine
    monkeypatch.setattr(auto_plan.os, "sysconf", lambda name: pages[name])
    assert auto_plan.default_memory_budget(torch.device("cpu")) == 512 * MIB
    pages["SC_PHYS_PAGES"] = (64 << 30) // 4096  # a large machine: the CPU cap
    assert auto_plan.default_memory_budget(torch.device("cpu")) == auto_plan.CPU_BUDGET_CAP


def test_budget_too_small_for_one_aligned_tile_is_a_clear_error():
    unet = n2n_fast.UNet(3)
    need = 32 * 32 * auto_plan.activation_bytes_per_pixel(unet, 3) + 2 * 3 * 32 * 500 * 4
    with pytest.raises(ValueError, match=rf"memory_budget: {need - 1} bytes is too small for one 32 x 32 tile.*"
                                         rf"at least {need}"):
        denoise_plan(unet, _image((300, 500, 3)), memory_budget=need - 1)
    smallest = denoise_plan(unet, _image((300, 500, 3)), memory_budget=need)
    assert (smallest.plan.tile_h, smallest.plan.tile_w, smallest.plan.overlap) == (32, 32, 0)
    for bad in (0, -5, float("nan"), "1G", True):
        with pytest.raises(ValueError, match="memory_budget"):
            denoise_plan(unet, _image((30, 30, 3)), memory_budget=bad)


@pytest.mark.parametrize("size", [(1, 1), (31, 700), (257, 257), (1000, 333), (2048, 1536)])
@pytest.mark.parametrize("budget_mib", [8, 60, 400])
@pytest.mark.parametrize("blend", ["cosine", "stitch"])
def test_auto_plan_fits_budget_and_covers_image(size, budget_mib, blend):
    height, width = size
    unet = n2n_fast.UNet(1, features=16)
    chosen = denoise_plan(unet, _image(size), memory_budget=budget_mib * MIB, blend=blend)
    plan, per_pixel = chosen.plan, auto_plan.activation_bytes_per_pixel(unet, 1)
    assert chosen.estimated_bytes <= budget_mib * MIB
    assert chosen.batch_size * plan.tile_h * plan.tile_w * per_pixel <= chosen.estimated_bytes
    margin = plan.overlap // 2 if blend == "stitch" else 0
    for origins, tile, length in ((plan.row_origins, plan.tile_h, height), (plan.col_origins, plan.tile_w, width)):
        assert tile % 32 == 0 and all((o + margin) % 32 == 0 for o in origins)
        assert origins[0] == -margin and origins[-1] + tile >= length + margin
        assert origins[-1] + tile - (length + margin) < 32  # never more than the alignment's padding past the end
        assert all(b - a <= tile - plan.overlap for a, b in zip(origins, origins[1:]))  # every seam overlaps
    assert chosen.auto_tile and chosen.auto_overlap
    if plan.count > 1:  # the largest tiles: a budget 10 % smaller never allows larger ones
        smaller = denoise_plan(unet, _image(size), memory_budget=budget_mib * MIB * 0.9, blend=blend).plan
        assert smaller.tile_h * smaller.tile_w <= plan.tile_h * plan.tile_w


def test_explicit_tile_and_overlap_are_honoured():
    unet = n2n_fast.UNet(3, features=16)
    given = denoise_plan(unet, _image((600, 500, 3)), tile=256, overlap=64, memory_budget=8 * MIB)
    assert given.plan == make_plan(600, 500, 256, 64, 32, "cosine") and not given.auto_tile
    assert denoise_plan(unet, _image((600, 500, 3)), tile=256).plan.overlap == auto_plan.auto_overlap(256, 32)
    zero = denoise_plan(unet, _image((600, 500, 3)), overlap=0, memory_budget=40 * MIB)
    assert zero.auto_tile and zero.plan.overlap == 0 and zero.plan.count > 1
    assert "tiles of" in zero.describe() and "overlap 0" in zero.describe()


def test_overlap_rule_follows_measurements():
    """AUTO_OVERLAP as docs/tiling.md derives it: cosine 64 px below 384 px tiles, 32 from there on; gaussian 64;
    never >= tile / 2."""
    sides = (32, 64, 96, 128, 256, 352, 384, 704)
    assert [auto_plan.auto_overlap(t, 32) for t in sides] == [0, 0, 32, 32, 64, 64, 32, 32]
    assert [auto_plan.auto_overlap(t, 32, "gaussian") for t in sides] == [0, 0, 32, 32, 64, 64, 64, 64]


@pytest.fixture(scope="module")
def trained_unet():
    """A narrow U-Net trained N2N on small crops (n2n_fast.train; 34-49 s on a busy 2-core CPU). Measured with it:
    57.3 and 55.4 dB against whole-image inference at the two budgets below, 53.4 dB between them; trained on
    200 steps instead it falls to 49.6 dB (less trained networks react more to tile borders)."""
    import tempfile

    import skimage.data

    photos = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    with tempfile.TemporaryDirectory() as out_dir:
        result = n2n_fast.train(data=photos, noise=n2n_fast.Gaussian(25 / 255), steps=TEST_STEPS, batch_size=4,
                                crop=TEST_CROP, lr=1e-3, seed=0, out_dir=out_dir, device="cpu", precision="float32",
                                features=TEST_FEATURES, progress=False, plot=False, checkpoint_every=TEST_STEPS)
    return result.model.eval()


def _psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_seams_at_auto_overlap_and_two_budgets(trained_unet):
    import skimage.data

    clean = skimage.data.astronaut().astype(np.float32) / 255  # held out from training
    noisy = (clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)).astype(np.float32)
    with torch.inference_mode():
        whole = trained_unet(torch.from_numpy(noisy).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    outputs = []
    for budget in (100 * MIB, 60 * MIB):
        plan = denoise_plan(trained_unet, noisy, memory_budget=budget)
        assert plan.plan.count >= 4 and plan.auto_overlap
        outputs.append(denoise(trained_unet, noisy, memory_budget=budget))
        assert _psnr(outputs[-1], whole) >= SEAM_MIN_PSNR, plan.describe()
    assert denoise_plan(trained_unet, noisy, memory_budget=100 * MIB) != denoise_plan(trained_unet, noisy,
                                                                                      memory_budget=60 * MIB)
    assert _psnr(outputs[0], outputs[1]) >= SEAM_MIN_PSNR
