"""Noisy pairs: reference by hand, C++ CPU and Triton (interpreter) against the reference, AOT, bad input.

Statistics (is the noise the right distribution?) live in test_noise_stats.py.
"""
import math

import numpy as np
import pytest
import torch
from tolerance import NOISE_F32_REL, POISSON_MISMATCH_FRACTION

import n2n_fast
from n2n_fast import _backend, _ext
from n2n_fast import noise as nz
from n2n_fast.reference import noise as ref
from n2n_fast.reference.philox import philox_words

MODELS = {
    "gaussian": nz.Gaussian((0.0, 0.5)),
    "gaussian_fixed": nz.Gaussian(25 / 255),
    "poisson": nz.Poisson((0.001, 50.0)),  # inversion and PTRS
    "poisson_normal": nz.Poisson((900.0, 3000.0)),  # PTRS and the normal approximation
    "poisson_gaussian": nz.PoissonGaussian((5.0, 60.0), (0.0, 0.1)),
    "bernoulli": nz.Bernoulli((0.2, 0.8)),
    "impulse": nz.Impulse(0.3),
}
IN_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.uint8, torch.uint16)
OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BIG_INDEX = 2**33 + 2**31 + 5  # both counter words of the sample index are in use


def clean_batch(gen, shape, dtype):
    """Fresh random clean images in [0, 1] (or the full uint range)."""
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.int32).to(torch.uint8)
    if dtype == torch.uint16:
        return torch.randint(0, 65536, shape, generator=gen, dtype=torch.int32).to(torch.uint16)
    return torch.rand(shape, generator=gen).to(dtype)


def ulp(values, dtype):
    mantissa = {torch.float32: 23, torch.bfloat16: 7, torch.float16: 10}[dtype]
    tiny = torch.finfo(dtype).tiny
    return torch.exp2(torch.floor(torch.log2(values.float().abs().clamp(min=tiny))) - mantissa)


