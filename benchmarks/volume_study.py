"""Noise2Noise on volumes at small scale: n2n_fast.train(dims=3) on offline 3-D phantoms, PSNR on held-out ones.

    python benchmarks/volume_study.py [--full] [--steps N] [--features F] [--size D H W] [--out DIR]

Phantoms (made here, nothing downloaded): "blobs", scikit-image's binary_blobs(n_dim=3) smoothed by a Gaussian of
one voxel; "membranes", the thin shells around the zero level set of a smoothed random field (sheets that curve
through z, as cell membranes in a tomogram). Intensities in [0.1, 0.9]. Noise: Gaussian (sigma fixed) and Poisson
(peak fixed), training with fresh synthetic noise every step; the held-out volume (another phantom seed) is noised
once at a fixed seed. PSNR in dB with peak 1 over the whole held-out volume.

Studies, for every phantom x noise:
  (a) 3-D vs 2-D at equal wall time: UNet(dims=3) on 3-D crops against the 2-D U-Net trained on the volume's
      slices (crops with as many voxels per step: batch x depth 2-D crops) for as long (its steps are set from a
      timed probe so the two wall times match; both are reported), the 2-D one denoising slice by slice.
      Goal: 3-D >= 0.75 dB better.
  (b) N2N vs N2C in 3-D, same steps (N2N is (a)'s 3-D run). Goal: within 0.3 dB.
  (c) few-slice stacks: volumes of 4 and 8 slices (crop depth = the stack), trained with dims=3 (z pooled at
      z_pool_levels(depth) levels). Goal: PSNR above the noisy input's.

Small defaults (what fits a few minutes per phantom on a loaded 2-core CPU): volumes 32 x 64 x 64 (stacks
4/8 x 96 x 96), crops 16 x 32 x 32, batch 2, features 8, 150 steps, lr 1e-3, precision "auto" (bf16 where native),
one torch thread. --full: volumes 64 x 128 x 128, crops 32 x 64 x 64, batch 4, features 48, 2000 steps.
Prints a markdown table and writes it, with the settings, to DIR/volume_study.{md,json}; docs/volumes.md §5 records
a run. The exit status is 0 when every goal holds, 1 otherwise.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # quality.py beside this file
from quality import machine  # noqa: E402 (one description of the machine for every study)

SMALL = dict(size=(32, 64, 64), stack_size=(96, 96), crop=(16, 32, 32), stack_crop=32, batch=2, features=8,
             steps=150, lr=1e-3, precision="auto")
FULL = dict(size=(64, 128, 128), stack_size=(192, 192), crop=(32, 64, 64), stack_crop=64, batch=4, features=48,
            steps=2000, lr=1e-3, precision="auto")
SIGMA, PEAK = 0.2, 10.0  # the test levels, held fixed in training too (the paper trains blind over a range)
STACK_DEPTHS = (4, 8)
GOALS = {"3d_vs_2d": 0.75, "n2n_vs_n2c": 0.3}


def blobs(shape, seed):
    """Smoothed 3-D binary blobs (skimage.data.binary_blobs, n_dim=3) cut to `shape`, in [0.1, 0.9]."""
    from scipy.ndimage import gaussian_filter
    from skimage.data import binary_blobs

    cube = binary_blobs(length=max(shape), blob_size_fraction=0.12, n_dim=3, volume_fraction=0.35, rng=seed)
    volume = gaussian_filter(cube[:shape[0], :shape[1], :shape[2]].astype(np.float32), 1.0)
    return _range(volume)


def membranes(shape, seed):
    """Thin curved sheets: |f| small around the zero level set of a smoothed Gaussian random field f."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), 4.0)
    sheets = np.exp(-(field / (0.12 * field.std())) ** 2)
    return _range(gaussian_filter(sheets, 0.7))


def _range(volume):
    volume = (volume - volume.min()) / max(float(volume.max() - volume.min()), 1e-12)
    return (0.1 + 0.8 * volume).astype(np.float32)


