"""Training data path (n2n_fast/training/data.py): loading, compact store, counter-based crops, Neighbor2Neighbor sampler."""
import numpy as np
import pytest
import torch
from PIL import Image

from n2n_fast.training import data as D


def _images(rng):
    return [rng.integers(0, 256, (37, 45, 3), dtype=np.uint8), rng.integers(0, 65536, (41, 33, 3), dtype=np.uint16),
            rng.random((40, 52, 3), dtype=np.float32)]


def test_load_images_sources(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (19, 23), dtype=np.uint8)
    rgb = rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    folder = D.load_images(tmp_path, "data")  # sorted, non-images skipped, compact dtype kept
    assert [i.shape for i in folder] == [(19, 23, 1), (21, 17, 3)] and folder[0].dtype == np.uint8
    np.testing.assert_array_equal(folder[0][..., 0], grey)
    np.testing.assert_array_equal(folder[1], rgb)
    assert np.array_equal(D.load_images(str(tmp_path / "b.png"), "data")[0], rgb)
    assert D.load_images(grey, "data")[0].shape == (19, 23, 1)
    stack = rng.random((3, 8, 9, 2)).astype(np.float64)
    loaded = D.load_images(stack, "data")
    assert len(loaded) == 3 and loaded[0].dtype == np.float32 and loaded[2].shape == (8, 9, 2)
    mixed = D.load_images([tmp_path / "a.png", rgb], "data")
    assert [i.shape[2] for i in mixed] == [1, 3]


def test_load_images_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="data: folder .* holds no images"):
        D.load_images(empty, "data")
    with pytest.raises(ValueError, match="does not exist"):
        D.load_images(tmp_path / "missing", "val")
    with pytest.raises(ValueError, match=r"data\[0\].*cannot read"):
        (tmp_path / "bad.png").write_bytes(b"not a png")
        D.load_images([tmp_path / "bad.png"], "data")
    with pytest.raises(TypeError, match="dtype must be uint8, uint16 or float"):
        D.load_images(np.zeros((4, 4), np.int32), "data")
    with pytest.raises(ValueError, match="NaN or Inf"):
        D.load_images(np.full((4, 4), np.nan, np.float32), "data")
    with pytest.raises(ValueError, match="empty list"):
        D.load_images([], "pairs[1]")
    with pytest.raises(TypeError, match="expected a folder"):
        D.load_images(42, "data")
    with pytest.raises(ValueError, match="same number of channels"):
        D.check_images([np.zeros((8, 8, 1), np.uint8), np.zeros((8, 8, 3), np.uint8)], "data")
    with pytest.raises(ValueError, match=r"data\[1\]: image of 8x7 is smaller than the crop 8x8"):
        D.check_images([np.zeros((9, 9, 1), np.uint8), np.zeros((8, 7, 1), np.uint8)], "data", crop=8)


def _expected_crop(image, row, col, bits, crop):
    patch = image[row:row + crop, col:col + crop].astype(np.float64)
    patch /= {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(image.dtype, 1)
    if bits & 1:
        patch = patch[:, ::-1]
    patch = np.rot90(patch, (bits >> 1) & 3, axes=(0, 1))  # (H, W, C) rows/cols = tensor dims -2/-1
    return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))).float()


def test_store_crops_match_numpy():
    images = _images(np.random.default_rng(2))
    store = D.ImageStore(images, "cpu")
    assert store.images[0].dtype == torch.uint8  # compact: not float
    crop = 13
    picks = D.draw_crops(seed=5, step=3, index=0, count=24, sizes=store.sizes, crop=crop)
    out = store.crops(picks, crop)
    assert out.shape == (24, 3, crop, crop) and out.dtype == torch.float32
    for got, (image, row, col, bits) in zip(out, picks):
        torch.testing.assert_close(got, _expected_crop(images[image], row, col, bits, crop), rtol=0, atol=1e-7)
    assert {bits for *_, bits in picks} == set(range(8))  # every flip/turn combination shows up in 24 draws
    assert {image for image, *_ in picks} == {0, 1, 2}
    full = store.full(1)
    torch.testing.assert_close(full[0], _expected_crop(images[1], 0, 0, 0, 41)[:, :, :33], rtol=0, atol=1e-7)