def assert_noise_parity(actual, expected, noise):
    """Parity (docs/design.md §2): float32 within NOISE_F32_REL * max(1, |y|), bf16/fp16 within one ulp; Poisson
    models may differ beyond that (a count off by one) on POISSON_MISMATCH_FRACTION of the elements."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    err = (actual.float() - expected.float()).abs()
    if expected.dtype == torch.float32:
        bad = ~(err <= NOISE_F32_REL * expected.abs().clamp(min=1.0))
    else:
        bad = ~(err <= ulp(expected, expected.dtype))
    allowed = 0
    if noise.code in (nz.POISSON, nz.POISSON_GAUSSIAN):
        allowed = math.floor(POISSON_MISMATCH_FRACTION * expected.numel())
    assert int(bad.sum()) <= allowed, (f"{int(bad.sum())} of {bad.numel()} elements differ beyond tolerance "
                                       f"(allowed {allowed}); worst {float(err.max()):.3g}")


def assert_pairs_match(actual, expected, noise):
    assert len(actual) == len(expected)
    for a, e in zip(actual[:2], expected[:2]):
        if noise.code in (nz.BERNOULLI, nz.IMPULSE) and e.dtype == torch.float32:
            assert torch.equal(a, e)  # x, 0 or a uniform colour: bit exact
        else:
            assert_noise_parity(a, e, noise)
    if noise.code == nz.BERNOULLI:
        assert torch.equal(actual[2], expected[2])


def need_extension():
    if not _ext.has_op("noisy_pair"):
        pytest.fail(f"the extension (with noisy_pair) must be built for this test suite: {_ext.reason()}")


# ----------------------------------------------------------------------------------------------------------------
# reference, checked by hand


def test_uniform_conversion_is_integer_exact():
    words = torch.tensor([0, 255, 256, 2**31, 2**32 - 1], dtype=torch.int64)
    expected = torch.tensor([0.0, 0.0, 2.0**-24, 0.5, 1.0 - 2.0**-24], dtype=torch.float32)
    assert torch.equal(ref.uniform(words), expected)


def test_counter_layout_by_hand():
    """One Gaussian element and one Bernoulli pixel rebuilt from the documented counter layout, with the int32
    counter API of the philox op and float64 math: catches any drift between the docstring and the code."""
    seed, step, index = 2**63 + 9, 7, 2**40 + 3
    b, c, h, w, shape = 1, 2, 3, 4, (2, 3, 5, 6)
    sample, pixels = index + b, 5 * 6
    pos = c * pixels + h * 6 + w

    def words(pos, purpose):
        counter = np.array([[pos, sample & 0xFFFFFFFF, step, purpose | (sample >> 32) << 8]], dtype=np.uint32)
        return philox_words(torch.from_numpy(counter.view(np.int32)), seed)[0].numpy().view(np.uint32)

    def u(word):
        return float(word >> 8) * 2.0**-24

    level = words(0, 1)
    sigma1 = 0.5 * u(level[1])
    main = words(pos, 0)
    z1 = math.sqrt(-2 * math.log(1 - u(main[0]))) * math.sin(2 * math.pi * u(main[1]))
    x = torch.full(shape, 0.25)
    y1 = n2n_fast.noisy_pair(x, nz.Gaussian((0.0, 0.5)), seed=seed, step=step, index=index, backend="reference")[1]
    assert abs(float(y1[b, c, h, w]) - (0.25 + sigma1 * z1)) < 1e-6

    p_level = words(0, 1)
    p1 = 0.2 + 0.6 * u(p_level[1])
    keep = u(words(h * 6 + w, 0)[3]) >= p1
    _, y1, mask = n2n_fast.noisy_pair(x, nz.Bernoulli((0.2, 0.8)), seed=seed, step=step, index=index,
                                      backend="reference")
    assert bool(mask[b, 0, h, w]) == keep
    assert torch.equal(y1[b, :, h, w], torch.full((3,), 0.25 if keep else 0.0))


@pytest.mark.parametrize("backend", ["reference", "extension"])
def test_batch_split_3d_and_add_noise(gen, backend):
    if backend == "extension":
        need_extension()
    x = clean_batch(gen, (5, 3, 7, 9), torch.float32)
    for noise in (MODELS["gaussian"], MODELS["poisson"], MODELS["bernoulli"], MODELS["impulse"]):
        full = n2n_fast.noisy_pair(x, noise, seed=3, step=11, index=BIG_INDEX, backend=backend)
        part = n2n_fast.noisy_pair(x[2:4], noise, seed=3, step=11, index=BIG_INDEX + 2, backend=backend)
        for whole, piece in zip(full, part):
            assert torch.equal(whole[2:4], piece)
        single = n2n_fast.noisy_pair(x[3], noise, seed=3, step=11, index=BIG_INDEX + 3, backend=backend)
        for whole, one in zip(full, single):
            assert torch.equal(whole[3], one)
        for stream in (0, 1):
            alone = n2n_fast.add_noise(x, noise, seed=3, step=11, index=BIG_INDEX, stream=stream, backend=backend)
            assert torch.equal(alone, full[stream])


def test_seed_step_index_and_levels_change_the_noise(gen):
    x = clean_batch(gen, (2, 1, 8, 8), torch.float32)
    noise = nz.Gaussian(0.1)
    base = n2n_fast.noisy_pair(x, noise, seed=1, step=0, index=5, backend="reference")[0]
    for kwargs in (dict(seed=2, step=0, index=5), dict(seed=1, step=1, index=5), dict(seed=1, step=0, index=6),
                   dict(seed=1, step=0, index=5 + 2**32), dict(seed=1 + 2**32, step=0, index=5)):
        other = n2n_fast.noisy_pair(x, noise, backend="reference", **kwargs)[0]
        assert (other != base).float().mean() > 0.9, kwargs
    y0, y1 = n2n_fast.noisy_pair(x, noise, seed=1, backend="reference")
    assert (y0 != y1).float().mean() > 0.9  # the copies are different draws
    fixed = n2n_fast.noisy_pair(x, nz.Gaussian(0.1), seed=4, backend="reference")
    degenerate = n2n_fast.noisy_pair(x, nz.Gaussian((0.1, 0.1)), seed=4, backend="reference")
    assert all(torch.equal(a, b) for a, b in zip(fixed, degenerate))


def test_edge_parameters(gen):
    x = clean_batch(gen, (2, 3, 6, 5), torch.float32)
    y0, y1, keep = n2n_fast.noisy_pair(x, nz.Bernoulli(0.0), seed=1, backend="reference")
    assert torch.equal(y0, x) and torch.equal(y1, x) and bool(keep.all())
    y0, y1, keep = n2n_fast.noisy_pair(x, nz.Bernoulli(1.0), seed=1, backend="reference")
    assert not y0.any() and not y1.any() and not keep.any()
    assert all(torch.equal(y, x) for y in n2n_fast.noisy_pair(x, nz.Impulse(0.0), seed=1, backend="reference"))
    for y in n2n_fast.noisy_pair(x, nz.Impulse(1.0), seed=1, backend="reference"):
        assert bool((y != x).all()) and bool((y >= 0).all()) and bool((y < 1).all())
    zero = torch.zeros(1, 1, 4, 4)
    assert all(not y.any() for y in n2n_fast.noisy_pair(zero, nz.Poisson((0.5, 80.0)), seed=1, backend="reference"))
    assert all(torch.equal(y, x) for y in n2n_fast.noisy_pair(x, nz.Gaussian(0.0), seed=1, backend="reference"))


def test_whole_pixels_and_target_mask(gen):
    x = clean_batch(gen, (3, 4, 9, 11), torch.float32) + 0.01  # every clean value nonzero
    y0, y1, keep = n2n_fast.noisy_pair(x, nz.Bernoulli(0.5), seed=5, backend="reference")
    assert keep.shape == (3, 1, 9, 11) and keep.dtype == torch.bool
    assert torch.equal(y1, torch.where(keep, x, 0.0))
    dropped0 = y0 == 0
    assert torch.equal(dropped0, dropped0[:, :1].expand_as(dropped0))  # copy 0 drops whole pixels too
    assert not torch.equal(dropped0[:, :1], ~keep)  # and independently of the target
    i0, _ = n2n_fast.noisy_pair(x, nz.Impulse(0.4), seed=5, backend="reference")
    hit = i0 != x
    assert torch.equal(hit, hit[:, :1].expand_as(hit))  # a hit pixel changes in every channel


def test_input_dtypes_are_scaled_consistently(gen):
    for dtype, scale in ((torch.uint8, 1.0 / 255.0), (torch.uint16, 1.0 / 65535.0)):
        raw = clean_batch(gen, (2, 3, 5, 7), dtype)
        as_float = raw.to(torch.float32) * torch.tensor(scale, dtype=torch.float32)
        for noise in (MODELS["gaussian"], MODELS["bernoulli"]):
            a = n2n_fast.noisy_pair(raw, noise, seed=9, backend="reference")
            b = n2n_fast.noisy_pair(as_float, noise, seed=9, backend="reference")
            assert all(torch.equal(p, q) for p, q in zip(a, b))
    x = clean_batch(gen, (2, 3, 5, 7), torch.float32)
    full = n2n_fast.noisy_pair(x, MODELS["gaussian"], seed=9, backend="reference")
    for out_dtype in (torch.bfloat16, torch.float16):
        low = n2n_fast.noisy_pair(x, MODELS["gaussian"], seed=9, out_dtype=out_dtype, backend="reference")
        assert all(torch.equal(p, q.to(out_dtype)) for p, q in zip(low, full))


# ----------------------------------------------------------------------------------------------------------------
# C++ CPU kernel against the reference

PARITY_CASES = [(name, dtype) for name in MODELS for dtype in IN_DTYPES
                if dtype in (torch.float32, torch.uint8) or not name.startswith("poisson")]


@pytest.mark.parametrize("name,in_dtype", PARITY_CASES)
def test_extension_matches_reference(gen, name, in_dtype):
    need_extension()
    noise = MODELS[name]
    for shape, seed, step, index in (((2, 3, 13, 21), 0, 0, 0), ((3, 1, 17, 5), 2**64 - 3, 2**32 - 1, BIG_INDEX),
                                     ((1, 4, 33, 65), -7, 12345, 2**31 + 1)):
        x = clean_batch(gen, shape, in_dtype)
        for out_dtype in OUT_DTYPES:
            kwargs = dict(seed=seed, step=step, index=index, out_dtype=out_dtype)
            fast = n2n_fast.noisy_pair(x, noise, backend="extension", **kwargs)
            expected = n2n_fast.noisy_pair(x, noise, backend="reference", **kwargs)
            assert_pairs_match(fast, expected, noise)
            if noise.code not in (nz.POISSON, nz.POISSON_GAUSSIAN):  # no libm calls: the same float32 operations
                assert all(torch.equal(a, b) for a, b in zip(fast, expected))


def test_extension_opcheck_and_dispatch(gen):
    need_extension()
    x = clean_batch(gen, (2, 3, 5, 7), torch.float32)
    for noise in (MODELS["gaussian"], MODELS["bernoulli"]):
        torch.library.opcheck(torch.ops.n2n_fast.noisy_pair.default,
                              (x, noise.code, list(noise.parameter_ranges()), 5, 1, 2, torch.bfloat16))
    # this process runs neither the interpreter nor the dry run, so Triton cannot take CPU tensors: the extension,
    # first after it in the priority list, must serve them (the other processes skip this test)
    assert not _backend.triton_serves_cpu()
    extension = next(impl for impl in _backend.OPS["noisy_pair"] if impl.backend == "extension").load()
    for out_dtype in OUT_DTYPES:
        assert _backend.choose("noisy_pair", "cpu", clean=x, out_dtype=out_dtype) == ("extension", extension)
    # CUDA tensors never reach the CPU-only op: the dispatch refuses it (tests/test_backend.py)


# ----------------------------------------------------------------------------------------------------------------
# Triton under the interpreter (small tensors: ~0.2 M elements/s, the Poisson loops far less)

TRITON_CASES = [("gaussian", torch.float32, torch.float32), ("gaussian", torch.uint8, torch.bfloat16),
                ("gaussian_fixed", torch.float16, torch.float16), ("gaussian", torch.uint16, torch.float32),
                ("poisson", torch.float32, torch.float32), ("poisson_normal", torch.bfloat16, torch.float32),
                ("poisson_gaussian", torch.uint8, torch.float16), ("bernoulli", torch.float32, torch.float32),
                ("bernoulli", torch.uint8, torch.bfloat16), ("impulse", torch.bfloat16, torch.float32),
                ("impulse", torch.uint16, torch.float16)]


@pytest.mark.interpret
@pytest.mark.parametrize("name,in_dtype,out_dtype", TRITON_CASES)
def test_triton_matches_reference_and_extension(gen, name, in_dtype, out_dtype):
    noise = MODELS[name]
    shape = (2, 3, 5, 7) if name.startswith("poisson") else (3, 3, 19, 23)  # 1309 elements: blocks straddled
    for seed, step, index in ((11, 0, 0), (2**64 - 1, 2**32 - 1, BIG_INDEX)):
        x = clean_batch(gen, shape, in_dtype)
        kwargs = dict(seed=seed, step=step, index=index, out_dtype=out_dtype)
        fast = n2n_fast.noisy_pair(x, noise, backend="triton", **kwargs)
        assert_pairs_match(fast, n2n_fast.noisy_pair(x, noise, backend="reference", **kwargs), noise)
        if _ext.has_op("noisy_pair"):
            assert_pairs_match(fast, n2n_fast.noisy_pair(x, noise, backend="extension", **kwargs), noise)


def poisoned(shape, dtype, device):
    """Outputs pre-filled with values no kernel writes (NaN; True for the mask, which is mostly False here)."""
    return torch.full(shape, True if dtype == torch.bool else float("nan"), dtype=dtype, device=device)


@pytest.mark.interpret
def test_triton_independent_of_block_and_batch_split(gen, monkeypatch):
    from n2n_fast.triton import noise as triton_noise

    monkeypatch.setattr(triton_noise, "_alloc", poisoned)
    x = clean_batch(gen, (4, 2, 9, 13), torch.float32)
    for noise in (MODELS["gaussian"], MODELS["bernoulli"], MODELS["impulse"], MODELS["poisson"]):
        full = n2n_fast.noisy_pair(x, noise, seed=8, step=2, index=BIG_INDEX, backend="triton")
        part = n2n_fast.noisy_pair(x[1:3], noise, seed=8, step=2, index=BIG_INDEX + 1, backend="triton")
        assert all(torch.equal(a[1:3], b) for a, b in zip(full, part))
        assert all(torch.equal(a, b) for a, b in zip(full, n2n_fast.noisy_pair(x, noise, seed=8, step=2,
                                                                              index=BIG_INDEX, backend="reference")))
        with monkeypatch.context() as patch:
            patch.setattr(triton_noise, "block_size", lambda dtype, model: (64, 1, False))  # many blocks per sample
            small = n2n_fast.noisy_pair(x, noise, seed=8, step=2, index=BIG_INDEX, backend="triton")
        assert all(torch.equal(a, b) for a, b in zip(full, small))


@pytest.mark.interpret
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.uint8])  # uint8: the chunked Poisson path
def test_triton_add_noise_computes_one_copy_bit_equal_to_the_pair(gen, monkeypatch, name, in_dtype):
    from n2n_fast.triton import noise as triton_noise

    monkeypatch.setattr(triton_noise, "_alloc", poisoned)
    x = clean_batch(gen, (2, 3, 9, 13), in_dtype)
    pair = n2n_fast.noisy_pair(x, MODELS[name], seed=5, step=9, index=BIG_INDEX, backend="triton")
    for stream in (0, 1):
        made = []
        with monkeypatch.context() as patch:  # count the outputs the launcher allocates: one copy, not two
            patch.setattr(triton_noise, "_alloc", lambda *a, **k: made.append(a[0]) or poisoned(*a, **k))
            one = n2n_fast.add_noise(x, MODELS[name], seed=5, step=9, index=BIG_INDEX, stream=stream,
                                     backend="triton")
        assert torch.equal(one, pair[stream]), f"{name} stream {stream}"
        one_copy = name.startswith("poisson")  # the models whose one-copy kernel is used (triton/noise.py)
        assert sum(1 for shape in made if tuple(shape) == tuple(x.shape)) == (1 if one_copy else 2)


@pytest.mark.interpret
def test_triton_op_opcheck_and_fullgraph_compile(gen):
    from n2n_fast.triton.noise import triton_noisy_pair

    x = clean_batch(gen, (2, 3, 5, 7), torch.float32)
    for noise in (MODELS["gaussian"], MODELS["bernoulli"]):
        args = (x, noise.code, list(noise.parameter_ranges()), 3, 1, 2, torch.float32)
        torch.library.opcheck(triton_noisy_pair._opoverload, args)

    def pair(clean):
        y0, y1, _ = triton_noisy_pair(clean, nz.GAUSSIAN, [0.0, 0.5, 0.0, 0.0], 3, 1, 2, torch.float32)
        return y0 - y1

    compiled = torch.compile(pair, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), pair(x))


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(MODELS))
def test_gpu_triton_matches_reference(gen, name):
    """On a real GPU: contracted multiply-adds move float32 results by an ulp, so docs/design.md §2's bounds apply."""
    noise = MODELS[name]
    for in_dtype, out_dtype in ((torch.float32, torch.float32), (torch.uint8, torch.bfloat16)):
        x = clean_batch(gen, (3, 3, 67, 45), in_dtype)
        kwargs = dict(seed=2**64 - 5, step=77, index=BIG_INDEX, out_dtype=out_dtype)
        fast = n2n_fast.noisy_pair(x.cuda(), noise, backend="triton", **kwargs)
        assert_pairs_match([t.cpu() for t in fast], n2n_fast.noisy_pair(x, noise, backend="reference", **kwargs),
                           noise)


