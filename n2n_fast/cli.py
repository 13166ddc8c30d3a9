"""The `n2n-fast` command line (also `python -m n2n_fast`): train, denoise, export, demo, bench, info.

Each subcommand is one small function that parses nothing itself: argparse hands it the namespace.
"""
import argparse
import os
import sys

from .conventions import BLEND_MODES, LOSS_KINDS, PRECISIONS, TRAIN_TARGETS, VALUE_RANGE_HELP, __version__
from .extras import MissingExtra


def _cmd_info(args):
    from .installation import info

    info()
    return 0


def _cmd_bench(args):
    # The benchmarks live in the repository, not in the installed package: find benchmarks/ next to the package
    # (an editable install or a checkout) and run its script in a fresh interpreter, passing every option on.
    import subprocess
    from pathlib import Path

    rest = list(args.args)
    script = "quality.py" if rest[:1] == ["quality"] else "report.py"
    rest = rest[1:] if rest[:1] in (["quality"], ["report"]) else rest
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    if not (folder / script).is_file():
        raise FileNotFoundError(
            f"benchmarks/{script} not found at {folder}: the benchmarks ship with the repository, not with an "
            "installed wheel. Clone the repository and install it editable (pip install --no-build-isolation -e .), "
            f"or run `python benchmarks/{script}` from the checkout")
    # the script's usage line names the command typed (`n2n-fast bench ...`), not its own file name
    prog = "n2n-fast bench" + (" quality" if script == "quality.py" else "")
    return subprocess.call([sys.executable, str(folder / script), *rest], cwd=folder.parent,
                           env={**os.environ, "N2N_FAST_PROG": prog})


# ---- train / demo (training loop helper) --------------------------------------------------------------------
_NOISE_HELP = ("noise model: gaussian:SIGMA, poisson:PEAK, poissongaussian:PEAK,SIGMA, bernoulli:P, impulse:P; "
               "each value may be a LOW-HIGH range drawn per sample; SIGMA in the data's units (--noise-units: 25 "
               "on 8-bit images means 25/255), PEAK in photons at full scale (or from --gain)")


SIGMA_UNITS = {"8bit": 255.0, "16bit": 65535.0, "unit": 1.0}  # --noise-units: one sigma unit in [0, 1] terms


def parse_noise(text, sigma_unit=255.0, peak=None):
    """A noise model from `gaussian:0-50` style text: sigma in units of 1/sigma_unit of the [0, 1] range (8-bit
    levels by default), peak and p as they are. `peak` (from --gain) fills a Poisson model given without one."""
    from . import noise

    name, _, spec = text.partition(":")
    models = {"gaussian": (noise.Gaussian, ("sigma",)), "poisson": (noise.Poisson, ("peak",)),
              "poissongaussian": (noise.PoissonGaussian, ("peak", "sigma")), "bernoulli": (noise.Bernoulli, ("p",)),
              "impulse": (noise.Impulse, ("p",))}
    if name.lower() not in models or not (spec or (peak and name.lower() == "poisson")):
        raise ValueError(f"--noise: expected NAME:VALUE with NAME in {sorted(models)}, got {text!r}")
    model, names = models[name.lower()]
    parts = spec.split(",") if spec else []
    if peak is not None and names[0] == "peak" and len(parts) == len(names) - 1:
        parts = [str(peak)] + parts  # --gain gave the peak
    if len(parts) != len(names):
        raise ValueError(f"--noise: {name} takes {len(names)} comma-separated value(s) ({', '.join(names)}), "
                         f"got {spec!r}")
    values = []
    for part, what in zip(parts, names):
        scale = sigma_unit if what == "sigma" else 1.0
        try:
            bounds = [float(v) / scale for v in part.split("-")]  # ranges are LOW-HIGH (values are >= 0)
        except ValueError:
            raise ValueError(f"--noise: {part!r} is not a number or a LOW-HIGH range (in {text!r})") from None
        if len(bounds) not in (1, 2):
            raise ValueError(f"--noise: {part!r} is not a number or a LOW-HIGH range (in {text!r})")
        values.append(bounds[0] if len(bounds) == 1 else tuple(bounds))
    return model(*values)


