"""n2n_fast/crops.py: the device-side crop picks and gather equal data.draw_crops + ImageStore.crops."""
import numpy as np
import pytest
import torch

from n2n_fast import Gaussian
from n2n_fast.crops import DeviceCrops
from n2n_fast.training import data
from n2n_fast.training import step as training_step

rng = np.random.default_rng(0)
STORES = {
    "uint8, two sizes": [rng.integers(0, 256, (40, 44, 3), dtype=np.uint8),
                         rng.integers(0, 256, (36, 50, 3), dtype=np.uint8)],
    "uint16": [rng.integers(0, 65536, (33, 60, 1), dtype=np.uint16)],
    "float32": [rng.random((40, 41, 2), dtype=np.float32)],
    "mixed dtypes": [rng.integers(0, 256, (30, 31, 1), dtype=np.uint8), rng.random((29, 33, 1), dtype=np.float32)],
}


@pytest.mark.parametrize("name", list(STORES))
def test_picks_and_crops_match_the_host_path_bitwise(name):
    store = data.ImageStore(STORES[name], "cpu")
    assert DeviceCrops.usable(store)
    crops = DeviceCrops(store, data.DATA_KEY, data.SAMPLE)
    for step in (0, 1, 7, 2**31 + 5, 2**32 - 1):  # every bit of the 32-bit step counter
        for seed, index in ((0, 0), (12345, 3), (2**62 + 1, 2**40)):
            host = data.draw_crops(seed, step, index, 6, store.sizes, 16)
            picks = crops.picks(seed, torch.tensor(step), index, 6, 16)
            assert [tuple(int(t[i]) for t in picks) for i in range(6)] == [tuple(p) for p in host]
            assert torch.equal(crops.cut(picks, 16), store.crops(host, 16)), (step, seed)
    assert len({(p[3] & 1, p[3] >> 1) for s in range(40) for p in data.draw_crops(1, s, 0, 4, store.sizes, 16)}) == 8


def test_realisation_pairs_match_the_host_draw():
    store = data.ImageStore(STORES["uint8, two sizes"], "cpu")
    crops = DeviceCrops(store, data.DATA_KEY, data.SAMPLE)
    for realisations in (2, 3, 5):
        for step in (0, 4):
            first, second = crops.realisation_pairs(9, torch.tensor(step), 2, 7, realisations, data.PAIR)
            host = data.draw_realisations(9, step, 2, 7, realisations)
            assert list(zip(first.tolist(), second.tolist())) == host


def test_memmap_stores_take_the_host_path(tmp_path):
    """A store holding a memmap (here beside an image in memory) is not packed for the device: the training step
    draws its picks with data.draw_crops and cuts them from the file, the same crops as from the images in memory."""
    images = STORES["uint8, two sizes"]
    np.save(tmp_path / "big.npy", images[0])
    store = data.ImageStore([np.load(tmp_path / "big.npy", mmap_mode="r"), images[1]], "cpu")
    assert not DeviceCrops.usable(store)
    run = training_step.make_run(training_step.new_network(3, 8, 0), [store], mode="noisy", noise=Gaussian(0.1),
                                 loss="l2", seed=5, steps=4, batch_size=6, crop=16, lr=3e-4, rampdown=0.3,
                                 neighbor_weight=2.0, precision="float32")
    assert run.device_crops is None and isinstance(store.images[0], np.memmap)  # read from the file per crop
    in_memory = data.ImageStore(images, "cpu")
    for number in (0, 3):
        picks = run.picks(number, 2)
        assert picks == data.draw_crops(5, number, 2, 6, store.sizes, 16)
        assert {image for image, *_ in picks} == {0, 1}  # both images, the memmap among them, are cut
        assert torch.equal(run.cut(0, picks), in_memory.crops(picks, 16))