PHANTOMS = {"blobs": blobs, "membranes": membranes}


def noise_model(name):
    import n2n_fast

    return n2n_fast.Gaussian(SIGMA) if name == "gaussian" else n2n_fast.Poisson(PEAK)


def noisy_copy(clean, noise, seed=12345):
    from n2n_fast.noise import add_noise

    return add_noise(torch.from_numpy(clean)[None, None], noise, seed=seed)[0, 0].numpy()


def psnr(a, clean):
    from n2n_fast.conventions import psnr as from_mse

    return from_mse(np.mean((np.asarray(a, np.float64) - clean) ** 2))


def _train(volume, noise, settings, *, dims, crop, steps, batch, targets="noisy"):
    """(network, wall seconds of train()) for one run on `volume` (ZYX)."""
    import n2n_fast

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = n2n_fast.train(data=volume, axes="ZYX", noise=noise, targets=targets, steps=steps,
                                batch_size=batch, crop=crop, lr=settings["lr"], seed=0, out_dir=out,
                                features=settings["features"], precision=settings["precision"], dims=dims,
                                progress=False, plot=False, log_every=steps, checkpoint_every=steps)
        return result.model, time.perf_counter() - start


def _denoise(net, noisy, dims):
    from n2n_fast.inference.denoise import denoise

    if dims == 3:
        return denoise(net, noisy, axes="ZYX")
    return np.stack([denoise(net, section) for section in noisy])


