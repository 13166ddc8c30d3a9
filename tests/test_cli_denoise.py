"""`n2n-fast denoise` with the automatic plan: it prints the plan it chose, takes --memory-budget with units, and
still honours an explicit --tile / --overlap."""
import argparse

import numpy as np
import pytest
import torch

from checkpoints import save_model  # tests/checkpoints.py
import n2n_fast
from n2n_fast.cli import _bytes, main
from n2n_fast.io import read_image, write_image


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = n2n_fast.UNet(3, features=8)
    return save_model(model, tmp_path / "model.pt")


def test_prints_the_auto_plan_and_honours_the_budget(tmp_path, checkpoint, capsys):
    source = tmp_path / "in.png"
    write_image(str(source), np.random.default_rng(0).random((150, 170, 3)), dtype=np.uint8)
    assert main(["denoise", "--checkpoint", str(checkpoint), "--quiet", "--memory-budget", "12M", str(source),
                 str(tmp_path / "out.png")]) == 0
    printed = capsys.readouterr().out
    expected = n2n_fast.inference.denoise.denoise_plan(n2n_fast.load(str(checkpoint)), read_image(str(source))[0],
                                            memory_budget=12 << 20, device="cpu")
    assert expected.plan.count > 1 and expected.describe() in printed and "(auto)" in printed
    assert read_image(str(tmp_path / "out.png"))[0].shape == (150, 170, 3)
    assert main(["denoise", "--checkpoint", str(checkpoint), "--quiet", "--tile", "64", "--overlap", "0",
                 str(source), str(tmp_path / "out2.png")]) == 0
    assert "tiles of 64 x 64 (given), overlap 0," in capsys.readouterr().out


def test_too_small_budget_is_reported(tmp_path, checkpoint, capsys):
    source = tmp_path / "in.png"
    write_image(str(source), np.random.default_rng(0).random((40, 40, 3)), dtype=np.uint8)
    assert main(["denoise", "--checkpoint", str(checkpoint), "--memory-budget", "1K", str(source),
                 str(tmp_path / "out.png")]) == 2
    assert "--memory-budget: 1024 bytes" in capsys.readouterr().err and not (tmp_path / "out.png").exists()


def test_budget_units():
    assert [_bytes(text) for text in ("4096", "512M", "2G", "1.5GiB", "64k")] == [4096, 512 << 20, 2 << 30,
                                                                                   3 << 29, 64 << 10]
    with pytest.raises(argparse.ArgumentTypeError, match="512M"):
        _bytes("lots")


def test_folder_of_small_images_runs_them_together(tmp_path, checkpoint, capsys):
    """Same-shape images that each fit one tile share model calls; each output equals denoising it alone."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, shape in (("a.png", (40, 50, 3)), ("b.png", (40, 50, 3)), ("c.png", (40, 50, 3)),
                        ("d.png", (33, 20, 3)), ("e.png", (40, 50, 3))):
        write_image(str(folder / name), rng.random(shape), dtype=np.uint8)
    assert main(["denoise", "--checkpoint", str(checkpoint), "--quiet", "--batch-size", "3", str(folder),
                 str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "c.png (3 images): plan: 1 x 1 tiles of 64 x 64" in printed and "3 tile(s) per model call" in printed and printed.count("->") == 5
    model = n2n_fast.load(str(checkpoint))
    for name in ("a.png", "c.png", "d.png", "e.png"):
        alone = n2n_fast.denoise(model, read_image(str(folder / name))[0])
        got = read_image(str(tmp_path / "out" / name))[0]
        assert got.shape == alone.shape and np.abs(got - np.clip(alone, 0, 1)).max() <= 1 / 255 + 1e-6


def test_folder_denoise_names_a_bad_file_goes_on_and_exits_nonzero(tmp_path, capsys):
    import numpy as np

    import n2n_fast
    from n2n_fast.cli import main

    save_model(n2n_fast.UNet(1, features=8), tmp_path / "c.pt")
    folder = tmp_path / "in"
    folder.mkdir()
    n2n_fast.write_image(str(folder / "a.png"), np.random.default_rng(0).random((40, 44)))
    (folder / "b.png").write_bytes(b"\x89PNG broken")
    n2n_fast.write_image(str(folder / "c.png"), np.random.default_rng(1).random((40, 44)))
    code = main(["denoise", "--checkpoint", str(tmp_path / "c.pt"), str(folder), str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "1 of 3 files could not be denoised: b.png" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]  # the others went on


def test_output_format_is_checked_before_any_work(tmp_path, capsys):
    import numpy as np

    import n2n_fast
    from n2n_fast.cli import main

    save_model(n2n_fast.UNet(1, features=8), tmp_path / "c.pt")
    n2n_fast.write_image(str(tmp_path / "a.png"), np.zeros((40, 44)))
    assert main(["denoise", "--checkpoint", str(tmp_path / "c.pt"), str(tmp_path / "a.png"),
                 str(tmp_path / "a.xyz")]) == 2
    assert "output: unsupported file type '.xyz'" in capsys.readouterr().err
