"""The GPU dry run (tests/dryrun.py): every Triton-served op and train() through Triton's real compiler and launcher.

Runs in its own pytest process: `pytest -m dryrun tests/` (the stub libcuda and the fake driver change the whole
process). The cases come from the dispatch's table of what each op accepts (n2n_fast/_backend.py OPS), not from a
hand-picked list, so a dtype added there is compiled here. Values are never checked (no kernel runs): the
interpreter tests do that. What is checked is what the interpreter cannot: Triton's typing rules, every real
specialisation (dtypes, alignment, ints equal to 1), the launcher's argument binding, spills by ptxas -v, and the
launches train() makes.
"""
import concurrent.futures
import contextlib
import itertools
import os

import pytest
import torch

import n2n_fast
from n2n_fast import _backend
from n2n_fast.noise import MODELS

pytestmark = pytest.mark.dryrun

SHAPE = (2, 3, 17, 19)  # odd sizes: a partial block, no divisibility-by-16 specialisation of the sizes
LOSS_KINDS = ("l2", "l1", "l0", "hdr")
KIND_ARGS = {"l2": {}, "l1": {}, "l0": {"gamma": 1.5}, "hdr": {}}
FIXED = {"Gaussian": (0.1,), "Poisson": (30.0,), "PoissonGaussian": (30.0, 0.02), "Bernoulli": (0.3,),
         "Impulse": (0.2,)}
RANGES = {"Gaussian": ((0.0, 0.2),), "Poisson": ((5.0, 50.0),), "PoissonGaussian": ((5.0, 50.0), (0.0, 0.05)),
          "Bernoulli": ((0.1, 0.5),), "Impulse": ((0.1, 0.5),)}


@pytest.fixture(scope="module", autouse=True)
def dry_run():
    import dryrun

    dryrun.install()
    return dryrun


def _accepted(op, argument):
    """Dtypes the Triton implementation of `op` accepts for `argument` (the dispatch's table)."""
    triton_impl = next(impl for impl in _backend.OPS[op] if impl.backend == "triton")
    return dict(triton_impl.accepts.dtypes)[argument]


def _sample(dtype, shape=SHAPE):
    if dtype in (torch.uint8, torch.uint16):
        return torch.randint(0, 255, shape, dtype=torch.int32).to(dtype)
    return torch.rand(shape).to(dtype)


def _kernels(launches):
    return [launch.kernel for launch in launches]


def _backward_kernels(pred_dtype):
    """A loss's backward launches: none for a float32 pred (PyTorch's multiplies have the kernel's arithmetic
    there, triton/loss_backward.py), the scaling kernel for bf16/fp16."""
    return [] if pred_dtype in (torch.float32, str(torch.float32)) else ["_scale_grad_kernel"]


def _check_served_by_triton(op, **inputs):
    assert _backend.choose(op, "cpu", **inputs)[0] == "triton", f"{op} is not served by Triton in the dry run"


# ---------------------------------------------------------------- ops, every case of the table, sm_90

LOSS_CASES = [(p, t) for p in _accepted("loss", "pred") for t in _accepted("loss", "target")]


@pytest.mark.parametrize("pred_dtype,target_dtype", LOSS_CASES, ids=str)
def test_losses_every_dtype_pair_and_kind(dry_run, pred_dtype, target_dtype):
    target = _sample(target_dtype)
    _check_served_by_triton("loss", pred=target.to(pred_dtype), target=target)
    for kind in LOSS_KINDS:
        pred = _sample(pred_dtype).requires_grad_()
        with dry_run.recording() as made:
            getattr(n2n_fast, f"{kind}_loss")(pred, target, **KIND_ARGS[kind]).backward()
        assert _kernels(made) == ["_loss_kernel"] + _backward_kernels(pred_dtype)  # one launch reduces
        assert made[0].dtypes[:2] == (str(pred_dtype), str(target_dtype))


