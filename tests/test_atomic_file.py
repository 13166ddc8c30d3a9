"""n2n_fast/atomic_file.py: whole files or none, with the permissions the umask gives."""
import os

import pytest

from n2n_fast.atomic_file import atomic_path, write_bytes


def test_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = write_bytes(tmp_path / "a.json", b"old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_permissions_follow_the_umask_and_suffix_is_kept(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "b.png") as temporary:
            assert temporary.endswith(".png")  # writers that choose a format by extension
            with open(temporary, "wb") as handle:
                handle.write(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "b.png").stat().st_mode & 0o777 == 0o644
