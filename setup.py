"""Builds the one extension, n2n_fast._C.

CUDA is used when a toolkit and a CUDA build of torch are both present; otherwise a CPU-only CppExtension.
Switches (environment):
  N2N_FAST_CUDA=0      skip CUDA even when possible (fast CPU-only builds while iterating)
  N2N_FAST_CUDA=1      require CUDA: fail with a clear message when it cannot be built
  CUDA_HOME            toolkit root; falls back to /usr/local/cuda (torch's guess from a /usr/local/bin/nvcc
                       wrapper is /usr/local, which holds no CUDA libraries)
  TORCH_CUDA_ARCH_LIST honoured; without it and without a visible GPU we build sm_80 and sm_90 (+PTX)
  MAX_JOBS             honoured by torch's ninja build
  N2N_FAST_PTXAS_VERBOSE=1  pass -Xptxas -v so the build log carries register/spill reports (CI reads it)

Build isolation: torch must already be installed; install with `pip install --no-build-isolation .` so the
extension is compiled against the torch that will load it (an isolated build would fetch a second torch).
"""
import glob
import os
import shutil
import sys

from setuptools import find_packages, setup


def _cuda_home():
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    return None


def _extension():
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        sys.exit("n2n_fast: install torch first (pip install torch==2.14.1), then build with "
                 "`pip install --no-build-isolation .` so the extension links against that torch.")

    want = os.environ.get("N2N_FAST_CUDA", "auto").lower()
    cuda_home = _cuda_home()
    reasons = []
    if torch.version.cuda is None:
        reasons.append("torch is a CPU-only build")
    if cuda_home is None:
        reasons.append("no nvcc under CUDA_HOME or /usr/local/cuda")
    use_cuda = want not in ("0", "false", "no") and not reasons
    if want in ("1", "true", "yes") and not use_cuda:
        sys.exit("n2n_fast: N2N_FAST_CUDA=1 but CUDA cannot be built: " + "; ".join(reasons))

    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp"]
    extra = {"cxx": cxx_flags}
    if use_cuda:
        os.environ["CUDA_HOME"] = cuda_home
        cpp_extension.CUDA_HOME = cuda_home  # torch caches its own guess at import; ours must win
        if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        nvcc = ["-O3", "-std=c++20", "--use_fast_math", "-lineinfo"]
        if os.environ.get("N2N_FAST_PTXAS_VERBOSE") == "1":
            nvcc.append("-Xptxas=-v")
        extra["nvcc"] = nvcc
        ext_cls = cpp_extension.CUDAExtension
    else:
        ext_cls = cpp_extension.CppExtension
    ext = ext_cls(
        name="n2n_fast._C",
        sources=sources,
        include_dirs=[os.path.join(here, "csrc")],
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
        py_limited_api=False,
    )
    return ext, cpp_extension.BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)


ext, build_ext = _extension()
setup(
    packages=find_packages(include=["n2n_fast", "n2n_fast.*"]),
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
)
