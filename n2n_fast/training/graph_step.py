"""The training step captured once as a CUDA graph and replayed at every step: train(graph="auto" | True | False).

At the paper's batch the U-Net's own GPU work is a few milliseconds, so the host work between launches (Python,
dispatch, Triton's binder, about 80 launches with autocast's casts) decides images/s. A replayed graph launches
the whole step (crop gather, noise, forward, fused loss, backward, Adam) with one call. What capture requires and
how it is met:
- what changes per step is computed on the device from the step (`run.step_t`, the one value written before each
  replay): the noise kernels and the on-device crop picks read it (n2n_fast/crops.py), the L0 exponent and
  the Neighbor2Neighbor weight are computed from it (n2n_fast/training/schedule.py), and the learning rate is gathered
  from a per-step table into the 0-d tensor that fused, capturable Adam reads;
- gradients exist before capture and are zeroed in place inside the graph (`zero_grad(set_to_none=False)`), so
  backward writes into the same buffers at every replay;
- autocast runs with `cache_enabled=False` (train() sets it for every step: a cached cast would be freed memory
  when the graph replays);
- two warm-up steps run on a side stream first (cuDNN and cuBLAS workspaces, Triton compiles, the dispatch cache);
  their effect on the weights and Adam's moments is undone, so a graphed run follows the eager trajectory.
Refused, with the reason (`refusal`), where another mechanism owns the step or the host must do part of it:
DistributedDataParallel (torchrun), torch.compile (use mode="reduce-overhead"), data read from disk (memmaps:
crops are cut on the host).
The graph proves itself before it is trusted: the first replay is checked against the same step run eagerly from
the same weights and Adam state (`GraphedStep.prove`, before the first step: the loss and the weight update must agree
within bf16 rounding). Where the warm-up, the capture or that first replay fails, or they disagree, `GraphFailed` says
why, the weights and Adam's state are put back as they were before the graph, and train() continues eagerly with a
warning (graph="auto") or raises (graph=True): n2n_fast/training/step.py, capture.
Proven without a GPU by the dry run (tests/test_dryrun.py: consecutive steps launch identically, no host sync in
the step; tests/training/test_graph_fallback.py: planted capture and replay failures fall back or raise); the replay
itself by `pytest -m gpu` (tests/training/test_graph_step.py, tests/training/test_graph_fallback.py).
"""
import torch

from . import schedule

# The first replay against the same step run eagerly: bf16 autocast rounds the loss to about 2^-7 relative (the
# tests' bf16 tolerance, tests/tolerance.py); Adam's first update is about lr * sign(gradient), so an element whose
# gradient is near zero may flip sign between two cuDNN reductions: a few such elements move the update's norm by a
# few percent. A graph that replays something else (a frozen step, stale buffers, a missed update) is off by ~1.
LOSS_RTOL = 1.6e-2
UPDATE_RTOL = 0.25


class GraphFailed(RuntimeError):
    """The step could not be captured or its first replay could not be trusted; the message says why."""


