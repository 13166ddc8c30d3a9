"""Training history on disk: JSON (everything), CSV (one row per log step) and a PNG of the curves."""
import csv
import io
import json
from pathlib import Path

from ..atomic_file import write_bytes


def write(history, out_dir):
    """history.json and history.csv in `out_dir` (each written whole or not at all)."""
    out_dir = Path(out_dir)
    write_bytes(out_dir / "history.json", json.dumps(history, indent=1).encode())
    columns = []
    for row in history:
        columns += [key for key in row if key not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_bytes(out_dir / "history.csv", text.getvalue().encode())


def plot(history, path):
    """Training loss (log scale) and validation PSNR against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed (servers, CI)
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([row["step"] for row in history], [row["loss"] for row in history], lw=1)
    left.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    rows = [row for row in history if row.get("val_psnr") is not None]
    right.plot([row["step"] for row in rows], [row["val_psnr"] for row in rows], "o-", ms=3)
    right.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR")
    figure.tight_layout()
    data = io.BytesIO()
    figure.savefig(data, format="png", dpi=100)
    plt.close(figure)
    write_bytes(path, data.getvalue())