# ----------------------------------------------------------------------------------------------------------------
# ahead-of-time compilation for sm_80 / sm_90 (non-interpreter process)

# Cases from the dispatch's table of what the Triton noisy pair accepts (n2n_fast/_backend.py): every model with
# every input dtype (what sets BLOCK, CHUNKS and the vector width), and every output dtype for one model. The
# Poisson models' chunked 1-/2-byte variants inline their rejection loops and take 10-40 s each to compile: slow.
def _aot_specs():
    from n2n_fast._backend import OPS

    accepts = dict(next(impl for impl in OPS["noisy_pair"] if impl.backend == "triton").accepts.dtypes)
    specs = [(model, clean, torch.float32, 2) for model in range(5) for clean in accepts["clean"]]
    specs += [(nz.GAUSSIAN, torch.float32, out, 2) for out in accepts["out_dtype"] if out != torch.float32]
    specs += [(model, torch.float32, torch.float32, 1) for model in (nz.POISSON, nz.POISSON_GAUSSIAN)]  # add_noise
    return [pytest.param(model, clean, out, copy, id=f"{model}-{clean}-{out}-copy{copy}", marks=(
        [pytest.mark.slow] if model in (nz.POISSON, nz.POISSON_GAUSSIAN) and clean.itemsize < 4 else []))
        for model, clean, out, copy in specs]