@pytest.mark.parametrize("pred_dtype", _accepted("loss", "pred"), ids=str)
def test_losses_masks_and_reductions(dry_run, pred_dtype):
    target = _sample(torch.float32)
    masks = {"none": None, "full": torch.rand(SHAPE) > 0.5, "rows": torch.rand(SHAPE[0], 1, *SHAPE[2:]) > 0.5}
    for (mask_name, mask), reduction in itertools.product(masks.items(), ("mean", "sum", "none")):
        pred = _sample(pred_dtype).requires_grad_()
        with dry_run.recording() as made:
            value = n2n_fast.l1_loss(pred, target, mask=mask, reduction=reduction)
            value.backward(torch.ones_like(value))
        assert _kernels(made) == ["_loss_kernel"] + _backward_kernels(pred_dtype), (mask_name, reduction)


NOISE_CASES = [(c, o) for c in _accepted("noisy_pair", "clean") for o in _accepted("noisy_pair", "out_dtype")]


@pytest.mark.parametrize("clean_dtype,out_dtype", NOISE_CASES, ids=str)
def test_noisy_pair_every_dtype_and_model(dry_run, clean_dtype, out_dtype):
    clean = _sample(clean_dtype)
    _check_served_by_triton("noisy_pair", clean=clean, out_dtype=out_dtype)
    levels = (FIXED, RANGES) if (clean_dtype, out_dtype) == (torch.float32, torch.float32) else (FIXED,)
    for model, table in itertools.product(MODELS, levels):
        noise = model(*table[model.__name__])
        with dry_run.recording() as made:
            pair = n2n_fast.noisy_pair(clean, noise, seed=7, step=3, index=5, out_dtype=out_dtype)
            single = n2n_fast.add_noise(clean, noise, seed=7, step=3, stream=1, out_dtype=out_dtype)
        assert _kernels(made) == ["_noisy_pair_kernel"] * 2
        assert pair[0].dtype == single.dtype == out_dtype and made[0].dtypes[:3] == (str(clean_dtype),) + (
            str(out_dtype),) * 2


@pytest.mark.parametrize("pred_dtype", _accepted("n2n_loss", "pred"), ids=str)
def test_n2n_loss_every_kind_model_and_pred_dtype(dry_run, pred_dtype):
    """The fused objective: the case that failed to compile for bf16/fp16 pred (grad retyped inside a branch)."""
    clean = _sample(torch.float32)
    _check_served_by_triton("n2n_loss", pred=clean.to(pred_dtype), clean=clean)
    for kind, model in itertools.product(LOSS_KINDS, MODELS):
        pred = _sample(pred_dtype).requires_grad_()
        noise = model(*FIXED[model.__name__])
        with dry_run.recording() as made:
            n2n_fast.n2n_loss(pred, clean, noise, seed=3, step=1, kind=kind, **KIND_ARGS[kind]).backward()
        assert _kernels(made) == ["_n2n_loss_kernel"] + _backward_kernels(pred_dtype), (kind, model)
        assert made[0].dtypes[:2] == (str(pred_dtype), "torch.float32")


@pytest.mark.parametrize("clean_dtype", _accepted("n2n_loss", "clean"), ids=str)
def test_n2n_loss_every_clean_dtype_layout_mask_and_reduction(dry_run, clean_dtype):
    clean = _sample(clean_dtype)
    mask = torch.rand(SHAPE[0], 1, *SHAPE[2:]) > 0.5
    for layout, (masked, reduction) in itertools.product(
            (torch.contiguous_format, torch.channels_last), ((None, "mean"), (mask, "sum"), (None, "none"))):
        pred = _sample(torch.bfloat16).contiguous(memory_format=layout).requires_grad_()
        with dry_run.recording() as made:
            value = n2n_fast.n2n_loss(pred, clean, n2n_fast.Gaussian((0.0, 0.2)), seed=3, step=1, mask=masked,
                                      reduction=reduction)
            value.backward(torch.ones_like(value))
        assert made[0].kernel == "_n2n_loss_kernel" and made[0].dtypes[1] == str(clean_dtype)


def test_philox_words(dry_run):
    counters = torch.randint(0, 2**31 - 1, (37, 4), dtype=torch.int32)
    _check_served_by_triton("philox", counters=counters)
    with dry_run.recording() as made:
        _backend.choose("philox", "cpu", counters=counters)[1](counters, 11)
    assert _kernels(made) == ["_philox_words_kernel"]


