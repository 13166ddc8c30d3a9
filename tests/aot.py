"""Ahead-of-time compilation of Triton kernels for sm_80 / sm_90 without a GPU (docs/design.md §4, way 2).

`compile_for(kernel, signature, constexprs, aligned, arch)` compiles the specialisation the runtime would pick
for 16-byte-aligned pointers, returns the PTX and the register/spill report of triton's bundled ptxas.
Fails in a process where TRITON_INTERPRET=1 is set (triton then has no compiler frontend): run these tests in the
non-interpreter pytest process.
"""
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

ARCHES = (80, 90)


def pointer_type(dtype):
    """Triton's signature string for a pointer to torch `dtype` (e.g. torch.bfloat16 -> "*bf16")."""
    import torch

    return "*" + {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
                  torch.uint8: "u8", torch.uint16: "u16", torch.int32: "i32", torch.bool: "i1"}[dtype]


@dataclass
class AotReport:
    arch: int
    ptx: str
    registers: int
    spill_stores: int
    spill_loads: int
    ptxas_log: str

    @property
    def vector_loads(self):
        """Number of 128-bit global loads (ld.global...v4.b32 / .v2.b64)."""
        return len(re.findall(r"ld\.global(?:\.[a-z0-9_]+)*\.v4\.(?:b32|f32|u32|s32)", self.ptx))

    @property
    def vector_stores(self):
        return len(re.findall(r"st\.global(?:\.[a-z0-9_]+)*\.v4\.(?:b32|f32|u32|s32)", self.ptx))

    def assert_finishes_when_last(self):
        """The one-launch reduction (triton/loss.py finish_when_last) as the memory model needs it: a barrier
        before the arrival, the arrival an acq_rel atomic at GPU scope, a barrier handing its result to every
        thread, the partials read past L1."""
        arrival = re.search(r"atom\.global\.gpu\.acq_rel\.add|atom\.global\.acq_rel\.gpu\.add", self.ptx)
        assert arrival, f"sm_{self.arch}: no acq_rel GPU-scope atomic add (the ticket) in the PTX"
        before, after = self.ptx[:arrival.start()], self.ptx[arrival.end():]
        assert re.search(r"bar\.sync|barrier\.sync", before), f"sm_{self.arch}: no barrier before the arrival"
        assert re.search(r"bar\.sync|barrier\.sync", after), f"sm_{self.arch}: no barrier after the arrival"
        assert re.search(r"ld\.global\.cg", after), f"sm_{self.arch}: the partials are not read with .cg"

    def assert_clean(self, min_vector_loads=1, min_vector_stores=1):
        """No spills, and at least this many 128-bit loads and stores."""
        assert self.spill_stores == 0 and self.spill_loads == 0, (
            f"sm_{self.arch}: spills ({self.spill_stores} B stores, {self.spill_loads} B loads)\n{self.ptxas_log}")
        assert self.vector_loads >= min_vector_loads, f"sm_{self.arch}: no 128-bit global loads in PTX"
        assert self.vector_stores >= min_vector_stores, f"sm_{self.arch}: no 128-bit global stores in PTX"


def _ptxas():
    import triton.backends.nvidia as nvidia

    return os.path.join(os.path.dirname(nvidia.__file__), "bin", "ptxas")


def compile_for(kernel, signature, constexprs=None, aligned=(), arch=90, num_warps=4, maxnreg=None):
    """Compile `kernel` (a @triton.jit function) for sm_`arch`.

    signature: {arg name: type string such as "*fp32", "i64", "fp32"} for every runtime argument.
    constexprs: {arg name: value} for tl.constexpr arguments.
    aligned: names of pointer (and integer) arguments the runtime would see as divisible by 16, which is what
      enables 128-bit accesses.
    maxnreg: the register allowance the launcher passes (Triton's `maxnreg` option), if any.
    """
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("ahead-of-time compilation is impossible with TRITON_INTERPRET set; run it in the "
                           "non-interpreter pytest process")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(kernel.arg_names)
    constexprs = dict(constexprs or {})
    full_signature = {name: ("constexpr" if name in constexprs else signature[name]) for name in names}
    const_keys = {(names.index(name),): value for name, value in constexprs.items()}
    attrs = {(names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    source = ASTSource(fn=kernel, signature=full_signature, constexprs=const_keys, attrs=attrs)
    options = {"num_warps": num_warps} | ({"maxnreg": maxnreg} if maxnreg else {})
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    return ptxas_report(compiled.asm["ptx"], arch)



def ptxas_report(ptx, arch):
    """Assemble `ptx` with triton's bundled ptxas -v for sm_`arch`: registers and spills (also used by the dry run,
    whose stub reports fake figures)."""
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"  # sm_90 PTX uses wgmma-era features that need sm_90a
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as handle:
            handle.write(ptx)
        result = subprocess.run([_ptxas(), "-v", f"-arch={gpu}", path, "-o", os.path.join(tmp, "kernel.cubin")],
                                capture_output=True, text=True, check=False)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"ptxas failed for sm_{arch}:\n{log}")
    registers = max((int(m) for m in re.findall(r"Used (\d+) registers", log)), default=0)
    stores = sum(int(m) for m in re.findall(r"(\d+) bytes spill stores", log))
    loads = sum(int(m) for m in re.findall(r"(\d+) bytes spill loads", log))
    return AotReport(arch, ptx, registers, stores, loads, log)
