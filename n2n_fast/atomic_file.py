"""Files written whole or not at all: checkpoints, history, images. A crash (even SIGKILL) leaves either the old
file or the new one, never half of one: write to a temporary file in the same folder, flush it to disk, rename.

`check_writable` is the one path check of every writer (images, checkpoints, exports, Zarr output): it runs before
any work and names the user's path, never the temporary file the write goes through."""
import contextlib
import os
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path, name="path", folder=False):
    """`path` as a Path after checking that a file (folder=True: a folder) can be created there: a path, not an
    existing folder (for a file), in an existing folder that is a folder and accepts new files. Otherwise a
    TypeError / ValueError naming `name` and `path`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path, got {type(path).__name__} {path!r}")
    path = Path(path)
    if not folder and path.is_dir():
        raise ValueError(f"{name}: {str(path)!r} is a folder; give the file to write")
    parent = path.parent
    if not parent.is_dir():
        existing = next((p for p in parent.parents if p.exists()), None) if not parent.exists() else parent
        if existing is not None and not existing.is_dir():
            raise ValueError(f"{name}: {str(existing)!r} is a file, not a folder, so {str(path)!r} cannot be "
                             "written")
        raise ValueError(f"{name}: the folder {str(parent)!r} does not exist, so {str(path)!r} cannot be written")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise ValueError(f"{name}: the folder {str(parent)!r} does not accept new files ({exc.strerror or exc}), "
                         f"so {str(path)!r} cannot be written") from exc
    return path


@contextlib.contextmanager
def atomic_path(path, name="path"):
    """Yields a temporary path beside `path` (same suffix, for writers that pick a format from it); when the block
    succeeds the file is synced and renamed onto `path` with the permissions a plain open() would give (mkstemp's
    are 0600); when it fails the temporary file is removed. The path is checked first (check_writable, errors
    naming `name`), and an OSError of the write itself (a full disk) names `path`, not the temporary file."""
    path = check_writable(path, name)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise ValueError(f"{name}: cannot write {str(path)!r} ({exc.strerror or exc})") from exc
    os.close(handle)
    try:
        try:
            yield temporary
            with open(temporary, "rb+") as written:
                os.fsync(written.fileno())
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        except OSError as exc:
            if temporary not in (exc.filename, exc.filename2) and temporary not in str(exc):
                raise
            raise OSError(exc.errno, f"{name}: cannot write {str(path)!r} ({exc.strerror or exc})") from exc
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_bytes(path, data):
    """Write `data` to `path` atomically."""
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(data)
    return path
