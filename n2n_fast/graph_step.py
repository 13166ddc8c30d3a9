"""The training step captured once as a CUDA graph and replayed at every step: train(graph="auto" | True | False).

At the paper's batch the U-Net's own GPU work is a few milliseconds, so the host work between launches (Python,
dispatch, Triton's binder, about 80 launches with autocast's casts) decides images/s. A replayed graph launches
the whole step (crop gather, noise, forward, fused loss, backward, Adam) with one call. What capture requires and
how it is met:
- what changes per step is read from device memory, set by a copy before each replay: the step (`run.step_t`,
  read by the noise kernels and the on-device crop picks, n2n_fast/device_crops.py) and the learning rate (a 0-d
  tensor that fused, capturable Adam reads);
- gradients exist before capture and are zeroed in place inside the graph (`zero_grad(set_to_none=False)`), so
  backward writes into the same buffers at every replay;
- autocast runs with `cache_enabled=False` (train() sets it for every step: a cached cast would be freed memory
  when the graph replays);
- two warm-up steps run on a side stream first (cuDNN and cuBLAS workspaces, Triton compiles, the dispatch cache);
  their effect on the weights and Adam's moments is undone, so a graphed run follows the eager trajectory.
Refused, with the reason (`refusal`), where a value the step needs is a host number a graph would freeze, or where
another mechanism owns the step: DistributedDataParallel (torchrun), torch.compile (use mode="reduce-overhead"),
the annealed L0 loss (gamma), Neighbor2Neighbor (the regulariser's weight), data read from disk (memmaps).
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
    if run.loss == "l0":
        return "the L0 loss's annealed gamma is a host number a graph would freeze"
    if run.objective.__name__ == "_neighbor2neighbor":
        return "Neighbor2Neighbor's regulariser weight is a host number a graph would freeze"
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
        self.lr = torch.full((), schedule.learning_rate(first_step, run.steps, run.lr, run.rampdown),
                             dtype=torch.float32, device=device)
        for group in run.optimizer.param_groups:
            group["lr"], group["capturable"] = self.lr, True
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
        self.lr.fill_(schedule.learning_rate(step, self.run.steps, self.run.lr, self.run.rampdown))
        self.run.step_t.fill_(step)
        self.graph.replay()
        return self.loss.detach()
