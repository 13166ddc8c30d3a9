"""train(graph=...) where the CUDA graph fails (n2n_fast/training/graph_step.py): graph="auto" warns with the reason
and continues eagerly, on exactly the eager trajectory; graph=True raises. The failures are planted on the CPU: the
capture is allowed there (graph_step.refusal answers None) and torch.cuda's stream and graph calls are replaced by
stand-ins that fail where a GPU can (the capture; the first replay) or replay nothing (a graph whose replay cannot
be trusted, which the first-replay proof must catch). Each case runs twice: on the plain CPU (reference and C++
ops, values real, so the fallback is checked bitwise against graph=False) and through the GPU dry run (Triton's
real compiler and launcher serving the step; pytest -m dryrun). On a GPU (pytest -m gpu): two graphed runs agree
bitwise, and graphed against eager within the bf16 tolerance."""
import contextlib
import importlib
import warnings

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast.training import graph_step

step_module = importlib.import_module("n2n_fast.training.step")
IMAGES = [np.random.default_rng(1).integers(0, 256, (40, 44, 3), dtype=np.uint8) for _ in range(2)]
TINY = dict(data=IMAGES, noise=n2n_fast.Gaussian((0.0, 0.2)), steps=4, batch_size=2, crop=32, features=8,
            progress=False, plot=False, log_every=1, precision="float32")
WHERE = [pytest.param("cpu", id="cpu"), pytest.param("dryrun", id="dryrun", marks=pytest.mark.dryrun)]
PLANTED = {  # what fails -> the reason the warning / error must give
    "capture": "capturing the step failed (RuntimeError: planted: operation not permitted when stream is capturing)",
    "replay": "the first replay failed (RuntimeError: planted: an illegal memory access was encountered)",
    "no-op replay": "the first replay disagrees with the same step run eagerly: its weight update differs",
}


class _Stream:
    def wait_stream(self, other):
        pass


_RUN = {}  # the Run being captured (the stand-in capture needs it)


class _Graph:
    """A CUDA graph stand-in: its capture runs the body eagerly and then undoes it (a real capture computes
    nothing), and its replay does nothing, or fails, as planted."""
    planted = None

    def replay(self):
        if self.planted == "replay":
            raise RuntimeError("planted: an illegal memory access was encountered")


@contextlib.contextmanager
def _capturing(graph):
    if graph.planted == "capture":
        raise RuntimeError("planted: operation not permitted when stream is capturing")
    saved = graph_step._snapshot(_RUN["run"])
    yield
    graph_step._restore(_RUN["run"], saved)


def _plant(monkeypatch, what):
    monkeypatch.setattr(graph_step, "refusal", lambda *args: None)
    monkeypatch.setattr(_Graph, "planted", what)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _Stream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _Graph)
    monkeypatch.setattr(torch.cuda, "graph", _capturing)
    real_body = step_module.step_body

    def body(run, step):
        _RUN["run"] = run
        return real_body(run, step)

    monkeypatch.setattr(step_module, "step_body", body)


@pytest.fixture
def where(request):
    if request.param == "dryrun":
        import dryrun

        dryrun.install()
    return request.param


def _skip_what_the_dry_run_cannot_see(where, what):
    if where == "dryrun" and what == "no-op replay":
        pytest.skip("no kernel computes in the dry run: a replay that computes nothing looks like one that does")


def _weights(result):
    return [p.detach().clone() for p in result.model.parameters()]