@pytest.mark.parametrize("arch", [90, 80])
@pytest.mark.parametrize("dtype", _accepted("training_crops", "flat"), ids=str)
def test_training_crops_every_image_dtype(dry_run, dtype, arch):
    flat = _sample(dtype, (3 * 20 * 24,)).reshape(-1)
    tables = (torch.tensor([0]), torch.tensor([20]), torch.tensor([24]), torch.tensor([1 / 255]))
    _check_served_by_triton("training_crops", flat=flat)
    fused = _backend.choose("training_crops", "cpu", flat=flat)[1]
    for crop, step in ((1, 5), (16, torch.tensor(3)), (17, 2**32 - 1)):
        with dry_run.target(arch), dry_run.recording() as made:
            out = fused(flat, *tables, 2**63 + 9, step, 2**32 - 1, 4, 0, 3, crop)
        assert _kernels(made) == ["_training_crops_kernel"] and made[0].arch == arch
        assert out.shape == (4, 3, crop, crop)


@pytest.mark.parametrize("arch", [90, 80])
@pytest.mark.parametrize("dtype", _accepted("volume_crops", "flat"), ids=str)
def test_volume_crops_every_image_dtype(dry_run, dtype, arch):
    """The crops kernel's VOLUMES specialisations: two volumes, crops of one slice and of several (odd sizes)."""
    flat = _sample(dtype, (3 * (5 * 20 * 24 + 2 * 19 * 21),)).reshape(-1)
    tables = (torch.tensor([0, 3 * 5 * 20 * 24]), torch.tensor([5, 2]), torch.tensor([20, 19]), torch.tensor([24, 21]),
              torch.tensor([1 / 255, 1 / 255]))
    _check_served_by_triton("volume_crops", flat=flat)
    fused = _backend.choose("volume_crops", "cpu", flat=flat)[1]
    for crop, step in (((1, 1, 1), 5), ((2, 16, 16), torch.tensor(3)), ((1, 17, 17), 2**32 - 1)):
        with dry_run.target(arch), dry_run.recording() as made:
            out = fused(flat, *tables, 2**63 + 9, step, 2**32 - 1, 4, (0, 3), 3, crop)
        assert _kernels(made) == ["_training_crops_kernel"] and made[0].arch == arch
        assert made[0].scalars[-1] is True and out.shape == (4, 3, *crop)  # VOLUMES


# ---------------------------------------------------------------- representative cases for sm_80

