"""`n2n-fast demo`: Noise2Noise on scikit-image's bundled photographs, in a few minutes on a CPU.

Trains on five photographs with pairs of independently noised crops (never a clean target), denoises two held-out
photographs and writes demo.png (noisy | N2N | [N2C |] clean per row) and psnr.md / psnr.csv into the output folder.
With n2c=True the same budget, seed and data also train the clean-target baseline, which N2N should match.
"""
from pathlib import Path

import numpy as np
import torch

from .conventions import UINT_PEAKS, psnr

TRAIN = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
HELD_OUT = ("chelsea", "coffee")
UINT8_PEAK = UINT_PEAKS["uint8"]  # the photographs are 8-bit; sigma is in 8-bit levels
DEMO_SEED = 2018  # the held-out images' noise: fixed, so tables from different runs compare


def photographs(names):
    from .extras import require

    (data,) = require("demo", "n2n-fast demo (scikit-image's bundled photographs)", "skimage.data")
    return [np.asarray(getattr(data, name)()) for name in names]


def clipped_psnr(image, clean):
    """PSNR (dB) of an image clipped to [0, 1] against the clean one."""
    return psnr(np.mean((np.clip(image, 0, 1) - clean) ** 2))


def _denoise(model, noisy, device):
    """The model over the whole image, through tiled inference."""
    from .inference.denoise import denoise

    return np.asarray(denoise(model, noisy, device=device))


def _caption(width, text, height=22):
    """A white strip (height, width, 3) with `text` in black: labels each panel of demo.png so the figure reads
    without the README (Pillow's built-in font: nothing to download)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(strip).text((6, 4), text, fill="black", font=_label_font())
    return np.asarray(strip, dtype=np.float32) / UINT8_PEAK


def _label_font():
    """Pillow's built-in font, scaled where Pillow can (10.1 and newer)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=16)
    except TypeError:
        return ImageFont.load_default()


def demo(out_dir="n2n_demo", *, steps=400, sigma=25.0, n2c=False, features=32, crop=64, batch_size=8, lr=1e-3,
         seed=0, device=None, precision="auto", progress=True):
    """Train N2N (and N2C when asked) for `steps` steps on Gaussian noise of `sigma` (8-bit units); returns the
    PSNR table as {image: {"noisy": dB, "n2n": dB[, "n2c": dB]}}."""
    from .noise import Gaussian, add_noise
    from .training.train import train

    from .devices import check_device

    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= 255:
        raise ValueError(f"sigma: expected a number in (0, 255] (8-bit units), got {sigma!r}")
    check_device(device)
    out_dir = Path(out_dir)
    noise = Gaussian(sigma / UINT8_PEAK)
    clean = [image.astype(np.float32) / UINT8_PEAK for image in photographs(HELD_OUT)]
    noisy = [add_noise(torch.from_numpy(image).permute(2, 0, 1)[None], noise, seed=DEMO_SEED, index=i)[0]
             .permute(1, 2, 0).numpy() for i, image in enumerate(clean)]
    val = [image[:256, :256] for image in clean]  # validation curve on a corner of each held-out photograph
    common = dict(data=photographs(TRAIN), noise=noise, steps=steps, batch_size=batch_size, crop=crop, lr=lr,
                  seed=seed, val=val, device=device, precision=precision, features=features, progress=progress,
                  checkpoint_every=max(1, steps // 4), log_every=max(1, steps // 50))
    runs = {"n2n": train(targets="noisy", out_dir=out_dir / "n2n", **common)}
    if n2c:
        runs["n2c"] = train(targets="clean", out_dir=out_dir / "n2c", **common)
    table, rows = {}, []
    for name, y, x in zip(HELD_OUT, noisy, clean):
        outputs = {kind: _denoise(run.model, y, device) for kind, run in runs.items()}
        table[name] = {"noisy": clipped_psnr(y, x), **{kind: clipped_psnr(out, x) for kind, out in outputs.items()}}
        panels = [(np.clip(y, 0, 1), f"noisy {table[name]['noisy']:.2f} dB")]
        panels += [(np.clip(out, 0, 1), f"{kind.upper()} {table[name][kind]:.2f} dB") for kind, out in outputs.items()]
        panels.append((x, f"clean ({name})"))
        rows.append(np.concatenate([np.concatenate([_caption(panel.shape[1], label), panel])
                                    for panel, label in panels], 1))
    from .io import write_image

    width = max(row.shape[1] for row in rows)
    write_image(out_dir / "demo.png", np.concatenate([np.pad(row, ((0, 8), (0, width - row.shape[1]), (0, 0)),
                                                             constant_values=1.0) for row in rows]))
    kinds = ["noisy"] + list(runs)
    lines = [f"| image | {' | '.join(kinds)} |", "|---" * (len(kinds) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{table[name][k]:.2f}" for k in kinds) + " |" for name in table]
    lines.append("| mean | " + " | ".join(f"{np.mean([t[k] for t in table.values()]):.2f}" for k in kinds) + " |")
    text = "\n".join(lines)
    (out_dir / "psnr.md").write_text(f"PSNR (dB), Gaussian sigma {sigma:g}/255, {steps} steps\n\n{text}\n")
    (out_dir / "psnr.csv").write_text("image," + ",".join(kinds) + "\n" + "".join(
        f"{name}," + ",".join(f"{table[name][k]:.4f}" for k in kinds) + "\n" for name in table))
    print(text)
    print(f"wrote {out_dir / 'demo.png'}, {out_dir / 'psnr.md'}")
    return table