def study(phantom, noise_name, settings, log=print):
    """The three studies on one phantom and noise: a dict of PSNRs (dB), steps and wall times."""
    make, noise = PHANTOMS[phantom], noise_model(noise_name)
    train_vol, test_vol = make(settings["size"], 1), make(settings["size"], 2)
    test_noisy = noisy_copy(test_vol, noise)
    out = {"phantom": phantom, "noise": noise_name, "noisy": psnr(test_noisy, test_vol)}
    crop, batch, steps = settings["crop"], settings["batch"], settings["steps"]
    # (a) 3-D N2N, then 2-D on the slices for the same wall time
    net3, seconds3 = _train(train_vol, noise, settings, dims=3, crop=crop, steps=steps, batch=batch)
    out.update(n2n_3d=psnr(_denoise(net3, test_noisy, 3), test_vol), steps_3d=steps, seconds_3d=seconds3)
    batch2 = batch * crop[0]
    probe = max(5, steps // 10)
    _, probe_seconds = _train(train_vol, noise, settings, dims=2, crop=crop[1], steps=probe, batch=batch2)
    steps2 = max(1, round(seconds3 / (probe_seconds / probe)))
    net2, seconds2 = _train(train_vol, noise, settings, dims=2, crop=crop[1], steps=steps2, batch=batch2)
    out.update(n2n_2d=psnr(_denoise(net2, test_noisy, 2), test_vol), steps_2d=steps2, batch_2d=batch2,
               seconds_2d=seconds2)
    log(f"  {phantom} {noise_name}: noisy {out['noisy']:.2f}, 3-D {out['n2n_3d']:.2f} ({seconds3:.0f} s), "
        f"2-D {out['n2n_2d']:.2f} ({steps2} steps, {seconds2:.0f} s)")
    # (b) N2C in 3-D, same steps
    net_c, seconds_c = _train(train_vol, noise, settings, dims=3, crop=crop, steps=steps, batch=batch,
                              targets="clean")
    out.update(n2c_3d=psnr(_denoise(net_c, test_noisy, 3), test_vol), seconds_n2c=seconds_c)
    log(f"  {phantom} {noise_name}: N2C 3-D {out['n2c_3d']:.2f}")
    # (c) few-slice stacks
    height, width = settings["stack_size"]
    for depth in STACK_DEPTHS:
        stack, stack_test = make((depth, height, width), 3), make((depth, height, width), 4)
        stack_noisy = noisy_copy(stack_test, noise)
        net_s, _ = _train(stack, noise, settings, dims=3, crop=(depth, settings["stack_crop"], settings["stack_crop"]),
                          steps=steps, batch=batch)
        out[f"stack{depth}"] = psnr(_denoise(net_s, stack_noisy, 3), stack_test)
        out[f"stack{depth}_noisy"] = psnr(stack_noisy, stack_test)
        log(f"  {phantom} {noise_name}: {depth}-slice stack noisy {out[f'stack{depth}_noisy']:.2f} -> "
            f"{out[f'stack{depth}']:.2f}")
    return out


def verdicts(row):
    """The goals of one row: (3-D - 2-D >= 0.75, |N2N - N2C| <= 0.3, every stack above its noisy input)."""
    return (row["n2n_3d"] - row["n2n_2d"] >= GOALS["3d_vs_2d"], abs(row["n2n_3d"] - row["n2c_3d"]) <= GOALS["n2n_vs_n2c"],
            all(row[f"stack{d}"] > row[f"stack{d}_noisy"] for d in STACK_DEPTHS))


def table(rows):
    mark = {True: "yes", False: "no"}
    lines = ["| phantom | noise | noisy | 2-D on slices (steps) | 3-D N2N (steps) | 3-D - 2-D | 3-D N2C | N2N - N2C "
             "| 4-slice noisy -> N2N | 8-slice noisy -> N2N | goals a / b / c |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        a, b, c = verdicts(r)
        noise = f"Gaussian {SIGMA}" if r["noise"] == "gaussian" else f"Poisson {PEAK:g}"
        lines.append(f"| {r['phantom']} | {noise} | {r['noisy']:.2f} | {r['n2n_2d']:.2f} ({r['steps_2d']}, "
                     f"{r['seconds_2d']:.0f} s) | {r['n2n_3d']:.2f} ({r['steps_3d']}, {r['seconds_3d']:.0f} s) | "
                     f"{r['n2n_3d'] - r['n2n_2d']:+.2f} | {r['n2c_3d']:.2f} | {r['n2n_3d'] - r['n2c_3d']:+.2f} | "
                     f"{r['stack4_noisy']:.2f} -> {r['stack4']:.2f} | {r['stack8_noisy']:.2f} -> {r['stack8']:.2f} | "
                     f"{mark[a]} / {mark[b]} / {mark[c]} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the full settings (module docstring)")
    parser.add_argument("--steps", type=int, help="training steps of every 3-D run")
    parser.add_argument("--features", type=int)
    parser.add_argument("--size", type=int, nargs=3, metavar=("D", "H", "W"), help="phantom volume size")
    parser.add_argument("--phantoms", nargs="+", default=list(PHANTOMS), choices=list(PHANTOMS))
    parser.add_argument("--noises", nargs="+", default=["gaussian", "poisson"], choices=["gaussian", "poisson"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default="volume_study", help="folder for volume_study.md / .json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = dict(FULL if args.full else SMALL)
    for key in ("steps", "features"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.size:
        settings["size"] = tuple(args.size)
    started = time.perf_counter()
    rows = []
    for phantom in args.phantoms:
        for noise in args.noises:
            rows.append(study(phantom, noise, settings))
    text = table(rows)
    header = (f"{time.strftime('%Y-%m-%d', time.gmtime())}, `python benchmarks/volume_study.py "
              f"{' '.join(sys.argv[1:] if argv is None else argv)}`, {machine()}, precision {settings['precision']}, "
              f"settings {settings}, {time.perf_counter() - started:.0f} s in all")
    print(header)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "volume_study.md").write_text(header + "\n\n" + text + "\n")
    (out / "volume_study.json").write_text(json.dumps({"settings": {k: list(v) if isinstance(v, tuple) else v
                                                                    for k, v in settings.items()},
                                                       "machine": machine(), "rows": rows}, indent=1))
    return 0 if all(all(verdicts(r)) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