def test_representative_cases_for_sm80(dry_run):
    clean = _sample(torch.uint8)
    with dry_run.target(80), dry_run.recording() as made:
        for model in MODELS:
            noise = model(*FIXED[model.__name__])
            n2n_fast.noisy_pair(clean, noise, seed=1, out_dtype=torch.bfloat16)
            pred = _sample(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
            n2n_fast.n2n_loss(pred, clean, noise, seed=1, step=0).backward()
        pred = _sample(torch.bfloat16).requires_grad_()
        n2n_fast.l2_loss(pred, _sample(torch.float32), mask=torch.rand(SHAPE) > 0.5).backward()
    assert {launch.arch for launch in made} == {80}
    assert {"_noisy_pair_kernel", "_n2n_loss_kernel", "_loss_kernel", "_scale_grad_kernel"} <= set(_kernels(made))


# ---------------------------------------------------------------- train() in every mode, defaults and bf16

TRAIN_MODES = ([(f"n2n-{model.__name__}-l2", dict(noise=model(*RANGES[model.__name__]))) for model in MODELS]
               + [(f"n2n-Gaussian-{loss}", dict(noise=n2n_fast.Gaussian((0.0, 0.2)), loss=loss))
                  for loss in LOSS_KINDS[1:]]
               + [("n2c", dict(noise=n2n_fast.Gaussian(0.1), targets="clean")), ("pairs", {}),
                  ("neighbor", dict(targets="neighbor"))])
# the Triton kernels each mode must launch at every step (the network itself runs on the CPU here), besides the
# backward's (_backward_kernels)
TRAIN_KERNELS = {"n2n": {"_training_crops_kernel", "_noisy_pair_kernel", "_n2n_loss_kernel"},
                 "n2c": {"_training_crops_kernel", "_noisy_pair_kernel", "_loss_kernel"},
                 "pairs": {"_training_crops_kernel", "_loss_kernel"},
                 "neighbor": {"_training_crops_kernel", "_philox_words_kernel", "_loss_kernel"}}
TRAIN_LOSS_KERNEL = {"n2n": "_n2n_loss_kernel", "n2c": "_loss_kernel", "pairs": "_loss_kernel",
                     "neighbor": "_loss_kernel"}


@pytest.mark.parametrize("precision", ["auto", "bfloat16"])
@pytest.mark.parametrize("mode,kwargs", TRAIN_MODES, ids=[name for name, _ in TRAIN_MODES])
def test_train_every_mode(dry_run, tmp_path, mode, kwargs, precision):
    from n2n_fast.training.step import autocast_dtype as _autocast_dtype

    images = [torch.randint(0, 256, (40, 44, 3), dtype=torch.uint8).numpy() for _ in range(3)]
    source = dict(pairs=(images, [i[::-1].copy() for i in images])) if mode == "pairs" else dict(data=images)
    # the defaults (the normalisation map on) with precision="auto"; the bf16 runs without the map, so bf16 pred
    # reaches the loss kernels (the map's output is float32: docs/normalisation.md)
    normalisation = None if precision == "bfloat16" else "auto"
    with dry_run.recording() as made:
        n2n_fast.train(**source, **kwargs, steps=2, batch_size=2, crop=16, features=8, precision=precision,
                       out_dir=tmp_path, progress=False, plot=False, log_every=1, normalisation=normalisation)
    family = mode.split("-")[0]
    assert TRAIN_KERNELS[family] <= set(_kernels(made)), f"{family}: launched {sorted(set(_kernels(made)))}"
    # what ran is what `precision` asks for: bf16 pred under autocast reaches the loss kernel
    amp = _autocast_dtype(precision, torch.device("cpu"))
    pred_dtypes = {launch.dtypes[0] for launch in made if launch.kernel == TRAIN_LOSS_KERNEL[family]}
    assert pred_dtypes == {str(torch.float32 if normalisation else amp or torch.float32)}
    backward = set(_backward_kernels(pred_dtypes.pop()))
    assert backward == set(_kernels(made)) & {"_scale_grad_kernel"}
    # the dispatch and `n2n-fast info` say Triton serves, as it did
    rows = _backend.table("cpu")
    for op in ("noisy_pair", "loss", "n2n_loss", "philox"):
        assert next(name for name, why, _ in rows[op] if why is None) == "triton"


REPEAT_MODES = {"n2n": dict(noise=n2n_fast.Gaussian((0.0, 0.2))),
                "n2n-l0": dict(noise=n2n_fast.Impulse(0.2), loss="l0"),  # the annealed exponent: on the device
                "neighbor": dict(targets="neighbor", noise=n2n_fast.Gaussian(0.1))}  # the regulariser's weight too


@pytest.mark.parametrize("mode", sorted(REPEAT_MODES))
def test_train_steps_repeat_their_launches(dry_run, tmp_path, mode):
    """Launches per step, recorded for the graph-captured step: the same kernels, grids and argument types at every
    step, in each mode graph_step.py captures (a step-dependent Python number among the arguments, as the step, the
    L0 exponent and the Neighbor2Neighbor weight once were, would be frozen by a replayed graph)."""
    images = [torch.randint(0, 256, (40, 44, 3), dtype=torch.uint8).numpy() for _ in range(3)]
    made = {}
    for steps in (1, 4):
        with dry_run.recording() as made[steps]:
            n2n_fast.train(data=images, **REPEAT_MODES[mode], steps=steps, batch_size=2, crop=16, features=8,
                           out_dir=tmp_path / str(steps), progress=False, plot=False, log_every=100)
    per_step = (len(made[4]) - len(made[1])) // 3
    assert per_step >= 3 and len(made[4]) - len(made[1]) == 3 * per_step  # crops, noise, loss at least
    last = made[4][-3 * per_step:]
    # kernels, grids, dtypes and every scalar argument: the step travels in device memory (train() reads the
    # device-step path on every device), so a CUDA graph captured once replays these launches unchanged
    assert last[:per_step] == last[per_step:2 * per_step] == last[2 * per_step:]
    assert all(launch.scalars[-1] is True for launch in last if launch.kernel in ("_noisy_pair_kernel",
                                                                                 "_n2n_loss_kernel"))


def _count_step_launches(dry_run, monkeypatch, check=None):
    """Patches training.step so that every train_step and step_body call adds the Triton launches it makes to
    counts["step"] / counts["body"] (returned). check(run, number), when given, runs before each step and returns
    the context the step runs in."""
    import importlib

    step_module = importlib.import_module("n2n_fast.training.step")
    real_step, real_body = step_module.train_step, step_module.step_body
    counts = {"step": 0, "body": 0}

    def body(run, step):
        before = len(dry_run.LAUNCHES)
        loss = real_body(run, step)
        counts["body"] += len(dry_run.LAUNCHES) - before
        return loss

    def step(run, number):
        context = contextlib.nullcontext() if check is None else check(run, number)
        before = len(dry_run.LAUNCHES)
        with context:
            loss = real_step(run, number)
        counts["step"] += len(dry_run.LAUNCHES) - before
        return loss

    monkeypatch.setattr(step_module, "step_body", body)
    monkeypatch.setattr(step_module, "train_step", step)
    return counts


def test_every_triton_launch_of_a_step_is_inside_the_captured_body(dry_run, tmp_path, monkeypatch):
    """graph_step.py captures train.step_body: every Triton launch train_step makes must happen inside it (a launch
    in train_step around it would run once at capture and never again on replay), in each captured mode."""
    counts = _count_step_launches(dry_run, monkeypatch)
    images = [torch.randint(0, 256, (40, 44, 3), dtype=torch.uint8).numpy() for _ in range(3)]
    for mode, kwargs in REPEAT_MODES.items():
        n2n_fast.train(data=images, **kwargs, steps=3, batch_size=2, crop=16, features=8, out_dir=tmp_path / mode,
                       progress=False, plot=False, log_every=100)
    assert counts["step"] >= 3 * 3 * 3 and counts["step"] == counts["body"], counts  # crops, noise, loss at least


SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "item")


