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
Proven without a GPU by the dry run (tests/test_dryrun.py: consecutive steps launch identically, no host sync in
the step); the replay itself by `pytest -m gpu` (tests/test_graph_step.py).
"""
import torch

from . import schedule


def refusal(run, device, world, compiled):
    """None when the step can be captured, else why not."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, got {device.type}"
    if world > 1:
        return "under torchrun the step runs eagerly (DistributedDataParallel's all-reduce is not captured here)"
    if compiled:
        return "compile=True: torch.compile(mode='reduce-overhead') captures graphs itself"
    if run.dims == 3:
        return "3-D crops are cut on the host for now"
    if not run.device_crops:
        return "the training images are read from disk (memmaps), so crops are cut on the host"
    return None


def _snapshot(run):
    """Copies of the weights and of Adam's state before the warm-up."""
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


class GraphedStep:
    """`step(index_of_step)` -> the loss (0-d device tensor): one replay of the captured step."""

    def __init__(self, run, first_step, body):
        """body(run, step) -> loss: the step without its learning-rate update (train.step_body)."""
        self.run = run
        device = run.step_t.device
        self.rates = schedule.learning_rates(run.steps, run.lr, run.rampdown, device)
        self.lr = self.rates[first_step].clone()
        for group in run.optimizer.param_groups:
            group["lr"], group["capturable"] = self.lr, True
        captured = body

        def body(run, step):  # the rate of the device step, gathered inside the graph
            torch.index_select(self.rates, 0, run.step_t.view(1), out=self.lr.view(1))
            return captured(run, step)

        saved = _snapshot(run)
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

    def __call__(self, step):
        self.run.step_t.fill_(step)
        self.graph.replay()
        return self.loss.detach()
