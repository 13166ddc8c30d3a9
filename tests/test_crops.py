"""n2n_fast/crops.py: the device-side crop picks and gather equal data.draw_crops + ImageStore.crops."""
import numpy as np
import pytest
import torch

from n2n_fast.training import data
from n2n_fast.crops import DeviceCrops

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
    path = tmp_path / "big.npy"
    np.save(path, STORES["uint8, two sizes"][0])
    store = data.ImageStore([np.load(path, mmap_mode="r")], "cpu")
    assert not DeviceCrops.usable(store)
