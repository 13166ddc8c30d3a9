"""The first op end to end: reference Philox == extension (CPU, shared csrc/philox.h) == tl.philox (interpreter)."""
import numpy as np
import pytest
import torch

from n2n_fast import _backend, _ext
from n2n_fast.reference.philox import philox_words

# Published known-answer vectors for Philox4x32-10 (Random123 distribution, kat_vectors): counter, key -> words.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _as_int32(words):
    return torch.tensor(np.array(words, dtype=np.uint32).view(np.int32))


def _random_counters(gen, n):
    return torch.randint(-(2**31), 2**31 - 1, (n, 4), dtype=torch.int32, generator=gen)


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_reference_matches_published_vectors(counter, key, expected):
    seed = key[0] | (key[1] << 32)
    out = philox_words(_as_int32(counter)[None], seed)[0]
    assert torch.equal(out, _as_int32(expected))


def test_extension_cpu_matches_reference(gen):
    if _ext.ops() is None:
        pytest.fail(f"the extension must be built for this test suite: {_ext.reason()}")
    for n, seed in [(1, 0), (1001, 2**40 + 17), (4099, 2**64 - 1)]:
        counters = _random_counters(gen, n)
        assert torch.equal(torch.ops.n2n_fast.philox(counters, seed - 2**64 if seed >= 2**63 else seed),
                           philox_words(counters, seed))


def test_extension_op_passes_opcheck(gen):
    torch.library.opcheck(torch.ops.n2n_fast.philox.default, (_random_counters(gen, 33), 7))


def test_extension_reports_cuda_build():
    """On machines with nvcc (CI and developers), the extension must carry CUDA kernels."""
    import shutil

    if shutil.which("nvcc") is None and not torch.cuda.is_available():
        pytest.skip("no CUDA toolkit on this machine")
    assert _ext.built_with_cuda()


@pytest.mark.interpret
def test_triton_matches_reference(gen):
    from n2n_fast.triton.philox import philox_words as triton_words

    for n, seed in [(1, 0), (257, 12345), (1001, 2**40 + 17)]:
        counters = _random_counters(gen, n)
        assert torch.equal(triton_words(counters, seed), philox_words(counters, seed))


def test_triton_kernel_compiles_clean():
    pytest.importorskip("triton")
    from aot import ARCHES, compile_for

    from n2n_fast.triton.philox import _philox_words_kernel

    for arch in ARCHES:
        report = compile_for(_philox_words_kernel,
                             {"counters_ptr": "*i32", "out_ptr": "*i32", "n": "i64", "seed": "i64"},
                             {"BLOCK": 256}, aligned=("counters_ptr", "out_ptr"), arch=arch)
        report.assert_clean()


@pytest.mark.gpu
def test_gpu_paths_match_reference(gen):
    counters = _random_counters(gen, 100_003)
    expected = philox_words(counters, 99)
    for backend in ("triton", "extension"):
        _, fn = _backend.choose("philox", "cuda", backend=backend)
        assert torch.equal(fn(counters.cuda(), 99).cpu(), expected), backend


@pytest.mark.gpu
def test_gpu_paths_read_misaligned_views(gen):
    """A contiguous view 4 bytes past a 16-byte boundary: the extension's uint4 loads need a realigned copy."""
    flat = _random_counters(gen, 1001).reshape(-1)
    counters = flat[1:1 + 4 * 1000].reshape(1000, 4)
    expected = philox_words(counters, 5)
    device_flat = flat.cuda()
    view = device_flat[1:1 + 4 * 1000].reshape(1000, 4)
    assert view.data_ptr() % 16 != 0
    for backend in ("triton", "extension"):
        _, fn = _backend.choose("philox", "cuda", backend=backend)
        assert torch.equal(fn(view, 5).cpu(), expected), backend