@pytest.mark.parametrize("model,in_dtype,out_dtype,copy", _aot_specs())
def test_triton_kernel_compiles_clean(model, in_dtype, out_dtype, copy):
    """The specialisation the runtime picks for 16-byte-aligned buffers and sizes, with the argument types it
    gives ordinary values (ints below 2**31 are i32): no spills, 128-bit loads and stores."""
    pytest.importorskip("triton")
    import triton.language as tl
    from aot import ARCHES, compile_for, pointer_type

    from n2n_fast.triton.noise import _noisy_pair_kernel, block_size

    block, chunks, lean = block_size(in_dtype, model)
    out_type = pointer_type(out_dtype)
    signature = {"clean_ptr": pointer_type(in_dtype), "y0_ptr": out_type, "y1_ptr": out_type, "keep_ptr": "*i1",
                 "sample_numel": "i32", "pixels": "i32", "blocks_per_sample": "i32", "index": "i32", "seed": "i32",
                 "step": "i32", "step_ptr": "*i64", "a_low": "fp32", "a_high": "fp32", "b_low": "fp32",
                 "b_high": "fp32", "in_scale": "fp32"}
    constexprs = {"MODEL": model, "SCALE_INPUT": in_dtype in nz.INPUT_SCALE, "BLOCK": block, "CHUNKS": chunks,
                  "LEAN": lean, "COPY": copy, "STEP_IN_MEMORY": model == nz.GAUSSIAN,  # both step forms, cheaply
                  "OUT_DTYPE": {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}[
                      out_dtype]}
    for arch in ARCHES:
        report = compile_for(_noisy_pair_kernel, signature, constexprs, arch=arch,
                             aligned=("clean_ptr", "y0_ptr", "y1_ptr", "keep_ptr", "sample_numel", "pixels"))
        # Poisson with 1-byte input loads 8 bytes per thread (triton/noise.py block_size: 16 spilled); compute-bound
        narrow = model in (nz.POISSON, nz.POISSON_GAUSSIAN) and in_dtype.itemsize == 1
        report.assert_clean(min_vector_loads=0 if narrow else 1)  # no spills, 128-bit loads and stores