def parse_range(text):
    """--range: None, "hdr" or LOW,HIGH -> value_range (n2n_fast/value_range.py), checked; errors name --range."""
    from .value_range import check_value_range

    if text is None or text.strip().lower() == "hdr":
        return None if text is None else "hdr"
    try:
        bounds = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--range: expected LOW,HIGH (e.g. 0,255) or hdr, got {text!r}") from None
    return check_value_range(bounds if len(bounds) == 2 else text, name="--range")


def _noise_from_args(args):
    """--noise in the units --noise-units names (default: the training data's own: 8-bit levels for uint8 images,
    16-bit counts for uint16, [0, 1] for floats); --gain (counts per photon) sets a Poisson peak of full scale /
    gain. Prints what it used."""
    if not args.noise:
        if args.gain is not None:
            raise ValueError("--gain: needs --noise poisson or poissongaussian")
        return None
    if args.gain is not None and not args.noise.lower().startswith("poisson"):
        raise ValueError(f"--gain: sets a Poisson peak; --noise {args.noise!r} has none (use poisson or "
                         "poissongaussian)")
    units = args.noise_units
    full_scale = None
    if units == "data" or args.gain is not None:
        full_scale = _data_full_scale(args)
        units = {255.0: "8bit", 65535.0: "16bit"}.get(full_scale, "unit") if units == "data" else units
    if args.gain is not None and (args.gain <= 0 or full_scale in (None, 1.0)):
        raise ValueError(f"--gain: expected > 0 on uint8/uint16 data (a peak of full scale / gain), got "
                         f"{args.gain} on {'float' if full_scale == 1.0 else 'unknown'} data")
    peak = full_scale / args.gain if args.gain is not None else None
    sigma_unit = SIGMA_UNITS[units]
    if args.noise_units == "data" and full_scale == 1.0 and isinstance(args.value_range, tuple):
        sigma_unit = args.value_range[1] - args.value_range[0]  # floats in LOW..HIGH: sigmas in those units
        units = f"--range {args.value_range[0]:g},{args.value_range[1]:g}"
    model = parse_noise(args.noise, sigma_unit, peak)
    print(f"noise: {model} in [0, 1] units (--noise read in {units} units"
          + (f"; peak {peak:g} = full scale {full_scale:g} / gain {args.gain:g}" if peak else "") + ")")
    return model


def _data_full_scale(args):
    """255, 65535 or 1.0: the full scale of the first training image's dtype."""
    from pathlib import Path

    from .conventions import uint_peak
    from .io import SUPPORTED, read_stack

    first = Path((args.data or args.pairs)[0])
    if first.is_dir():
        files = sorted(p for p in first.iterdir() if p.suffix.lower() in SUPPORTED)
        first = files[0] if files else first
    if not first.is_file():
        raise ValueError(f"--data: no image found at {first}")
    _, dtype, _ = read_stack(str(first), args.axes, keep_integers=True)
    return float(uint_peak(dtype) or 1.0)


def _source(paths):
    return None if not paths else (paths[0] if len(paths) == 1 else list(paths))


def _cmd_train(args):
    from .training.train import train

    if args.val_noisy and not args.val:
        raise ValueError("--val-noisy: needs --val (the clean images)")
    if args.pairs and args.noise:
        raise ValueError(f"--noise: {args.noise!r} would be ignored: --pairs trains on real noisy pairs; drop one")
    val = (_source(args.val_noisy), _source(args.val)) if args.val_noisy else _source(args.val)
    args.value_range = parse_range(args.range)
    result = train(data=_source(args.data), pairs=tuple(args.pairs) if args.pairs else None,
                   noise=_noise_from_args(args), targets=args.targets, loss=args.loss,
                   steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr, seed=args.seed,
                   out_dir=args.out, resume=args.resume, val=val, device=args.device, precision=args.precision,
                   compile=args.compile, features=args.features, log_every=args.log_every,
                   val_every=args.val_every, checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                   overwrite=args.overwrite, axes=args.axes, value_range=args.value_range)
    last = result.history[-1] if result.history else {}
    print(f"trained {last.get('step', 0)} steps; last loss {last.get('loss', float('nan')):.5g}"
          + (f", val PSNR {last['val_psnr']:.2f} dB" if last.get("val_psnr") is not None else "")
          + f"; checkpoint {result.checkpoint}")
    return 0


