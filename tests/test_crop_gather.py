"""The crop_gather op (n2n_fast/triton/crops.py) against its PyTorch twin (n2n_fast/reference/crops.py), bit for
bit, for every image dtype the dispatch's table gives Triton, odd crop sizes, every flip and turn, images of
different sizes; and train()'s DeviceCrops through the dispatch against the host path."""
import numpy as np
import pytest
import torch

from n2n_fast import _backend, data
from n2n_fast.device_crops import DeviceCrops
from n2n_fast.reference.crops import crop_gather as reference_gather

TRITON_DTYPES = dict(next(i for i in _backend.OPS["crop_gather"] if i.backend == "triton").accepts.dtypes)["flat"]
SIZES = [(23, 31), (40, 17), (19, 19)]


def _store_tensors(dtype, channels, gen):
    """Packed images of SIZES and the tables DeviceCrops builds."""
    numels = [channels * h * w for h, w in SIZES]
    if dtype.is_floating_point:
        flat = torch.rand(sum(numels), generator=gen).to(dtype)
    else:
        flat = torch.randint(0, 256 if dtype == torch.uint8 else 65536, (sum(numels),), generator=gen).to(dtype)
    offsets = torch.tensor(np.cumsum([0] + numels[:-1]), dtype=torch.int64)
    heights = torch.tensor([h for h, _ in SIZES], dtype=torch.int64)
    widths = torch.tensor([w for _, w in SIZES], dtype=torch.int64)
    inv = torch.tensor([1 / 255, 1.0, 1 / 65535], dtype=torch.float32)
    return flat, offsets, heights, widths, inv


def _picks(crop, count, gen):
    image = torch.randint(0, len(SIZES), (count,), generator=gen)
    heights = torch.tensor([h for h, _ in SIZES])[image]
    widths = torch.tensor([w for _, w in SIZES])[image]
    row = (torch.rand(count, generator=gen) * (heights - crop + 1)).long()
    col = (torch.rand(count, generator=gen) * (widths - crop + 1)).long()
    bits = torch.arange(count) % 8  # every flip and turn
    return image, row, col, bits


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 3])
def test_triton_crop_gather_equals_the_twin_bitwise(dtype, channels):
    from n2n_fast.triton.crops import crop_gather

    gen = torch.Generator().manual_seed(5)
    tables = _store_tensors(dtype, channels, gen)
    for crop in (1, 5, 16, 17):
        picks = _picks(crop, 11, gen)
        fast = crop_gather(*tables, *picks, channels, crop)
        slow = reference_gather(*tables, *picks, channels, crop)
        assert fast.dtype == torch.float32 and fast.shape == (11, channels, crop, crop)
        assert torch.equal(fast, slow), (dtype, channels, crop)


@pytest.mark.interpret
def test_device_crops_through_triton_equal_the_host_path():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (40, 44, 3), dtype=np.uint8), rng.integers(0, 256, (36, 50, 3), dtype=np.uint8)]
    store = data.ImageStore(images, "cpu")
    crops = DeviceCrops(store, data.DATA_KEY, data.SAMPLE)
    assert _backend.choose("crop_gather", "cpu", None, flat=crops.flat)[0] == "triton"
    for step in (0, 3):
        host = data.draw_crops(7, step, 2, 6, store.sizes, 15)
        picks = crops.picks(7, torch.tensor(step), 2, 6, 15)
        assert torch.equal(crops.cut(picks, 15), store.crops(host, 15))


def test_float64_images_are_left_to_the_twin():
    reason = next(i for i in _backend.OPS["crop_gather"] if i.backend == "triton").accepts.refusal(
        _backend.signature_of({"flat": torch.zeros(1, dtype=torch.float64)}))
    assert "flat: dtype float64 is not accepted" in reason
