"""`n2n-fast train --pairs even.mrc odd.mrc --dims 3` and `n2n-fast denoise` of a volume, end to end on tiny MRC."""
import numpy as np
import torch

import n2n_fast
from n2n_fast.cli import main
from n2n_fast.mrc import VoxelGrid, read_mrc, write_mrc


def test_train_pairs_of_half_tomograms_then_denoise(tmp_path, capsys):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    grid = VoxelGrid(voxel_size=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0))
    clean = rng.random((6, 24, 24)).astype(np.float32)
    even, odd = (str(write_mrc(tmp_path / f"{name}.mrc", clean + 0.1 * rng.standard_normal(clean.shape,
                                                                                          dtype=np.float32), grid))
                 for name in ("even", "odd"))
    out = tmp_path / "run"
    assert main(["train", "--pairs", even, odd, "--dims", "3", "--crop", "4,16,16", "--steps", "2", "--batch-size",
                 "1", "--features", "4", "--out", str(out), "--quiet", "--device", "cpu", "--precision",
                 "float32"]) == 0
    model = n2n_fast.load(out / "last.pt")
    assert model.dims == 3 and model.z_pools == 2
    assert main(["denoise", "--checkpoint", str(out / "last.pt"), even, str(tmp_path / "den.mrc"), "--device",
                 "cpu", "--quiet"]) == 0
    data, read_grid = read_mrc(tmp_path / "den.mrc")
    assert data.shape == clean.shape and data.dtype == np.float32 and tuple(read_grid.voxel_size) == (2.0,) * 3


def test_cli_errors_name_the_flags(tmp_path, capsys):
    rng = np.random.default_rng(1)
    volume, other = (str(write_mrc(tmp_path / f"{n}.mrc", rng.random((4, 16, 16)).astype(np.float32))) for n in "ab")
    code = main(["train", "--pairs", volume, other, "--dims", "3", "--crop", "8", "--steps", "1",
                 "--out", str(tmp_path / "r"), "--quiet", "--device", "cpu"])
    assert code == 2 and "pairs[0] (" in (err := capsys.readouterr().err) and "a.mrc): volume of 4x16x16" in err
    assert "smaller than the crop 8x8x8" in err
    code = main(["train", "--data", volume, "--targets", "neighbor", "--dims", "3", "--crop", "4", "--steps", "1",
                 "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2 and "--targets: Neighbor2Neighbor is 2-D only" in capsys.readouterr().err