def _cmd_demo(args):
    from .demo import demo

    demo(out_dir=args.out, steps=args.steps, sigma=args.sigma, n2c=args.n2c, features=args.features,
         crop=args.crop, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
         precision=args.precision, progress=not args.quiet)
    return 0


# ---- denoise (tiled inference helper) ------------------------------------------------------------------------
def _denoise_jobs(source, target):
    """[(input path, output path)]: one file, or every supported image of a folder into a folder."""
    from pathlib import Path

    from .io import SUPPORTED

    source, target = Path(source), Path(target)
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise ValueError(f"output: {source} is a folder, so the output must be a folder; got the file {target}")
        inputs = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED)
        if not inputs:
            raise ValueError(f"input: no images ({', '.join(SUPPORTED)}) in folder {source}")
        target.mkdir(parents=True, exist_ok=True)
        return [(p, target / p.name) for p in inputs]
    if not source.is_file():
        raise FileNotFoundError(f"input: no such file or folder {source}")
    return [(source, target / source.name if target.is_dir() else target)]


def _denoise_zarr(args, model, device):
    """Zarr/OME-Zarr in, Zarr/OME-Zarr out, streamed by bands (n2n_fast/inference/zarr_io.py)."""
    from .inference.zarr_io import is_zarr

    if not (is_zarr(args.input) and is_zarr(args.output)):
        raise ValueError(f"input, output: Zarr goes to Zarr; got {args.input} -> {args.output} (name the output "
                         f"*.zarr, or convert the image first)")
    from .inference.zarr_io import denoise_zarr

    target = denoise_zarr(model, args.input, args.output, axes=args.axes, overwrite=args.overwrite, tile=args.tile,
                          overlap=args.overlap, memory_budget=args.memory_budget, batch_size=args.batch_size,
                          blend=args.blend, precision=args.precision, device=device,
                          progress=None if not args.quiet else False, value_range=parse_range(args.range))
    print(f"{args.input} -> {target}")
    return 0


def _auto_or_int(text):
    return "auto" if text == "auto" else int(text)


def _bytes(text):
    """'1073741824', '512M', '2G', '1.5GiB' -> bytes (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number = text.upper().removesuffix("IB").removesuffix("B")
    unit = number[-1:] if number[-1:] in units and number[-1:] != "" and not number[-1:].isdigit() else ""
    try:
        return int(float(number[:len(number) - len(unit)]) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes such as 1073741824, 512M or 2G, got {text!r}") from None


def _small_image_groups(jobs, fits_one_tile, limit):
    """Consecutive jobs [(source, target, pixels, dtype)] grouped: images of one shape that each fit one tile run
    together, up to `limit` per group, so a folder of small images does not run the network at batch 1."""
    group = []
    for job in jobs:
        if group and (job[2].shape != group[0][2].shape or len(group) >= limit or not fits_one_tile(job[2])):
            yield group
            group = []
        group.append(job)
        if not fits_one_tile(job[2]):
            yield group
            group = []
    if group:
        yield group


def _check_outputs(pairs):
    """Before any work: no output is its input, and every output's format and folder are usable."""
    import os

    from .io import _extension

    for source, target in pairs:
        if source.resolve() == target.resolve():
            raise ValueError(f"output: {target} is the input file; denoise never overwrites its input")
        _extension(target, "output")
        if not os.access(target.parent, os.W_OK):
            raise ValueError(f"output: cannot write into the folder {target.parent}")


