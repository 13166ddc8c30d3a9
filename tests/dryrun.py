"""The GPU dry run (docs/design.md, "Proofs without a GPU", way 4): Triton's real path on CPU tensors.

`install()` compiles tests/dryrun_libcuda.c into a stand-in libcuda.so.1, loads it process-wide (RTLD_GLOBAL,
before Triton builds its C utilities, so they bind to it), makes a `DryRunDriver` Triton's active driver and asks
the dispatch to let Triton serve CPU tensors (`n2n_fast._backend.serve_cpu_with_triton`, the documented hook).
From then on a Triton kernel call runs the real binder, specialisation (dtypes, 16-byte alignment, ints equal to
1), cache keys, code generator, ptxas and C launcher; the stub's cuLaunchKernelEx only counts. What the launcher
was handed is recorded in `LAUNCHES` (kernel, architecture, grid, scalar arguments).

The process is changed for good (the stub shadows any real libcuda, the driver is global): run these tests in
their own pytest process (`pytest -m dryrun`) and never where a real GPU is visible. Device index 0 is sm_90 and
index 1 sm_80 (`target(80)`): Triton caches the target per device index.
Register and spill counts reported through the stub are fake; tests/aot.py reads the real ones from ptxas -v.
"""
import contextlib
import ctypes
import hashlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
STUB_SOURCE = os.path.join(HERE, "dryrun_libcuda.c")
ARCH_OF_DEVICE = {0: 90, 1: 80}
_state = {"stub": None, "device": 0, "quiet": False}


@dataclass(frozen=True)
class Launch:
    kernel: str  # the compiled function's name
    arch: int  # 90 or 80
    grid: tuple  # (x, y, z)
    scalars: tuple  # every non-tensor argument, constexprs included, in order
    dtypes: tuple  # dtype of every tensor argument, in order


LAUNCHES = []  # every launch since install() (clear it between measurements)


def _build_stub():
    """Path of the stand-in libcuda.so.1, compiled once per source version into the temp folder."""
    with open(STUB_SOURCE, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"n2n_fast_dryrun_{digest}")
    path = os.path.join(folder, "libcuda.so.1")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        partial = f"{path}.{os.getpid()}"
        subprocess.run([os.environ.get("CC", "cc"), "-O1", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1",
                        STUB_SOURCE, "-o", partial], check=True)
        os.replace(partial, path)  # atomic: a concurrent worker sees the whole file or none
    return path


def _driver_class():
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.driver import CudaDriver, CudaLauncher, CudaUtils

    class RecordingLauncher(CudaLauncher):
        """Triton's launcher, which also records what it was handed before its C code launches (into the stub)."""

        def __init__(self, src, metadata):
            super().__init__(src, metadata)
            self.kernel_name, self.arch = metadata.name, metadata.target.arch

        def __call__(self, grid_x, grid_y, grid_z, stream, function, kernel_metadata, launch_metadata, enter, exit_,
                     *args):
            if _state["quiet"]:  # host-time measurement: only Triton's own launcher, as on a GPU
                return super().__call__(grid_x, grid_y, grid_z, stream, function, kernel_metadata, launch_metadata,
                                        enter, exit_, *args)
            tensors = [a for a in args if hasattr(a, "data_ptr")]
            scalars = tuple(a for a in args if not hasattr(a, "data_ptr"))
            LAUNCHES.append(Launch(self.kernel_name, self.arch, (grid_x, grid_y, grid_z), scalars,
                                   tuple(str(t.dtype) for t in tensors)))
            # no kernel runs: zero the small buffers it was handed, so what host code reads next (a loss, a count,
            # Philox words for the data path) is finite and in range instead of uninitialised memory; large ones
            # (images, gradients) are left alone so host-time measurements stay host time
            for tensor in tensors:
                if tensor.numel() <= 65536:
                    tensor.detach().zero_()
            super().__call__(grid_x, grid_y, grid_z, stream, function, kernel_metadata, launch_metadata, enter,
                             exit_, *args)

    class DryRunDriver(CudaDriver):
        """CudaDriver whose device, stream and capability come from the dry run, not from torch.cuda (which the
        stub breaks): device `_state["device"]`, the null stream, sm_90 or sm_80."""

        def __init__(self):  # CudaDriver.__init__ would bind torch.cuda's functions
            self.utils = CudaUtils()
            self.launcher_cls = RecordingLauncher

        def get_current_device(self):
            return _state["device"]

        def set_current_device(self, device):
            _state["device"] = device

        def get_current_stream(self, device=None):
            return 0

        def get_device_capability(self, device=None):
            arch = ARCH_OF_DEVICE[_state["device"] if device is None else device]
            return arch // 10, arch % 10

        def get_current_target(self):
            return GPUTarget("cuda", ARCH_OF_DEVICE[_state["device"]], 32)

        def get_active_torch_device(self):
            import torch

            return torch.device("cpu")

    return DryRunDriver