class SyncDetector(torch.utils._python_dispatch.TorchDispatchMode):
    """Fails on every op that makes the host wait for the device: .item(), bool(tensor), .tolist() (all
    _local_scalar_dense), nonzero, masked_select, unique, and indexing with a boolean mask. Keeps the names of the
    ops it saw, so a test can show what it watched."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.seen.add(name)
        bool_index = name in ("index", "index_put_", "index_put") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ())
            if i is not None)
        if name in SYNCING_OPS or bool_index:
            raise AssertionError(f"host sync inside the training step: aten.{name}")
        return func(*args, **(kwargs or {}))


def test_sync_detector_catches_a_sync():
    with pytest.raises(AssertionError, match="aten._local_scalar_dense"), SyncDetector():
        torch.ones(2).sum().item()
    with pytest.raises(AssertionError, match="aten.index"), SyncDetector():
        torch.arange(3)[torch.tensor([True, False, True])]


@pytest.mark.parametrize("mode,kwargs", [TRAIN_MODES[0], TRAIN_MODES[5], TRAIN_MODES[6], TRAIN_MODES[-3],
                                         TRAIN_MODES[-2], TRAIN_MODES[-1]],
                         ids=["n2n", "n2n-l1", "n2n-l0", "n2c", "pairs", "neighbor"])
def test_train_step_makes_no_host_sync(dry_run, tmp_path, monkeypatch, mode, kwargs):
    """Every step after the first runs under the sync detector (the first builds caches: dispatch, compiles).
    The detector wraps the module-level train_step the loop calls: the test requires that it watched steps 1 and
    2, each with the network's convolutions and the optimizer's update inside, so a loop that stopped calling it
    would fail here rather than pass unwatched."""
    import importlib

    train_module = importlib.import_module("n2n_fast.training.step")
    real_step = train_module.train_step
    watched_ops = {}

    def watched(run, step):
        if step == 0:
            return real_step(run, step)
        with SyncDetector() as detector:
            loss = real_step(run, step)
        watched_ops[step] = detector.seen
        return loss

    monkeypatch.setattr(train_module, "train_step", watched)
    images = [torch.randint(0, 256, (40, 44, 3), dtype=torch.uint8).numpy() for _ in range(3)]
    source = dict(pairs=(images, [i[::-1].copy() for i in images])) if mode == "pairs" else dict(data=images)
    n2n_fast.train(**source, **kwargs, steps=3, batch_size=2, crop=16, features=8, out_dir=tmp_path,
                   progress=False, plot=False, log_every=100)
    assert sorted(watched_ops) == [1, 2]
    for step, seen in watched_ops.items():
        assert {"convolution", "convolution_backward", "_fused_adam_"} <= seen, (step, sorted(seen))


class OpRecorder(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the aten ops run inside the block: on a GPU each fill or copy is a launch of its own."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("op", ["l2_loss", "n2n_loss", "l2_loss none", "noisy_pair"])
def test_public_ops_fill_nothing_they_then_overwrite(dry_run, op):
    """The reduced losses' 0-d outputs are written by the loss kernel's last program, not filled first, and so is
    reduction "none"'s scale of 1; the noisy pair fills nothing. Forward and backward."""
    clean = _sample(torch.float32)
    noise = n2n_fast.Gaussian(0.1)
    pred = _sample(torch.float32).requires_grad_()
    one = torch.ones(())  # autograd's implicit grad_output would be a ones_like of its own
    run = {"l2_loss": lambda: n2n_fast.l2_loss(pred, clean).backward(one),
           "n2n_loss": lambda: n2n_fast.n2n_loss(pred, clean, noise, seed=1, step=2).backward(one),
           "l2_loss none": lambda: n2n_fast.l2_loss(pred, clean, reduction="none").backward(clean),
           "noisy_pair": lambda: n2n_fast.noisy_pair(clean, noise, seed=1, step=2, check_finite=False)}[op]
    run()  # compiles
    with dry_run.quiet(), OpRecorder() as seen:  # quiet: the harness zeroes nothing
        run()
    fills = [name for name in seen.names if name in ("fill_", "ones", "ones_like", "full", "zeros", "zero_", "copy_")]
    assert not fills, f"{op}: {fills} (all ops: {seen.names})"


