"""n2n_fast.denoise_files (n2n_fast/inference/folder.py): files in, files out, from Python; outputs checked before
any work, a bad file skipped with the others going on, and the error at the end holding each failure."""
import numpy as np
import pytest
import torch

from checkpoints import save_model  # tests/checkpoints.py
import n2n_fast
from n2n_fast import FilesNotDenoised, denoise_files
from n2n_fast.io import read_image


@pytest.fixture
def model():
    torch.manual_seed(0)
    return n2n_fast.UNet(1, features=8)


def _write(folder, names, dtype=np.uint8):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(len(names))
    for name in names:
        n2n_fast.write_image(str(folder / name), rng.random((37, 45)), dtype=dtype)
    return [folder / name for name in names]


def test_a_list_of_files_into_a_folder_equals_denoising_each(tmp_path, model):
    inputs = _write(tmp_path / "a", ["x.png", "y.tif"], np.uint16) + _write(tmp_path / "b", ["z.png"])
    logged = []
    written = denoise_files(model, inputs, tmp_path / "out", device="cpu",
                            log=lambda text, **kwargs: logged.append(text))
    assert written == [(p, tmp_path / "out" / p.name) for p in inputs]
    assert sum("->" in line for line in logged) == 3
    for source, target in written:
        pixels, dtype = read_image(str(target))
        alone = np.clip(n2n_fast.denoise(model, read_image(str(source))[0]), 0, 1)
        assert dtype == read_image(str(source))[1] and np.abs(pixels - alone).max() <= 1 / 255 + 1e-6


def test_outputs_are_checked_before_any_work(tmp_path, model):
    (source,) = _write(tmp_path, ["a.png"])
    target = tmp_path / "out.png"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="target: .*out.png exists; overwrite=True replaces it"):
        denoise_files(model, source, target, device="cpu")
    assert target.read_bytes() == b"mine"
    with pytest.raises(ValueError, match="is the input file; denoise never overwrites its input"):
        denoise_files(model, source, source, device="cpu", overwrite=True)
    assert denoise_files(model, source, target, device="cpu", overwrite=True) == [(source, target)]
    assert read_image(str(target))[0].shape == (37, 45)


def test_a_bad_file_is_skipped_and_named_with_its_whole_error(tmp_path, model):
    inputs = _write(tmp_path / "in", ["a.png", "c.png"])
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG broken")
    checkpoint = save_model(model, tmp_path / "m.pt")  # a checkpoint path serves as the model too
    with pytest.raises(FilesNotDenoised, match="1 of 3 files could not be denoised: b.png") as caught:
        denoise_files(str(checkpoint), tmp_path / "in", tmp_path / "out", device="cpu")
    (path, exc), = caught.value.failures
    assert path.name == "b.png" and f"({exc})" in str(caught.value)
    assert [target.name for _, target in caught.value.written] == [p.name for p in inputs]