@pytest.mark.parametrize("where", WHERE, indirect=True)
@pytest.mark.parametrize("what", sorted(PLANTED))
def test_graph_auto_warns_why_and_trains_eagerly_where_the_graph_fails(tmp_path, monkeypatch, where, what):
    _skip_what_the_dry_run_cannot_see(where, what)
    eager = n2n_fast.train(out_dir=tmp_path / "eager", device="cpu", graph=False, **TINY)
    _plant(monkeypatch, what)
    launches = contextlib.nullcontext([])
    if where == "dryrun":
        import dryrun

        launches = dryrun.recording()
    with pytest.warns(RuntimeWarning, match=r"graph='auto': ") as caught, launches as made:
        fallen = n2n_fast.train(out_dir=tmp_path / "auto", device="cpu", graph="auto", **TINY)
    if where == "dryrun":  # Triton served every eager step after the fallback
        assert sum(launch.kernel == "_n2n_loss_kernel" for launch in made) >= TINY["steps"]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and PLANTED[what] in messages[0], messages
    assert "runs eagerly instead" in messages[0]
    assert [row["step"] for row in fallen.history] == [1, 2, 3, 4]
    if where == "cpu":  # the fallback follows the eager trajectory exactly: the warm-up and the proof left no trace
        assert [row["loss"] for row in fallen.history] == [row["loss"] for row in eager.history]
        for a, b in zip(_weights(fallen), _weights(eager)):
            assert torch.equal(a, b)
        saved = torch.load(fallen.checkpoint, weights_only=False)
        reference = torch.load(eager.checkpoint, weights_only=False)
        for key, state in reference["optimizer"]["state"].items():
            for name, value in state.items():
                assert torch.equal(saved["optimizer"]["state"][key][name], value), (key, name)
        assert [g["lr"] for g in saved["optimizer"]["param_groups"]] == \
            [g["lr"] for g in reference["optimizer"]["param_groups"]]


@pytest.mark.parametrize("where", WHERE, indirect=True)
@pytest.mark.parametrize("what", sorted(PLANTED))
def test_graph_true_raises_where_the_graph_fails(tmp_path, monkeypatch, where, what):
    _skip_what_the_dry_run_cannot_see(where, what)
    _plant(monkeypatch, what)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning: graph=True never falls back
        with pytest.raises(RuntimeError, match="graph=True: ") as raised:
            n2n_fast.train(out_dir=tmp_path / "strict", device="cpu", graph=True, **TINY)
    assert PLANTED[what] in str(raised.value)
    assert isinstance(raised.value.__cause__, graph_step.GraphFailed)


def test_a_proven_graph_is_kept(tmp_path, monkeypatch):
    """A replay that does what the eager step does passes the first-replay proof and serves every step."""
    _plant(monkeypatch, None)
    replays = []

    def replay_eagerly(self):  # the stand-in graph re-runs the step's body: what a faithful graph computes
        replays.append(1)
        run = _RUN["run"]
        run.graphed.loss.copy_(run.graphed.body(run, int(run.step_t)))

    monkeypatch.setattr(_Graph, "replay", replay_eagerly)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = n2n_fast.train(out_dir=tmp_path / "kept", device="cpu", graph=True, **TINY)
    assert len(replays) == TINY["steps"] + 1 and _RUN["run"].graphed.proven  # + 1: the proof
    assert np.isfinite([row["loss"] for row in result.history]).all()


# ---------------------------------------------------------------- on a GPU: the real graph proves itself
GPU_RUN = dict(TINY, steps=6, precision="auto")


@pytest.mark.gpu
def test_two_graphed_runs_give_bitwise_equal_weights(tmp_path):
    """The replayed graph is deterministic: the same run twice gives the same weights bit for bit (cuDNN's
    deterministic algorithms; the fused loss and noise kernels reduce in a fixed order)."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback: the graph proved itself
        first = n2n_fast.train(out_dir=tmp_path / "a", graph=True, **GPU_RUN)
        second = n2n_fast.train(out_dir=tmp_path / "b", graph=True, **GPU_RUN)
    for a, b in zip(_weights(first), _weights(second)):
        assert torch.equal(a, b)
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]


@pytest.mark.gpu
def test_graphed_and_eager_runs_agree_within_the_bf16_tolerance(tmp_path):
    """Graphed against eager after 6 steps, bf16 autocast where the GPU has it: losses within the tests' bf16
    tolerance (tests/tolerance.py), weights within a few Adam updates of lr (3e-4) of each other."""
    from tolerance import ATOL, RTOL

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    graphed = n2n_fast.train(out_dir=tmp_path / "graph", graph=True, **GPU_RUN)
    eager = n2n_fast.train(out_dir=tmp_path / "eager", graph=False, **GPU_RUN)
    np.testing.assert_allclose([r["loss"] for r in graphed.history], [r["loss"] for r in eager.history],
                               rtol=RTOL[torch.bfloat16], atol=ATOL[torch.bfloat16])
    for a, b in zip(_weights(graphed), _weights(eager)):
        torch.testing.assert_close(a, b, rtol=RTOL[torch.bfloat16], atol=GPU_RUN["steps"] * 2 * 3e-4)
