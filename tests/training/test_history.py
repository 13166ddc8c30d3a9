"""n2n_fast/training/history.py: the training history on disk, JSON and CSV written whole, columns from every row."""
import csv
import json

from n2n_fast.training import history


def test_json_and_csv_hold_every_row_and_column(tmp_path):
    rows = [{"step": 1, "loss": 0.5, "lr": 1e-3}, {"step": 2, "loss": 0.25, "lr": 1e-3, "val_psnr": 30.5}]
    history.write(rows, tmp_path)
    assert json.loads((tmp_path / "history.json").read_text()) == rows
    with open(tmp_path / "history.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["step", "loss", "lr", "val_psnr"]  # a column first seen in a later row is kept
    assert table[1]["val_psnr"] == "30.5" and table[0]["val_psnr"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "history.json"]  # no temporary left


def test_plot_writes_a_png(tmp_path):
    history.plot([{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.3, "val_psnr": 28.0}], tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
