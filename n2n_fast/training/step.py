"""One training step: what it reads (Run), the objective of each mode, and the step itself.

`make_run` is the one setup of a step (train() and benchmarks/bench_train.py both build theirs with it): the
precision, memory layout, optimizer and wrappers of the network. `train_step` sets the step's learning rate and
device step and runs `step_body`, the part a CUDA graph captures (n2n_fast/training/graph_step.py).
"""
import contextlib
import warnings
from dataclasses import dataclass

import torch

from .. import loss as losses
from ..crops import DeviceCrops, DeviceVolumeCrops
from ..noise import add_noise
from ..unet import UNet
from . import data as training_data
from . import graph_step, schedule, volumes
from .normalisation import loss_exponent

BETAS, EPS = (0.9, 0.99), 1e-8  # the paper's Adam settings


def autocast_dtype(precision, device):
    """bf16 where the hardware computes it natively (CUDA with bf16; CPUs with AVX512-BF16 or AMX), else None."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return torch.bfloat16
    return None


def new_network(channels, features, seed, normalisation=None, dims=2, z_pools=None):
    """The U-Net train() starts from: He initialisation drawn from `seed`, on the CPU, carrying the training data's
    map (n2n_fast/training/normalisation.py) when there is one; dims=3 with `z_pools` (docs/volumes.md §1)."""
    with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG alone
        torch.manual_seed(seed)
        return UNet(channels, features=features, normalisation=normalisation, dims=dims, z_pools=z_pools)


@dataclass
class Run:
    """Everything one training step reads: the model, its optimizer and the data, fixed before the loop."""
    net: torch.nn.Module  # the U-Net itself (checkpoints, validation, the Neighbor2Neighbor no-grad pass)
    model: torch.nn.Module  # what the step calls: net, or net wrapped by DDP / torch.compile
    optimizer: torch.optim.Optimizer
    objective: object  # one of OBJECTIVES: (run, step, index, picks, extra) -> loss tensor
    stores: list  # data.ImageStore per realisation (one unless pairs=)
    noise: object
    loss: str
    seed: int
    steps: int
    batch_size: int
    crop: int
    lr: float
    rampdown: float
    neighbor_weight: float
    rank: int
    memory_format: torch.memory_format
    autocast: object  # a context-manager factory: bf16 autocast or nothing
    amp: torch.dtype = None  # the autocast dtype, None for float32
    inv_scale: float = None  # 1 / the network's normalisation scale: losses are reported in its units; None: no map
    step_t: torch.Tensor = None  # 0-d int64 on the device: the step the kernels and the crop picks read
    one: torch.Tensor = None  # 0-d float32 1 on the device: the objective's backward seed
    device_crops: list = None  # Device(Volume)Crops per store, or None when a store is not resident (memmaps)
    graphed: object = None  # a graph_step.GraphedStep once the step is captured
    capturing: bool = False  # warming up or capturing: gradients are zeroed in place, never freed
    dims: int = 2  # 3: volume crops (depth, height, width) from volume stores (n2n_fast/training/volumes.py)

    def __post_init__(self):
        device = self.stores[0].device
        self.step_t = torch.zeros((), dtype=torch.int64, device=device)
        self.one = torch.ones((), dtype=torch.float32, device=device)  # not a ones_like (a launch) at every step
        if all(DeviceCrops.usable(store) for store in self.stores):
            key, sample = training_data.DATA_KEY, training_data.SAMPLE
            self.device_crops = [DeviceVolumeCrops(store, key, sample, volumes.DEPTH) if self.dims == 3
                                 else DeviceCrops(store, key, sample) for store in self.stores]

    def picks(self, step, index):
        """This step's crop picks: on the host when the images are not resident; on the device, what the picks are
        drawn from where they are cut (DeviceCrops.crops: one launch on Triton)."""
        if self.device_crops:
            return self.seed, self.step_t, index, self.batch_size
        if self.dims == 3:
            return volumes.draw_volume_crops(self.seed, step, index, self.batch_size, self.stores[0].sizes,
                                             self.crop)
        return training_data.draw_crops(self.seed, step, index, self.batch_size, self.stores[0].sizes, self.crop)

    def cut(self, realisation, picks):
        if self.device_crops:
            return self.device_crops[realisation].crops(*picks, self.crop)
        return self.stores[realisation].crops(picks, self.crop)

    def loss_fn(self, pred, target, **extra):
        return self.network_units(getattr(losses, f"{self.loss}_loss")(pred, target, **extra), self.loss,
                                  extra.get("gamma"))

    def network_units(self, value, kind, gamma=None):
        """A loss of data-unit predictions as the same loss in the network's normalised units: the net outputs
        y * scale + offset, so an L2 loss is scale**2 times its normalised value (L1: scale, L0: scale**gamma).
        Training on the normalised loss keeps gradients at unit scale for low-count data, where Adam's eps would
        otherwise swamp them (docs/normalisation.md)."""
        if self.inv_scale is None:
            return value
        exponent = loss_exponent(kind)
        if exponent is None:  # L0: the device gamma of this step
            return value * torch.pow(self.inv_scale, gamma)
        return value * self.inv_scale ** exponent if exponent else value

    def network_input(self, batch):
        return batch.contiguous(memory_format=self.memory_format)


def make_run(net, stores, *, mode, noise, loss, seed, steps, batch_size, crop, lr, rampdown, neighbor_weight,
             precision="auto", channels_last=None, compile=False, rank=0, world=1):
    """The Run one step reads, set up as train() sets it up: `net` moved to the stores' device in the memory layout
    the precision asks for (channels_last: None is auto, with bf16 or on CUDA; channels_last_3d for volumes), fused
    Adam with the paper's betas, DistributedDataParallel when world > 1, torch.compile when asked, bf16 autocast
    where `precision` gives it."""
    device = stores[0].device
    amp = autocast_dtype(precision, device)
    use_channels_last = channels_last if channels_last is not None else amp is not None or device.type == "cuda"
    dims = getattr(net, "dims", 2)
    # volumes: channels_last_3d, measured faster on this CPU under bf16 (1.2-1.7x; docs/volumes.md §5)
    memory_format = ((torch.channels_last if dims == 2 else torch.channels_last_3d) if use_channels_last
                     else torch.contiguous_format)
    net = net.to(device=device, memory_format=memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=BETAS, eps=EPS, fused=True)
    model = net if world == 1 else torch.nn.parallel.DistributedDataParallel(net)
    # no weight-cast cache: a replayed CUDA graph would read casts freed after capture
    autocast = ((lambda: torch.autocast(device.type, dtype=amp, cache_enabled=False)) if amp is not None
                else contextlib.nullcontext)
    return Run(net=net, model=torch.compile(model) if compile else model, optimizer=optimizer,
               objective=OBJECTIVES[mode], stores=stores, noise=noise, loss=loss, seed=seed, steps=steps,
               batch_size=batch_size, crop=crop, lr=lr, rampdown=rampdown, neighbor_weight=neighbor_weight,
               rank=rank, memory_format=memory_format, autocast=autocast, amp=amp,
               inv_scale=None if net.normalisation is None else 1.0 / net.normalisation[1], dims=dims)


# ---- the objectives, one per mode: (run, step, index of the rank's first sample, crop picks, loss extras) -> loss
def _synthetic_n2n(run, step, index, picks, extra):
    """Input and target are independent noisy copies of the same clean crops; the fused objective regenerates the
    target inside the loss (n2n_fast.n2n_loss decides fused or not)."""
    clean = run.cut(0, picks)
    noisy = add_noise(clean, run.noise, seed=run.seed, step=run.step_t, index=index, check_finite=False)
    pred = run.model(run.network_input(noisy))
    return run.network_units(losses.n2n_loss(pred, clean, run.noise, seed=run.seed, step=run.step_t, index=index,
                                             kind=run.loss, **extra), run.loss, extra.get("gamma"))


def _noise2clean(run, step, index, picks, extra):
    """The baseline: noisy input, clean target."""
    clean = run.cut(0, picks)
    noisy = add_noise(clean, run.noise, seed=run.seed, step=run.step_t, index=index, check_finite=False)
    return run.loss_fn(run.model(run.network_input(noisy)), clean, **extra)


def _real_pairs(run, step, index, picks, extra):
    """Two different realisations of the same crop: one the input, the other the target."""
    if run.device_crops:
        first, second = run.device_crops[0].realisation_pairs(run.seed, run.step_t, index, run.batch_size,
                                                              len(run.stores), training_data.PAIR)
        every = torch.stack([run.cut(k, picks) for k in range(len(run.stores))])  # (R, B, C, H, W)
        rows = torch.arange(run.batch_size, device=every.device)
        inputs, target = every[first, rows], every[second, rows]
    else:
        which = training_data.draw_realisations(run.seed, step, index, len(picks), len(run.stores))
        inputs, target = training_data.cut_pairs(run.stores, picks, which, run.crop)
    return run.loss_fn(run.model(run.network_input(inputs)), target, **extra)


def _neighbor2neighbor(run, step, index, picks, extra):
    """Neighbor2Neighbor on single noisy images: two sub-images of neighbouring pixels, plus its regulariser."""
    noisy = run.cut(0, picks)
    if run.noise is not None:
        noisy = add_noise(noisy, run.noise, seed=run.seed, step=run.step_t, index=index, check_finite=False)
    choice = training_data.neighbor_choice(noisy.shape, run.seed, run.step_t, index, noisy.device)
    g1, g2 = training_data.neighbor_split(noisy, choice)
    with torch.no_grad():  # the regulariser's g1(f(y)) - g2(f(y)) is a fixed target (stop gradient)
        f1, f2 = training_data.neighbor_split(run.net(run.network_input(noisy)).float(), choice)
    pred = run.model(run.network_input(g1))
    # the weight from the device step: a replayed graph computes each step's own
    weight = schedule.neighbor_weight_on_device(run.step_t, run.steps, run.neighbor_weight)
    return run.loss_fn(pred, g2, **extra) + weight * run.network_units(losses.l2_loss(pred, g2 + (f1 - f2)), "l2")


OBJECTIVES = {"noisy": _synthetic_n2n, "clean": _noise2clean, "pairs": _real_pairs, "neighbor": _neighbor2neighbor}


def train_step(run, step):
    """One optimisation step at `step`; returns the loss as a 0-d device tensor (no host sync)."""
    if run.graphed is not None:
        return run.graphed(step)
    lr_now = schedule.learning_rate(step, run.steps, run.lr, run.rampdown)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_now
    run.step_t.fill_(step)  # the kernels and the crop picks read the step from device memory
    return step_body(run, step)


def step_body(run, step):
    """The step after its learning rate and run.step_t are set: what a CUDA graph captures (graph_step.py)."""
    # the annealed exponent from the device step (read by the loss kernels): a replayed graph anneals it too
    extra = {"gamma": schedule.l0_gamma_on_device(run.step_t, run.steps)} if run.loss == "l0" else {}
    if run.loss == "hdr":  # no range scan of pred: it would sync the host every step (and break graph capture)
        extra = {"check_range": False}
    index = run.rank * run.batch_size  # global index of this rank's first sample in the step
    picks = run.picks(step, index)
    run.optimizer.zero_grad(set_to_none=run.graphed is None and not run.capturing)
    with run.autocast():
        objective = run.objective(run, step, index, picks, extra)
    objective.backward(run.one)
    run.optimizer.step()
    return objective.detach()


def capture(run, graph, device, world, compiled, first_step):
    """Capture the step as a CUDA graph when `graph` asks for it and it can be (graph_step.refusal), and prove its
    first replay against the eager step (GraphedStep.prove). Where the capture or that replay fails, or they
    disagree, graph="auto" warns and the run continues eagerly from the state it had; graph=True raises."""
    if graph not in ("auto", True, False):
        raise ValueError(f"graph: expected 'auto', True or False, got {graph!r}")
    why_not = graph_step.refusal(run, device, world, compiled)
    if graph is True and why_not:
        raise ValueError(f"graph: the step cannot be captured as a CUDA graph: {why_not}")
    if graph is False or why_not or first_step >= run.steps:
        return
    run.capturing = True
    try:
        graphed = graph_step.GraphedStep(run, first_step, step_body)
    except graph_step.GraphFailed as failure:  # the weights and Adam's state are back as they were
        return _fall_back(graph, failure)
    finally:
        run.capturing = False
    run.graphed = graphed  # before the proof: its eager step zeroes the gradients in place, as a replay does
    try:
        graphed.prove(first_step)
    except graph_step.GraphFailed as failure:
        run.graphed = None
        _fall_back(graph, failure)


def _fall_back(graph, failure):
    """The graph failed (`failure` says how): raise for graph=True, else warn; the steps then run eagerly."""
    if graph is True:
        raise RuntimeError(f"graph=True: {failure}") from failure
    warnings.warn(f"graph='auto': {failure}; the training step runs eagerly instead (graph=False silences this)",
                  RuntimeWarning, stacklevel=4)