def install():
    """Make this process a dry-run process (idempotent). Refuses where a real GPU is visible."""
    if _state["stub"] is not None:
        return
    import torch

    if torch.cuda.is_available():
        raise RuntimeError("the dry run replaces libcuda process-wide; it must not run where a GPU is visible")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("the dry run needs Triton's compiler: run it without TRITON_INTERPRET")
    path = _build_stub()
    stub = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    stub.stub_launch_count.restype = ctypes.c_long
    stub.stub_module_count.restype = ctypes.c_long
    import triton
    from triton import knobs

    knobs.nvidia.libcuda_path = os.path.dirname(path)  # Triton links its C utilities against the stub
    triton.runtime.driver.set_active(_driver_class()())
    from n2n_fast import _backend

    _backend.serve_cpu_with_triton(True)
    _state["stub"] = stub


def stub_launches():
    """Launches that reached the stub's cuLaunchKernelEx (the C launcher ran to the end)."""
    return _state["stub"].stub_launch_count()


@contextlib.contextmanager
def target(arch):
    """Compile and launch for sm_`arch` (90 or 80) inside the block."""
    device = {v: k for k, v in ARCH_OF_DEVICE.items()}[arch]
    previous, _state["device"] = _state["device"], device
    try:
        yield
    finally:
        _state["device"] = previous


@contextlib.contextmanager
def recording():
    """Yields the list of Launches made inside the block, and checks each reached the stub."""
    start, before = len(LAUNCHES), stub_launches()
    made = []
    yield made
    made.extend(LAUNCHES[start:])
    assert stub_launches() - before == len(made), "a recorded launch did not reach cuLaunchKernelEx"


@contextlib.contextmanager
def quiet():
    """Inside the block launches are neither recorded nor have their small buffers zeroed: the host time measured
    is Triton's and ours, not the harness's (recording and zeroing cost about as much as Triton's binder). Only
    for code whose host side reads no kernel output (a loss value, Philox words)."""
    previous, _state["quiet"] = _state["quiet"], True
    try:
        yield
    finally:
        _state["quiet"] = previous


def compiled_kernels():
    """[(kernel name, arch, CompiledKernel)] of every specialisation the Triton JIT compiled in this process."""
    from triton.runtime.jit import JITFunction

    import n2n_fast.triton.crops
    import n2n_fast.triton.loss
    import n2n_fast.triton.loss_backward
    import n2n_fast.triton.loss_fused
    import n2n_fast.triton.noise
    import n2n_fast.triton.philox

    found = []
    for module in (n2n_fast.triton.crops, n2n_fast.triton.loss, n2n_fast.triton.loss_backward,
                   n2n_fast.triton.loss_fused, n2n_fast.triton.noise, n2n_fast.triton.philox):
        for name, value in vars(module).items():
            if isinstance(value, JITFunction) and value.__module__ == module.__name__:
                for device, (kernels, *_rest) in value.device_caches.items():
                    found.extend((name, ARCH_OF_DEVICE[device], kernel) for kernel in kernels.values())
    return found


def host_seconds(fn, repeat=20):
    """Median wall time of fn() (host work only: launches are no-ops), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
