"""Files written whole or not at all: checkpoints, history, images. A crash (even SIGKILL) leaves either the old
file or the new one, never half of one: write to a temporary file in the same folder, flush it to disk, rename."""
import contextlib
import os
import tempfile
from pathlib import Path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` (same suffix, for writers that pick a format from it); when the block
    succeeds the file is synced and renamed onto `path` with the permissions a plain open() would give (mkstemp's
    are 0600); when it fails the temporary file is removed."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_bytes(path, data):
    """Write `data` to `path` atomically."""
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(data)
    return path