# ----------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("make,error,match", [
    (lambda: nz.Gaussian(-0.1), ValueError, "sigma"),
    (lambda: nz.Gaussian(float("nan")), ValueError, "sigma"),
    (lambda: nz.Gaussian((0.2, 0.1)), ValueError, "low must not exceed high"),
    (lambda: nz.Gaussian("0.1"), TypeError, "sigma"),
    (lambda: nz.Gaussian((0.1, 0.2, 0.3)), TypeError, "sigma"),
    (lambda: nz.Poisson(0.0), ValueError, "peak"),
    (lambda: nz.Poisson(-3.0), ValueError, "peak"),
    (lambda: nz.Poisson(float("nan")), ValueError, "peak"),
    (lambda: nz.PoissonGaussian(30.0, -1.0), ValueError, "sigma"),
    (lambda: nz.Bernoulli(1.5), ValueError, "p"),
    (lambda: nz.Bernoulli(-0.1), ValueError, "p"),
    (lambda: nz.Impulse((0.5, 0.4)), ValueError, "low must not exceed high"),
    (lambda: nz.Impulse(float("inf")), ValueError, "p"),
])
def test_bad_model_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("clean,kwargs,error,match", [
    (torch.rand(3, 4), {}, ValueError, "rank"),
    (torch.rand(1, 1, 2, 3, 4, 5), {}, ValueError, "rank"),  # rank 5 is a batch of volumes
    (torch.zeros(1, 1, 4, 4, dtype=torch.int32), {}, TypeError, "dtype"),
    (torch.zeros(1, 1, 4, 4, dtype=torch.int8), {}, TypeError, "dtype"),
    (torch.rand(1, 1, 4, 4, dtype=torch.float64), {}, TypeError, "dtype"),
    (torch.tensor([[[[0.5, float("nan")]]]]), {}, ValueError, "NaN"),
    (torch.tensor([[[[0.5, float("inf")]]]]), {}, ValueError, "NaN or Inf"),
    (torch.rand(1, 1, 4, 4, device="meta"), {}, ValueError, "device"),
    (torch.rand(1, 1, 4, 4), {"seed": 1.5}, TypeError, "seed"),
    (torch.rand(1, 1, 4, 4), {"step": -1}, ValueError, "step"),
    (torch.rand(1, 1, 4, 4), {"step": 2**32}, ValueError, "step"),
    (torch.rand(1, 1, 4, 4), {"index": -1}, ValueError, "index"),
    (torch.rand(3, 1, 4, 4), {"index": 2**56 - 2}, ValueError, "index"),
    (torch.rand(1, 1, 4, 4), {"out_dtype": torch.float64}, TypeError, "out_dtype"),
    (torch.rand(1, 1, 4, 4), {"noise": "gaussian"}, TypeError, "noise"),
    ([[0.5]], {}, TypeError, "clean"),
])
def test_bad_noisy_pair_arguments(clean, kwargs, error, match):
    kwargs = {"noise": nz.Gaussian(0.1), "seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        n2n_fast.noisy_pair(clean, kwargs.pop("noise"), **kwargs)
    with pytest.raises(ValueError, match="stream"):
        n2n_fast.add_noise(torch.rand(1, 1, 2, 2), nz.Gaussian(0.1), seed=0, stream=2)


def test_cuda_tensor_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_backend, "triton_reason", lambda: "triton is not importable (ImportError: test)")
    with pytest.raises(RuntimeError, match="(?s)triton.*not importable"):
        _backend.choose("noisy_pair", "cuda", backend="triton")
    with pytest.raises(ValueError, match="unknown backend"):
        n2n_fast.noisy_pair(torch.rand(1, 1, 2, 2), nz.Gaussian(0.1), seed=0, backend="cudnn")