# ---------------------------------------------------------------- what ptxas says of every specialisation compiled

def test_every_compiled_specialisation_spills_nothing(dry_run):
    """Runs last in this file: ptxas -v on the PTX of every kernel the cases above compiled (real figures; the
    stub's are fake)."""
    from aot import ptxas_report

    compiled = dry_run.compiled_kernels()
    assert len(compiled) >= 40, f"only {len(compiled)} specialisations compiled: did the cases above run?"
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # ptxas runs as a subprocess
        reports = list(pool.map(lambda found: ptxas_report(found[2].asm["ptx"], found[1]), compiled))
    spilling = [f"{name} sm_{arch} {dict(kernel.src.signature)} {kernel.src.constants}: {report.spill_stores} B "
                f"stores, {report.spill_loads} B loads" for (name, arch, kernel), report in zip(compiled, reports)
                if report.spill_stores or report.spill_loads]
    assert not spilling, "\n".join(spilling)


TRAIN3D_MODES = [("n2n", dict(noise=n2n_fast.Gaussian((0.0, 0.2)))), ("n2n", dict(noise=n2n_fast.Poisson(30.0))),
                 ("n2c", dict(noise=n2n_fast.Gaussian(0.1), targets="clean", loss="l1")), ("pairs", {})]
# the Triton launches of one float32 3-D step (the network runs on the CPU here): the crops (one launch per
# realisation, VOLUMES), then noise and loss as for images (the loss reduces in its one launch; a float32
# gradient is scaled by PyTorch); pairs draw the realisation pairs with one philox launch
TRAIN3D_LAUNCHES = {"n2n": {"_training_crops_kernel": 1, "_noisy_pair_kernel": 1, "_n2n_loss_kernel": 1},
                    "n2c": {"_training_crops_kernel": 1, "_noisy_pair_kernel": 1, "_loss_kernel": 1},
                    "pairs": {"_training_crops_kernel": 2, "_philox_words_kernel": 1, "_loss_kernel": 1}}