def _check_file_range(source, stack, dtype, value_range):
    """A float file of unstated range that is far above [0, 1], or an integer file given --range, is refused by
    name (denoise itself sees [0, 1] floats for both and could not tell)."""
    import numpy as np

    from .value_range import check_unit_max, refuse_integers

    if np.dtype(dtype).kind == "f":
        check_unit_max(stack, value_range, f"input {source}")
    else:
        refuse_integers(value_range, dtype, f"input {source}")


def _read_jobs(pairs, axes, stacks, failures, value_range=None):
    """(source, target, pixels, dtype) of each single image; Z/T stacks go to `stacks` as (source, target, stack,
    dtype, axes), denoised slice by slice and written back as stacks. A file that cannot be read goes to
    `failures` with its error, and the others go on."""
    from .io import read_stack

    for source, target in pairs:
        try:
            stack, dtype, layout = read_stack(str(source), axes)
            _check_file_range(source, stack, dtype, value_range)
        except (ValueError, TypeError) as exc:
            failures.append((source, exc))
            print(f"{source}: skipped: {exc}", file=sys.stderr)
            continue
        if stack.shape[0] > 1:
            stacks.append((source, target, stack, dtype, layout))
            continue
        yield source, target, stack[0] if "C" in layout else stack[0, ..., 0], dtype


def _denoise_stacks(stacks, model, options, args):
    import numpy as np

    from .io import write_stack
    from .inference.denoise import denoise

    for source, target, stack, dtype, layout in stacks:
        print(f"{source}: a {layout} stack of {stack.shape[0]} slices")
        slices = [denoise(model, plane, precision=args.precision, progress=False, **options) for plane in stack]
        write_stack(str(target), np.stack(slices), dtype if dtype in (np.uint8, np.uint16) else np.float32, layout)
        print(f"{source} -> {target}")


def _cmd_denoise(args):
    import numpy as np
    import torch

    from .io import write_image
    from .inference.denoise import denoise, denoise_plan
    from .checkpoint import load

    model = load(args.checkpoint)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from .inference.zarr_io import is_zarr  # zarr itself loads only when Zarr data is read

    if is_zarr(args.input) or is_zarr(args.output):
        return _denoise_zarr(args, model, device)
    value_range = parse_range(args.range)
    options = dict(tile=args.tile, overlap=args.overlap, memory_budget=args.memory_budget,
                   batch_size=args.batch_size, blend=args.blend, device=device)
    fits_one_tile = lambda pixels: denoise_plan(model, pixels, **options).plan.count == 1  # noqa: E731
    stacks, failures = [], []
    pairs = _denoise_jobs(args.input, args.output)
    _check_outputs(pairs)
    jobs = _read_jobs(pairs, args.axes, stacks, failures, value_range)
    for group in _small_image_groups(jobs, fits_one_tile, args.batch_size):
        # a group is one (N, C, H, W) tensor: the tiles of all its images share model calls
        stack = np.stack([pixels.reshape(pixels.shape[:2] + (-1,)) for _, _, pixels, _ in group])
        images = torch.from_numpy(stack).permute(0, 3, 1, 2)
        plan = denoise_plan(model, images if len(group) > 1 else group[0][2], **options)
        names = group[0][0] if len(group) == 1 else f"{group[0][0]} .. {group[-1][0]} ({len(group)} images)"
        print(f"{names}: {plan.describe()}")
        result = denoise(model, images, precision=args.precision, progress=None if not args.quiet else False,
                         value_range=value_range, **options).permute(0, 2, 3, 1).numpy()
        for (source, target, pixels, dtype), denoised in zip(group, result):
            write_image(str(target), denoised.reshape(pixels.shape),
                        dtype=dtype if dtype in (np.uint8, np.uint16) else np.float32)
            print(f"{source} -> {target}")
    _denoise_stacks(stacks, model, dict(options, value_range=value_range), args)
    if failures:
        raise ValueError(f"input: {len(failures)} of {len(pairs)} files could not be denoised: "
                         + "; ".join(f"{source.name} ({str(exc)[:120]})" for source, exc in failures[:5])
                         + (" ..." if len(failures) > 5 else ""))
    return 0