def test_draws_are_counter_based():
    sizes = [(50, 60), (33, 90), (70, 40)]
    whole = D.draw_crops(7, 11, 0, 6, sizes, 32)
    assert whole == D.draw_crops(7, 11, 0, 6, sizes, 32)
    assert whole == D.draw_crops(7, 11, 0, 2, sizes, 32) + D.draw_crops(7, 11, 2, 4, sizes, 32)  # any batch split
    assert whole != D.draw_crops(7, 12, 0, 6, sizes, 32) and whole != D.draw_crops(8, 11, 0, 6, sizes, 32)
    for image, row, col, bits in D.draw_crops(1, 0, 0, 500, sizes, 32):
        assert 0 <= row <= sizes[image][0] - 32 and 0 <= col <= sizes[image][1] - 32 and 0 <= bits < 8


def test_draws_are_uniform():
    """Image choice over 3000 samples: chi-square with 2 degrees of freedom against uniform; the threshold 13.8 is
    exceeded with probability 1e-3 by a correct sampler. A sampler that favours image 0 by 10% is rejected."""
    picks = D.draw_crops(3, 0, 0, 3000, [(40, 40)] * 3, 8)
    counts = np.bincount([p[0] for p in picks], minlength=3)
    chi2 = lambda c: float(((c - c.sum() / 3) ** 2 / (c.sum() / 3)).sum())  # noqa: E731
    assert chi2(counts) < 13.8
    assert chi2(np.array([1100, 950, 950])) > 13.8  # the test has the power to see a 10% bias
    rows = np.array([p[1] for p in picks])
    assert rows.min() == 0 and rows.max() == 32  # both extreme crop positions are reachable


def test_draw_realisations():
    which = D.draw_realisations(4, 2, 0, 600, 3)
    assert all(a != b and 0 <= a < 3 and 0 <= b < 3 for a, b in which)
    assert set(which) == {(a, b) for a in range(3) for b in range(3) if a != b}
    assert D.draw_realisations(4, 2, 0, 10, 3) == which[:4] + D.draw_realisations(4, 2, 4, 6, 3)


def test_neighbor_subsampler(gen):
    images = torch.rand(3, 2, 10, 14, generator=gen)
    choice = D.neighbor_choice(images.shape, seed=9, step=4, index=5, device="cpu")
    assert choice.shape == (3, 35, 2)
    g1, g2 = D.neighbor_split(images, choice)
    assert g1.shape == g2.shape == (3, 2, 5, 7)
    for b in range(3):
        for cell in range(35):
            cy, cx = divmod(cell, 7)
            (p, q) = choice[b, cell].tolist()
            (py, px), (qy, qx) = divmod(p, 2), divmod(q, 2)
            assert abs(py - qy) + abs(px - qx) == 1  # neighbours: one step horizontally or vertically
            torch.testing.assert_close(g1[b, :, cy, cx], images[b, :, 2 * cy + py, 2 * cx + px], rtol=0, atol=0)
            torch.testing.assert_close(g2[b, :, cy, cx], images[b, :, 2 * cy + qy, 2 * cx + qx], rtol=0, atol=0)
    pairs = {tuple(c) for c in choice.reshape(-1, 2).tolist()}
    assert pairs == set(D.NEIGHBOR_PAIRS)
    tail = D.neighbor_choice((1, 2, 10, 14), seed=9, step=4, index=7, device="cpu")
    assert torch.equal(tail[0], choice[2])  # the third sample alone draws what it drew inside the batch
    assert not torch.equal(D.neighbor_choice(images.shape, seed=9, step=5, index=5, device="cpu"), choice)


def test_memmap_stays_on_disk(tmp_path):
    """A memmap (data larger than RAM) is not copied into the store; its crops equal the in-memory store's."""
    images = _images(np.random.default_rng(4))[:2]  # uint8 and uint16
    maps = []
    for i, image in enumerate(images):
        stored = np.lib.format.open_memmap(tmp_path / f"{i}.npy", mode="w+", dtype=image.dtype, shape=image.shape)
        stored[:] = image
        maps.append(np.load(tmp_path / f"{i}.npy", mmap_mode="r"))
    loaded = D.load_images(maps, "data")
    assert all(isinstance(image, np.memmap) for image in loaded)
    on_disk, in_memory = D.ImageStore(loaded, "cpu"), D.ImageStore(images, "cpu")
    assert isinstance(on_disk.images[0], np.memmap)
    picks = D.draw_crops(seed=2, step=1, index=0, count=16, sizes=on_disk.sizes, crop=17)
    assert torch.equal(on_disk.crops(picks, 17), in_memory.crops(picks, 17))
    assert torch.equal(on_disk.full(1), in_memory.full(1))