def _volume_source(mode):
    volume = torch.randint(0, 256, (6, 20, 20), dtype=torch.uint8).numpy()
    return dict(pairs=(volume, volume[:, ::-1].copy())) if mode == "pairs" else dict(data=volume)


@pytest.mark.parametrize("mode,kwargs", TRAIN3D_MODES, ids=["n2n-gaussian", "n2n-poisson", "n2c-l1", "pairs"])
def test_train_volumes_every_mode(dry_run, tmp_path, mode, kwargs):
    """train(dims=3): 5-D batches through the Triton noise and loss kernels (Triton's real binder and typing
    rules), the crops cut on the device by the crops kernel's VOLUMES specialisation."""
    with dry_run.recording() as made:
        n2n_fast.train(**_volume_source(mode), **kwargs, axes="ZYX", dims=3, steps=2, batch_size=2,
                       crop=(4, 16, 16), features=4, precision="float32", out_dir=tmp_path, progress=False,
                       plot=False, log_every=1)
    kernels = set(_kernels(made))
    assert TRAIN_KERNELS[mode] <= kernels, f"{mode}: launched {sorted(kernels)}"
    crops = [launch for launch in made if launch.kernel == "_training_crops_kernel"]
    assert crops and all(launch.scalars[-1] is True and launch.grid == (1, 2, 1) for launch in crops)


@pytest.mark.parametrize("mode", sorted(TRAIN3D_LAUNCHES))
def test_volume_steps_repeat_their_launches(dry_run, tmp_path, monkeypatch, mode):
    """train(dims=3), what a CUDA graph of the 3-D step needs (graph_step.refusal accepts it): consecutive steps
    launch the same kernels, grids, dtypes and scalars (the step read from device memory by the crops, the noise and
    the loss), TRAIN3D_LAUNCHES of them; every launch of a step is inside step_body, the part a graph captures; and
    no step after the first syncs the host (SyncDetector)."""
    from n2n_fast.training import graph_step

    watched = []

    def check(run, number):
        assert graph_step.refusal(run, torch.device("cuda"), 1, False) is None
        watched.append(number)
        return SyncDetector() if number else contextlib.nullcontext()

    counts = _count_step_launches(dry_run, monkeypatch, check)
    kwargs = dict(TRAIN3D_MODES[2][1]) if mode == "n2c" else dict(TRAIN3D_MODES[0][1]) if mode == "n2n" else {}
    made = {}
    for steps in (1, 4):
        with dry_run.recording() as made[steps]:
            n2n_fast.train(**_volume_source(mode), **kwargs, axes="ZYX", dims=3, steps=steps, batch_size=2,
                           crop=(4, 16, 16), features=4, precision="float32", out_dir=tmp_path / str(steps),
                           progress=False, plot=False, log_every=100)
    per_step = sum(TRAIN3D_LAUNCHES[mode].values())
    assert len(made[4]) - len(made[1]) == 3 * per_step, (len(made[1]), len(made[4]))
    last = made[4][-3 * per_step:]
    assert last[:per_step] == last[per_step:2 * per_step] == last[2 * per_step:]
    assert {k: _kernels(last[:per_step]).count(k) for k in set(_kernels(last))} == TRAIN3D_LAUNCHES[mode]
    assert all(launch.scalars[-2:] == (True, True) for launch in last if launch.kernel == "_training_crops_kernel")
    assert watched == [0, 0, 1, 2, 3] and counts["step"] == counts["body"] == 5 * per_step, counts