def _cmd_export(args):
    from .interop.export import export

    package = {key: value for key, value in (("name", args.name), ("authors", args.author),
                                             ("license", args.license), ("input_dtype", args.input_dtype))
               if value is not None}
    path = export(args.checkpoint, args.output, format=args.format, overwrite=args.overwrite, **package)
    print(f"{args.checkpoint} -> {path}")
    return 0


def _add_train_parser(sub):
    p = sub.add_parser("train", help="train a U-Net denoiser (N2N, N2C, real pairs, Neighbor2Neighbor)")
    p.add_argument("--data", nargs="+", metavar="PATH", help="folder, image file(s): clean (or noisy for neighbor)")
    p.add_argument("--pairs", nargs="+", metavar="FOLDER", help="two or more folders of aligned noisy realisations")
    p.add_argument("--noise", help=_NOISE_HELP)
    p.add_argument("--targets", default="noisy", choices=TRAIN_TARGETS,
                   help="noisy: N2N on --data + --noise; clean: the N2C baseline; neighbor: Neighbor2Neighbor")
    p.add_argument("--loss", default="l2", choices=LOSS_KINDS,
                   help="l2 (mean: zero-mean noise), l1 (median), l0 (annealed: mode, impulse noise), hdr")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=4, help="per process (rank)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", type=int, default=48, help="U-Net width (48 in the paper)")
    p.add_argument("--out", required=True, help="output folder: checkpoints, history, plot")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt when it exists (a larger --steps extends a finished run)")
    p.add_argument("--noise-units", default="data", choices=("data",) + tuple(SIGMA_UNITS),
                   help="units of the --noise sigmas: data (default: 8-bit levels for uint8 images, 16-bit counts "
                        "for uint16, [0, 1] for floats), 8bit, 16bit or unit ([0, 1])")
    p.add_argument("--gain", type=float, default=None,
                   help="camera gain in counts per photon: a Poisson peak of full scale / gain (e.g. --noise "
                        "poisson --gain 2 on 16-bit counts)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in OUT (else it is refused)")
    p.add_argument("--range", metavar="LOW,HIGH|hdr", help=VALUE_RANGE_HELP)
    p.add_argument("--axes", default=None,
                   help="layout of the images: YX, YXC, CYX, ZYX, TYX, ZYXC, ... (Z/T stacks train as 2-D images; "
                        "needed when a 3-D file could be a stack or channels)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; on a shared machine fewer can be faster)")
    p.add_argument("--val", nargs="+", metavar="PATH", help="clean validation images")
    p.add_argument("--val-noisy", nargs="+", metavar="PATH", help="their noisy versions (else noised with --noise)")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default="auto", choices=PRECISIONS + ("bf16",))
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-every", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_train)


def _add_denoise_parser(sub):
    p = sub.add_parser("denoise", help="denoise images of any size with a trained checkpoint (tiled, seam-free)")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `n2n-fast train` (.pt)")
    p.add_argument("input", help="image file (PNG, JPEG, TIFF, .npy), a folder of them, or Zarr/OME-Zarr (.zarr)")
    p.add_argument("output", help="output file, or folder (for a folder input)")
    p.add_argument("--tile", type=_auto_or_int, default="auto",
                   help="tile side, a multiple of 32, or auto: the largest that fits --memory-budget (default)")
    p.add_argument("--overlap", type=_auto_or_int, default="auto",
                   help="tile overlap in pixels (< tile / 2), or auto: the measured seam rule (default)")
    p.add_argument("--memory-budget", type=_bytes, default=None, metavar="BYTES",
                   help="memory for one model call and the output band, sizing --tile auto: bytes or with a unit "
                        "(512M, 2G); default: a quarter of total RAM up to 1G on the CPU, half the GPU's memory")
    p.add_argument("--batch-size", type=int, default=8, help="at most this many tiles per model call (default 8)")
    p.add_argument("--blend", default="cosine", choices=tuple(BLEND_MODES))
    p.add_argument("--precision", default="float32", choices=("float32", "bf16", "bfloat16"))
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--axes", help="layout of the input: Zarr without axis names (e.g. yx, cyx, zyx, tczyx), or an "
                                  "image file that could be a stack or channels (ZYX, TYX: denoised slice by slice "
                                  "and written back as a stack; CYX, YXC: channels)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true", help="Zarr output: replace it when it exists")
    p.add_argument("--range", metavar="LOW,HIGH|hdr", help=VALUE_RANGE_HELP)
    p.set_defaults(run=_cmd_denoise)


