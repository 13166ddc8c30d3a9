"""What is installed and which implementation serves each op: `n2n-fast info`, `n2n_fast.info()`."""
import platform
import shutil

import torch

from . import _backend, _ext
from .conventions import __version__


def info(file=None):
    """Print versions, the GPU, the extension's build and the op x backend table; returns the text."""
    lines = [f"n2n_fast {__version__}", f"python {platform.python_version()} ({platform.machine()})",
             f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})"]
    reason = _backend.triton_reason()
    if reason is None:
        import triton

        interp = " (TRITON_INTERPRET=1: kernels run on the CPU)" if _backend.triton_interpreting() else ""
        lines.append(f"triton {triton.__version__}{interp}")
    else:
        lines.append(f"triton: unavailable - {reason}")
    lines.append(f"nvcc: {shutil.which('nvcc') or 'not found'}")
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            lines.append(f"GPU {index}: {props.name} (sm_{props.major}{props.minor}, "
                         f"{props.total_memory / 2**30:.0f} GiB)")
    else:
        lines.append("GPU: none visible")
    if _ext.ops() is None:
        lines.append(f"extension: unavailable - {_ext.reason()}")
    else:
        lines.append(f"extension: {_ext.library_path()} (built with CUDA: {'yes' if _ext.built_with_cuda() else 'no'})")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        lines.append("")
        lines.append(f"ops on {device} tensors (first serving backend is used):")
        for op, rows in _backend.table(device).items():
            chosen = next((name for name, why, _ in rows if why is None), None)
            lines.append(f"  {op:<12} -> {chosen or 'NONE'}")
            for name, why, accepts in rows:
                lines.append(f"      {name:<10} {'ok' if why is None else why}  [accepts: {accepts}]")
    text = "\n".join(lines)
    print(text, file=file)
    return text