def test_noise_bits_unchanged_across_versions():
    """Every user's noise is a function of (seed, counters): this digest of noisy pairs for uint8, uint16 and float
    inputs under every model was recorded before the shared facts moved to n2n_fast/conventions.py (2026-11-29). A
    change to the counter layout, the input scaling (multiplication by float32(1/peak); a division rounds
    differently) or a sampler changes it: that is a break of every user's reproducibility, not a refactor."""
    import hashlib

    from n2n_fast import Bernoulli, Gaussian, Impulse, Poisson, PoissonGaussian

    g = torch.Generator().manual_seed(2026)
    clean = {torch.uint8: torch.randint(0, 256, (2, 3, 13, 11), generator=g, dtype=torch.int32).to(torch.uint8),
             torch.uint16: torch.randint(0, 65536, (2, 3, 13, 11), generator=g, dtype=torch.int32).to(torch.uint16),
             torch.float32: torch.rand((2, 3, 13, 11), generator=g)}
    models = (Gaussian((0, 0.2)), Poisson((5.0, 60.0)), PoissonGaussian(30.0, 0.02), Bernoulli(0.3), Impulse(0.2))
    for backend in ("reference", "extension"):
        digest = hashlib.sha256()
        for x in clean.values():
            for noise in models:
                for t in n2n_fast.noisy_pair(x, noise, seed=123456789, step=7, index=3, backend=backend):
                    digest.update(t.contiguous().view(torch.uint8).numpy().tobytes())
        assert digest.hexdigest() == "34ccc760ee83da22fb6d5099337fd2154cd89072d382b51d0fd874efec2193de", backend