def refusal(run, device, world, compiled):
    """None when the step can be captured, else why not."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, got {device.type}"
    if world > 1:
        return "under torchrun the step runs eagerly (DistributedDataParallel's all-reduce is not captured here)"
    if compiled:
        return "compile=True: torch.compile(mode='reduce-overhead') captures graphs itself"
    if not run.device_crops:
        return (f"the training {'volumes' if run.dims == 3 else 'images'} are read from disk (memmaps), so crops "
                "are cut on the host")
    return None


def _snapshot(run):
    """Copies of the weights and of Adam's state (before the warm-up; before the first replay)."""
    weights = [p.detach().clone() for p in run.net.parameters()]
    moments = {id(p): {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
               for p, state in run.optimizer.state.items()}
    return weights, moments


def _restore(run, saved):
    """Undo the warm-up in place, so the graphed run follows the eager trajectory. In place: the tensors must stay
    the ones the graph will capture, and Adam's state must exist before capture (initialising it inside the graph
    would zero the moments at every replay); state the warm-up created starts from zero, as Adam's own does."""
    weights, moments = saved
    with torch.no_grad():
        for param, value in zip(run.net.parameters(), weights):
            param.copy_(value)
        for param, state in run.optimizer.state.items():
            before = moments.get(id(param), {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and key in before:
                    value.copy_(before[key])
                elif isinstance(value, torch.Tensor):
                    value.zero_()


def _disagreement(loss, eager_loss, before, after, eager_after):
    """None when a replayed step (loss, weights `after`) matches the eager one, else what differs."""
    loss, eager_loss = float(loss), float(eager_loss)  # one host sync, once per run
    if not abs(loss - eager_loss) <= LOSS_RTOL * abs(eager_loss) + 1e-12:  # NaN disagrees
        return f"its loss {loss:.6g} differs from the eager step's {eager_loss:.6g}"
    squares = torch.stack([torch.stack([torch.sum((a.float() - e.float()) ** 2),
                                        torch.sum((e.float() - b.float()) ** 2)])
                           for a, e, b in zip(after, eager_after, before)]).sum(0)
    difference, update = (float(v) for v in squares.sqrt().cpu())  # one more sync
    if not difference <= UPDATE_RTOL * update:
        return (f"its weight update differs from the eager step's by {difference:.3g} (L2 norm; the eager update's "
                f"norm is {update:.3g})")
    return None


class GraphedStep:
    """`step(index_of_step)` -> the loss (0-d device tensor): one replay of the captured step. `prove` checks the
    first replay against the eager step; `release` hands the step back to eager execution."""

    def __init__(self, run, first_step, body):
        """body(run, step) -> loss: the step without its learning-rate update (step.step_body). Raises GraphFailed
        (the weights, Adam's state and its settings back as they were) where the warm-up or the capture fails."""
        self.run, self.proven = run, False
        device = run.step_t.device
        self.rates = schedule.learning_rates(run.steps, run.lr, run.rampdown, device)
        self.lr = self.rates[first_step].clone()
        self._groups = [(group["lr"], group.get("capturable", False)) for group in run.optimizer.param_groups]
        self._had_state = set(run.optimizer.state)
        saved = _snapshot(run)
        for group in run.optimizer.param_groups:
            group["lr"], group["capturable"] = self.lr, True
        captured = body

        def body(run, step):  # the rate of the device step, gathered inside the graph
            torch.index_select(self.rates, 0, run.step_t.view(1), out=self.lr.view(1))
            return captured(run, step)

        self.body = body
        try:
            run.step_t.fill_(first_step)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    body(run, first_step)
            torch.cuda.current_stream(device).wait_stream(side)
            _restore(run, saved)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = body(run, first_step)
        except Exception as error:
            self.release(saved)
            raise GraphFailed(f"capturing the step failed ({type(error).__name__}: {error})") from error

    def __call__(self, step):
        self.run.step_t.fill_(step)
        self.graph.replay()
        return self.loss.detach()

    def prove(self, step):
        """The first replay, proven before the loop needs it: the step is run eagerly, the weights and Adam's state
        are put back, the graph replays the same step, the two must agree (LOSS_RTOL, UPDATE_RTOL), and the state is
        put back again, so the proof leaves no trace on the run. Raises GraphFailed (the state back as it was
        before the graph) where the replay fails or disagrees. Costs two steps, one copy of the weights and
        moments and one host sync, once per run, before the first step (the steps themselves never sync)."""
        run = self.run
        saved = _snapshot(run)
        try:
            run.step_t.fill_(step)
            eager_loss = self.body(run, step).detach().clone()
            eager_after = [p.detach().clone() for p in run.net.parameters()]
            _restore(run, saved)
            loss = self(step)
            why = _disagreement(loss, eager_loss, saved[0], [p.detach() for p in run.net.parameters()], eager_after)
        except Exception as error:
            self.release(saved)
            raise GraphFailed(f"the first replay failed ({type(error).__name__}: {error})") from error
        if why is not None:
            self.release(saved)
            raise GraphFailed(f"the first replay disagrees with the same step run eagerly: {why}")
        _restore(run, saved)
        self.proven = True

    def release(self, saved):
        """Back to eager execution from the state `saved` (_snapshot): the weights and the moments as they were,
        Adam's state where it had none before the graph removed, its learning rates and settings as before."""
        run = self.run
        _restore(run, saved)
        for param in [p for p in run.optimizer.state if p not in self._had_state]:
            del run.optimizer.state[param]
        for group, (lr, capturable) in zip(run.optimizer.param_groups, self._groups):
            group["lr"], group["capturable"] = lr, capturable
        self.graph = None
