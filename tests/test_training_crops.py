"""The training_crops op (n2n_fast/triton/crops.py: picks and cut in one launch) against its PyTorch twin
(n2n_fast/reference/crops.py) and the host path (data.draw_crops + ImageStore.crops), bit for bit: every image
dtype the dispatch's table gives Triton, odd crop sizes, every flip and turn, images of different sizes, steps and
sample indices past 2**31 and 2**32, the step as an int and from device memory."""
import numpy as np
import pytest
import torch

from n2n_fast import _backend

from n2n_fast.training import data
from n2n_fast.crops import DeviceCrops
from n2n_fast.reference.crops import training_crops as twin

TRITON_DTYPES = dict(next(i for i in _backend.OPS["training_crops"] if i.backend == "triton").accepts.dtypes)["flat"]
SIZES = [(23, 31), (40, 17), (19, 19)]
STEPS = (0, 1, 7, 2**31 + 5, 2**32 - 1)  # every bit of the 32-bit step counter
STARTS = ((0, 0), (12345, 3), (2**62 + 1, 2**32 - 2))  # (seed, index): a batch crossing the 32-bit sample counter


def _tables(dtype, channels, gen):
    """Packed images of SIZES and the tables DeviceCrops builds."""
    numels = [channels * h * w for h, w in SIZES]
    if dtype.is_floating_point:
        flat = torch.rand(sum(numels), generator=gen).to(dtype)
    else:
        flat = torch.randint(0, 256 if dtype == torch.uint8 else 65536, (sum(numels),), generator=gen).to(dtype)
    offsets = torch.tensor(np.cumsum([0] + numels[:-1]), dtype=torch.int64)
    heights = torch.tensor([h for h, _ in SIZES], dtype=torch.int64)
    widths = torch.tensor([w for _, w in SIZES], dtype=torch.int64)
    return flat, offsets, heights, widths, torch.tensor([1 / 255, 1.0, 1 / 65535], dtype=torch.float32)


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 3])
def test_triton_training_crops_equal_the_twin_bitwise(dtype, channels):
    from n2n_fast.triton.crops import training_crops

    tables = _tables(dtype, channels, torch.Generator().manual_seed(5))
    for crop, step, (seed, index) in ((1, 3, STARTS[1]), (5, STEPS[3], STARTS[2]), (16, 0, STARTS[0]),
                                      (17, STEPS[4], STARTS[1])):
        for step_form in (step, torch.tensor(step)):
            fast = training_crops(*tables, seed ^ data.DATA_KEY, step_form, index, 11, data.SAMPLE, channels, crop)
            slow = twin(*tables, seed ^ data.DATA_KEY, step_form, index, 11, data.SAMPLE, channels, crop)
            assert fast.dtype == torch.float32 and fast.shape == (11, channels, crop, crop)
            assert torch.equal(fast, slow), (dtype, channels, crop, step)


@pytest.mark.interpret
def test_device_crops_through_triton_equal_the_host_path():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (40, 44, 3), dtype=np.uint8), rng.integers(0, 256, (36, 50, 3), dtype=np.uint8)]
    store = data.ImageStore(images, "cpu")
    crops = DeviceCrops(store, data.DATA_KEY, data.SAMPLE)
    assert _backend.choose("training_crops", "cpu", None, flat=crops.flat)[0] == "triton"
    seen_bits = set()
    for step in STEPS:
        for seed, index in STARTS:
            host = data.draw_crops(seed, step, index, 8, store.sizes, 15)
            seen_bits |= {p[3] for p in host}
            assert torch.equal(crops.crops(seed, torch.tensor(step), index, 8, 15), store.crops(host, 15)), step
    assert len(seen_bits) == 8  # every flip and turn was among the picks


def test_twin_equals_the_host_path():
    """The twin itself (pure PyTorch, reference Philox) against data.draw_crops + ImageStore.crops."""
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 65536, (33, 60, 1), dtype=np.uint16), rng.integers(0, 65536, (30, 20, 1),
                                                                              dtype=np.uint16)]
    store = data.ImageStore(images, "cpu")
    crops = DeviceCrops(store, data.DATA_KEY, data.SAMPLE)
    tables = (crops.flat, crops.offsets, crops.heights, crops.widths, crops.inv_scale)
    for step in (0, STEPS[3]):
        for seed, index in STARTS:
            host = data.draw_crops(seed, step, index, 5, store.sizes, 12)
            got = twin(*tables, seed ^ data.DATA_KEY, torch.tensor(step), index, 5, data.SAMPLE, 1, 12)
            assert torch.equal(got, store.crops(host, 12))


def test_float64_images_are_left_to_the_twin():
    reason = next(i for i in _backend.OPS["training_crops"] if i.backend == "triton").accepts.refusal(
        _backend.signature_of({"flat": torch.zeros(1, dtype=torch.float64)}))
    assert "flat: dtype float64 is not accepted" in reason