def _add_export_parser(sub):
    p = sub.add_parser("export", help="a checkpoint as ONNX (.onnx) or a bioimage.io package (.zip) for Fiji/"
                                      "deepImageJ, ilastik, napari, onnxruntime; needs pip install 'n2n_fast[export]'")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `n2n-fast train` (.pt)")
    p.add_argument("output", help="file to write: .onnx or .zip (bioimage.io)")
    p.add_argument("--format", choices=("onnx", "bioimageio"), help="default: from the output's suffix")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT when it exists")
    p.add_argument("--name", help="bioimage.io: model name")
    p.add_argument("--author", action="append", help="bioimage.io: an author's name (repeat for several)")
    p.add_argument("--license", help="bioimage.io: SPDX license id of the weights (default CC-BY-4.0)")
    p.add_argument("--input-dtype", choices=("uint8", "uint16", "float32"),
                   help="bioimage.io: the data's dtype, scaled to [0, 1] by declared preprocessing (default: the "
                        "training data's)")
    p.set_defaults(run=_cmd_export)


def build_parser():
    parser = argparse.ArgumentParser(prog="n2n-fast", description="Fast Noise2Noise training and inference.")
    parser.add_argument("--version", action="version", version=f"n2n_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, GPU, extension build, and which implementation serves each op")
    p.set_defaults(run=_cmd_info)

    # prefix_chars="+": nothing after `bench` is parsed here, so every option (and -h) reaches the script itself.
    p = sub.add_parser("bench", prefix_chars="+", add_help=False,
                       help="`bench [report options]`: run the benchmark suites at full size and render the table "
                            "and chart (benchmarks/report.py); `bench quality [options]`: the paper's claims at "
                            "small scale (benchmarks/quality.py); -h after either shows its options")
    p.add_argument("args", nargs="*", help="[report|quality] then that script's options")
    p.set_defaults(run=_cmd_bench)

    _add_train_parser(sub)

    p = sub.add_parser("demo", help="train N2N on scikit-image's photographs, write noisy | N2N | clean and PSNRs")
    p.add_argument("--out", default="n2n_demo", help="output folder (default: n2n_demo)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--sigma", type=float, default=25.0, help="Gaussian noise sigma in 8-bit units (default 25)")
    p.add_argument("--n2c", action="store_true", help="also train the N2C baseline (clean targets) and compare")
    p.add_argument("--features", type=int, default=32, help="U-Net width (48 in the paper; 32 keeps it quick)")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default="auto", choices=PRECISIONS + ("bf16",))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_demo)

    _add_denoise_parser(sub)
    _add_export_parser(sub)

    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print(f"n2n-fast {args.command}: error: --threads: expected >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError, MissingExtra) as exc:
        print(f"n2n-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`n2n-fast info | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except KeyboardInterrupt as exc:  # train() wrote a checkpoint at the step it stopped (TrainingInterrupted)
        checkpoint = getattr(exc, "checkpoint", None)
        if checkpoint:
            print(f"n2n-fast {args.command}: interrupted; {exc}. Continue with the same command plus --resume.",
                  file=sys.stderr)
        else:
            print(f"n2n-fast {args.command}: interrupted", file=sys.stderr)
        return 130
