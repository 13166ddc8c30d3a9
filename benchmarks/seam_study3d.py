"""Seam error of tiled 3-D inference: how much overlap per axis a trained 3-D U-Net needs for tiled == whole-volume
within 50 dB. The 2-D study is benchmarks/seam_study.py; docs/tiling.md §8 records a run.

    python benchmarks/seam_study3d.py [--steps 150 400] [--features 8] [--large] [--out seam3d.json]

Trains small 3-D U-Nets with n2n_fast.train(dims=3) (N2N, Gaussian sigma 0.2, on an offline phantom: scikit-image's
binary_blobs(n_dim=3) smoothed by one voxel, benchmarks/volume_study.py's `blobs`; crops 8 x 32 x 32 so z_pools = 3,
z alignment 8; batch 4, lr 1e-3, precision "auto", CPU, one thread), then denoises a held-out phantom
(32 x 160 x 160, another seed, noisy at sigma 0.2) whole and tiled (float32), for every blend, tile shape and
overlap (z, y-x) below, and reports PSNR(tiled, whole) in dB with the tile count; --large measures y-x tiles of
160 (overlaps 32 and 64) on a 32 x 320 x 320 phantom. The overlap rule of the 3-D tile="auto" plan
(n2n_fast/inference/volume_plan.py AUTO_OVERLAP_3D) comes from these tables: in y-x the smallest overlap at or
above 50 dB, along z (where no affordable overlap reached it) half the tile.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seam_study import psnr  # noqa: E402 (peak 1, float64)
from volume_study import blobs, noisy_copy  # noqa: E402 (the offline phantom and its fixed-seed noise)

VOLUME = (32, 160, 160)
CROP = (8, 32, 32)
SIGMA = 0.2
# (tile (d, h, w), z overlaps, y-x overlaps): y-x seams alone (one z tile), z and y-x together, z seams alone.
# Overlaps are effective ones (tile - stride): half a tile is asked as just below it, the stride rounding down.
CONFIGS = (((32, 64, 64), (0,), (0, 32)), ((16, 64, 64), (0, 8), (0, 32)), ((16, 96, 96), (0, 8), (0, 32)),
           ((16, 160, 160), (0, 8), (0,)))
BLENDS = ("cosine", "gaussian", "stitch")
# --large: a 32 x 320 x 320 held-out phantom with the y-x tiles of 160 that admit an overlap of 64 (cosine only)
LARGE_VOLUME = (32, 320, 320)
LARGE_CONFIGS = (((32, 160, 160), (0,), (32, 64)), ((16, 160, 160), (8,), (32, 64)))


def train_unet3d(features, steps, seed=0):
    """The 3-D U-Net trained N2N on the training phantom, as the study measures it."""
    import n2n_fast

    with tempfile.TemporaryDirectory() as out_dir:
        result = n2n_fast.train(data=blobs(VOLUME, seed=1), axes="ZYX", noise=n2n_fast.Gaussian(SIGMA),
                                steps=steps, batch_size=4, crop=CROP, lr=1e-3, seed=seed, out_dir=out_dir,
                                features=features, dims=3, precision="auto", progress=False, plot=False,
                                log_every=steps, checkpoint_every=steps)
    return result.model.eval()


def measure(model, volume, configs=CONFIGS, blends=BLENDS, log=print):
    """[{blend, tile, overlap (effective z, y, x), tiles, psnr}] for every valid configuration."""
    from n2n_fast.inference.denoise import denoise, denoise_plan

    with torch.inference_mode():
        whole = model(torch.from_numpy(volume)[None, None])[0, 0].numpy()
    rows = []
    for blend in blends:
        for tile, z_overlaps, yx_overlaps in configs:
            for oz in z_overlaps:
                for oyx in yx_overlaps:
                    # just below half the tile when the overlap is half of it: the stride rounds down to it
                    overlap = tuple(min(o, side // 2 - 1) for o, side in zip((oz, oyx, oyx), tile))
                    asked = dict(tile=tile, overlap=overlap, blend=blend)
                    try:
                        plan = denoise_plan(model, volume, axes="ZYX", **asked).plan
                    except ValueError as exc:
                        log(f"  {blend} {tile} overlap {asked['overlap']}: skipped ({exc})")
                        continue
                    start = time.perf_counter()
                    tiled = denoise(model, volume, axes="ZYX", **asked)
                    rows.append(dict(blend=blend, tile=list(tile), overlap=list(plan.overlap), tiles=plan.count,
                                     psnr=round(psnr(tiled, whole), 2)))
                    log(f"  {blend:8s} tile {tile} overlap {plan.overlap} ({plan.count} tiles): "
                        f"{rows[-1]['psnr']:.2f} dB ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def table(rows):
    """Markdown: one line per (blend, steps), one column per (tile, effective overlap z/y-x), PSNR dB (tiles)."""
    columns = sorted({(tuple(r["tile"]), r["overlap"][0], r["overlap"][1]) for r in rows},
                     key=lambda c: (-c[0][0], c[0][1], c[1], c[2]))
    head = [f"{'x'.join(map(str, t))} / {oz},{oyx}" for t, oz, oyx in columns]
    lines = ["| blend | features | steps | " + " | ".join(head) + " |", "| --- " * (3 + len(head)) + "|"]
    for key in sorted({(r["blend"], r["features"], r["steps"]) for r in rows}, key=lambda k: (BLENDS.index(k[0]),
                                                                                              k[1], k[2])):
        cells = {(tuple(r["tile"]), r["overlap"][0], r["overlap"][1]): f"{r['psnr']:.1f} ({r['tiles']})"
                 for r in rows if (r["blend"], r["features"], r["steps"]) == key}
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 400])
    parser.add_argument("--features", type=int, nargs="+", default=[8])
    parser.add_argument("--blends", nargs="+", default=list(BLENDS))
    parser.add_argument("--large", action="store_true", help="the 32 x 320 x 320 phantom with y-x tiles of 160 "
                        "(overlaps 32 and 64, cosine) instead of 32 x 160 x 160 with tiles of 64-160")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    configs = LARGE_CONFIGS if args.large else CONFIGS
    blends = ["cosine"] if args.large else args.blends
    volume = noisy_copy(blobs(LARGE_VOLUME if args.large else VOLUME, seed=2),
                        __import__("n2n_fast").Gaussian(SIGMA))
    results = []
    for features in args.features:
        for steps in args.steps:
            start = time.perf_counter()
            model = train_unet3d(features, steps)
            print(f"features {features}, {steps} steps: trained in {time.perf_counter() - start:.0f} s "
                  f"(z_pools {model.z_pools})", flush=True)
            for row in measure(model, volume, configs, blends):
                results.append(dict(features=features, steps=steps, **row))
            if args.out:
                with open(args.out, "w") as handle:
                    json.dump(results, handle, indent=1)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