def test_levels_float32_cannot_hold_are_refused_and_numpy_scalars_accepted():
    from n2n_fast import Gaussian, Poisson, PoissonGaussian

    with pytest.raises(ValueError, match="sigma: 1e\\+40 is out of float32's range"):
        Gaussian(1e40)  # would become inf: NaN noise
    with pytest.raises(ValueError, match="peak: 1e-46 underflows to 0 in float32"):
        Poisson(1e-46)  # would become 0: division by zero
    assert Gaussian(np.float32(0.1)).parameter_ranges() == Gaussian(0.1).parameter_ranges()
    assert PoissonGaussian(np.int64(30), (np.float64(0.0), 0.05)).parameter_ranges()[:2] == (30.0, 30.0)
    with pytest.raises(TypeError, match="sigma: expected a number"):
        Gaussian(np.bool_(True))



@pytest.mark.interpret
@pytest.mark.parametrize("backend", ["triton", "extension", "reference"])
def test_device_step_draws_the_int_steps_noise(backend, gen):
    """The step read from a 0-d device tensor (what train() and a replayed CUDA graph use) gives the int step's
    noise bit for bit, and different noise at each step (a kernel ignoring the tensor would repeat step 0's)."""
    if backend == "extension":
        need_extension()
    clean = clean_batch(gen, (2, 3, 5, 7), torch.uint8)
    noise = MODELS["bernoulli"] if backend == "reference" else MODELS["gaussian"]
    seen = []
    for step in (0, 1, 2):
        by_int = n2n_fast.noisy_pair(clean, noise, seed=9, step=step, index=4, backend=backend)
        by_tensor = n2n_fast.noisy_pair(clean, noise, seed=9, step=torch.tensor(step), index=4, backend=backend)
        assert all(torch.equal(a, b) for a, b in zip(by_int, by_tensor)), step
        seen.append(by_tensor[1])
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    with pytest.raises(TypeError, match="step: a tensor step must be a 0-d int64 tensor"):
        n2n_fast.noisy_pair(clean, noise, seed=9, step=torch.tensor([1]), backend=backend)
