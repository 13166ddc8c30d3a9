"""Seam error of tiled inference: how much overlap a trained U-Net needs for tiled == whole-image within 50 dB.

    python benchmarks/seam_study.py [--steps 100 400] [--features 48 16] [--out seam_study.json]

Trains U-Nets with n2n_fast.train (N2N, Gaussian sigma 25/255, on scikit-image's coffee, chelsea and rocket;
crops of 64, batch 4, lr 1e-3, float32, CPU) for each (features, steps) asked, then denoises the held-out
astronaut (512 x 512, noisy at sigma 25/255) whole and tiled, for every blend, tile side and overlap, and reports
PSNR(tiled, whole) in dB. The overlap rule of tile="auto" (n2n_fast/inference/auto_plan.py AUTO_OVERLAP) is the smallest
overlap that keeps every measured configuration at or above 50 dB with margin; docs/tiling.md records the numbers.
Small tiles put more seams in the image, so they are the hard case: tile 128 cuts the astronaut into 5 x 5 tiles.
Undertrained networks are measured too because they react more to tile borders (the tests train a cheap one).
"""
import argparse
import json
import tempfile
import time

import numpy as np
import torch

import n2n_fast
from n2n_fast.noise import Gaussian
from n2n_fast.inference.denoise import denoise

TILES = (128, 192, 256)
OVERLAPS = (0, 32, 64, 96)
BLENDS = ("cosine", "gaussian", "stitch")
# --large: a 1024 x 1024 mosaic of the astronaut and its mirror images (no seam of its own) for the larger tiles
# tile="auto" picks on the CPU; fewer seams per pixel than at 128-256
LARGE_TILES, LARGE_OVERLAPS, LARGE_BLENDS = (384, 512), (0, 32, 64), ("cosine", "gaussian")


def _photos():
    import skimage.data

    return [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]


def _astronaut_noisy():
    import skimage.data

    clean = skimage.data.astronaut().astype(np.float32) / 255
    return (clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)).astype(np.float32)


def _mosaic(image):
    return np.ascontiguousarray(np.block([[[image], [image[:, ::-1]]], [[image[::-1]], [image[::-1, ::-1]]]]))


def train_unet(features, steps, seed=0):
    """The U-Net trained N2N on Gaussian noise, as the study measures it (and tests/test_tiling_auto.py trains it)."""
    with tempfile.TemporaryDirectory() as out_dir:
        result = n2n_fast.train(data=_photos(), noise=Gaussian(25 / 255), steps=steps, batch_size=4, crop=64,
                                lr=1e-3, seed=seed, out_dir=out_dir, device="cpu", precision="float32",
                                features=features, progress=False, plot=False, checkpoint_every=steps)
    return result.model.eval()


def psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def measure(model, image, tiles=TILES, overlaps=OVERLAPS, blends=BLENDS):
    """[{blend, tile, overlap, psnr}] for every valid configuration."""
    with torch.inference_mode():
        whole = model(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    rows = []
    for blend in blends:
        for tile in tiles:
            for overlap in overlaps:
                if 2 * overlap >= tile:
                    continue
                tiled = denoise(model, image, tile=tile, overlap=overlap, blend=blend)
                rows.append(dict(size=image.shape[0], blend=blend, tile=tile, overlap=overlap, psnr=round(psnr(tiled, whole), 2)))
                print(f"  {blend:8s} tile {tile:3d} overlap {overlap:2d}: {rows[-1]['psnr']:.2f} dB", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--features", type=int, nargs="+", default=[48, 16])
    parser.add_argument("--large", action="store_true", help="measure the 1024^2 mosaic with tiles 384 and 512 "
                        "instead of the 512^2 astronaut with tiles 128-256")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    image = _astronaut_noisy()
    settings = (LARGE_TILES, LARGE_OVERLAPS, LARGE_BLENDS) if args.large else (TILES, OVERLAPS, BLENDS)
    if args.large:
        image = _mosaic(image)
    results = []
    for features in args.features:
        for steps in args.steps:
            start = time.perf_counter()
            model = train_unet(features, steps)
            print(f"features {features}, {steps} steps: trained in {time.perf_counter() - start:.0f} s", flush=True)
            for row in measure(model, image, *settings):
                results.append(dict(features=features, steps=steps, **row))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
