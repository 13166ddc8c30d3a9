"""The `n2n-fast` command line (also `python -m n2n_fast`): train, denoise, export, demo, bench, info.

Argparse plus calls (docs/usage.md): each option's destination is the name of the library argument it fills and
its default is read from that function's signature, so the library is the one source of both; each subcommand
turns text into values (--noise, --range) and calls one function. Errors from the library name their arguments
(`out_dir: ...`, `resume=True`); `_in_flags` says them in flags (`--out: ...`, `--resume`), in one place.
"""
import argparse
import inspect
import os
import re
import sys

from .conventions import BLEND_MODES, LOSS_KINDS, PRECISIONS, TRAIN_TARGETS, VALUE_RANGE_HELP, __version__
from .extras import MissingExtra, require
from .noise_units import NOISE_TEXT_HELP, NOISE_UNITS


# ---- options from signatures, errors in flags -------------------------------------------------------------------
class _HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default (read from the signature), unless it is a switch or None."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS)
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


def _default(function, name):
    """The default of `function`'s argument `name`, or inspect.Parameter.empty when it has none."""
    return inspect.signature(function).parameters[name].default


def _option(parser, function, flag, dest=None, **kwargs):
    """Add `flag` filling `function`'s argument `dest` (default: the flag's name), its default read from the
    signature; an argument without a default makes the option required."""
    dest = dest or flag.lstrip("-").replace("-", "_")
    if not flag.startswith("-"):  # a positional: required by nature
        return parser.add_argument(dest, **kwargs)
    default = _default(function, dest)
    if default is inspect.Parameter.empty:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    if kwargs.get("action") is None and "choices" not in kwargs:
        # the usage line shows the flag's own name (--out OUT), not the library's (OUT_DIR)
        kwargs.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
    return parser.add_argument(flag, dest=dest, **kwargs)


def _flags(parser):
    """{library argument name: how the command line spells it} for one subcommand's parser; switches that set
    their argument to False (--quiet: progress=False) are left out, since `progress=True` is not `--quiet`."""
    return {action.dest: (action.option_strings[-1] if action.option_strings else action.metavar or action.dest)
            for action in parser._actions if action.dest != "help" and getattr(action, "const", None) is not False}


def _in_flags(text, flags):
    """A library message in the command line's words: `out_dir: ...` -> `--out: ...` (names heading the message
    or a part after "; "), `resume=True` -> `--resume`, `value_range=0,255` -> `--range 0,255`, and argument
    names with an underscore (`memory_budget`) where they stand alone. A value followed by its flag already
    (`overwrite=True (--overwrite)`) and values in brackets or quotes (`value_range=(low, high)`) are kept."""
    def heads(match):
        return ", ".join(flags.get(name, name) for name in match.group(1).split(", ")) + ": "

    text = re.sub(r"(?:^|(?<=; ))(\w+(?:, \w+)*): ", heads, text)
    for name, flag in flags.items():
        if name == flag or not name.isidentifier():
            continue
        kept = rf"(?! \({re.escape(flag)}\b)"
        text = re.sub(rf"(?<![\w./\\-]){name}=True\b{kept}", flag, text)
        simple = r"(?![\s(\['\"]|True\b|False\b)([^\s,;()]++)"  # a bare value, taken whole (possessive)
        text = re.sub(rf"(?<![\w./\\-]){name}={simple}{kept}", rf"{flag} \1", text)
        if "_" in name:
            text = re.sub(rf"(?<![\w./\\'\"-]){name}(?![\w./\\'\"=(-])", flag, text)
    return text


def _call_args(function, args):
    """The parsed options that are arguments of `function`, by name."""
    parameters = inspect.signature(function).parameters
    return {name: value for name, value in vars(args).items() if name in parameters}


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


def _auto_or_int(text):
    """--tile, --overlap: auto, N, or Z,Y,X per axis for a 3-D network (denoise checks the values)."""
    if text == "auto":
        return text
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, N or Z,Y,X (3-D networks), got {text!r}") from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected auto, N or Z,Y,X (3-D networks), got {text!r}")
    return values[0] if len(values) == 1 else values


def _crop(text):
    """--crop: N, or DEPTH,HEIGHT,WIDTH for volumes (train checks the values)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or DEPTH,HEIGHT,WIDTH (e.g. 8,64,64), got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _bytes(text):
    """'1073741824', '512M', '2G', '1.5GiB' -> bytes (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number = text.upper().removesuffix("IB").removesuffix("B")
    unit = number[-1:] if number[-1:] in units and number[-1:] != "" and not number[-1:].isdigit() else ""
    try:
        return int(float(number[:len(number) - len(unit)]) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes such as 1073741824, 512M or 2G, got {text!r}") from None


# ---- subcommands -------------------------------------------------------------------------------------------------
def _cmd_info(args):
    from .installation import info

    info()
    return 0


BENCH_NEEDS = {"report.py": ("test", ("pytest", "pytest_benchmark", "matplotlib")),  # runs the suites, draws
               "quality.py": ("test", ("skimage", "matplotlib"))}


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
    if not {"-h", "--help"} & set(rest):
        extra, modules = BENCH_NEEDS[script]
        if script == "report.py" and "--json" in rest:
            modules = ("matplotlib",)  # renders a JSON it is given: runs no suite
        require(extra, f"n2n-fast bench{' quality' if script == 'quality.py' else ''} (pytest and "
                       "pytest-benchmark run the suites, matplotlib draws the charts)", *modules)
    # the script's usage line names the command typed (`n2n-fast bench ...`), not its own file name
    prog = "n2n-fast bench" + (" quality" if script == "quality.py" else "")
    return subprocess.call([sys.executable, str(folder / script), *rest], cwd=folder.parent,
                           env={**os.environ, "N2N_FAST_PROG": prog})


def _source(paths):
    return None if not paths else (paths[0] if len(paths) == 1 else list(paths))


def _noise(args, value_range):
    """--noise read in --noise-units (n2n_fast/noise_units.py), printing what it used."""
    from .noise_units import noise_from_text, noise_units

    if not args.noise:
        if args.gain is not None:
            raise ValueError("--gain: needs --noise poisson or poissongaussian")
        return None
    units = noise_units(args.units, data=args.data or args.pairs, axes=args.axes, value_range=value_range,
                        gain=args.gain)
    model = noise_from_text(args.noise, units=units)
    print(f"noise: {model} in [0, 1] units (--noise read in {_in_flags(str(units), args.flags)})")
    return model


def _cmd_train(args):
    from .training.train import train

    if args.val_noisy and not args.val:
        raise ValueError("--val-noisy: needs --val (the clean images)")
    if args.pairs and args.noise:
        raise ValueError(f"--noise: {args.noise!r} would be ignored: --pairs trains on real noisy pairs; drop one")
    value_range = parse_range(args.value_range)
    val = (_source(args.val_noisy), _source(args.val)) if args.val_noisy else _source(args.val)
    result = train(**{**_call_args(train, args), "data": _source(args.data), "val": val,
                      "pairs": tuple(args.pairs) if args.pairs else None, "noise": _noise(args, value_range),
                      "value_range": value_range, "normalisation": parse_normalisation(args.normalisation)})
    last = result.history[-1] if result.history else {}
    print(f"trained {last.get('step', 0)} steps; last loss {last.get('loss', float('nan')):.5g}"
          + (f", val PSNR {last['val_psnr']:.2f} dB" if last.get("val_psnr") is not None else "")
          + f"; checkpoint {result.checkpoint}")
    return 0


def _cmd_demo(args):
    from .demo import demo

    demo(**_call_args(demo, args))
    return 0


def _cmd_denoise(args):
    from .inference.denoise import denoise
    from .inference.folder import denoise_files

    def log(text, file=None):  # what went wrong goes to stderr, in flags; the rest as it is
        print(text if file is None else _in_flags(text, args.flags), file=file)

    denoise_files(**{**_call_args(denoise, args), **_call_args(denoise_files, args),
                     "value_range": parse_range(args.value_range), "log": log})
    return 0


def _cmd_export(args):
    from .interop.export import export

    package = {key: value for key, value in (("name", args.name), ("authors", args.authors),
                                             ("license", args.license), ("input_dtype", args.input_dtype))
               if value is not None}
    path = export(**_call_args(export, args), **package)
    print(f"{args.model_or_checkpoint} -> {path}")
    return 0


# ---- the parsers -------------------------------------------------------------------------------------------------
def parse_normalisation(text):
    """--normalisation: auto, none or OFFSET,SCALE -> train(normalisation=), checked; errors name the flag."""
    from .training.normalisation import check_normalisation

    if text in ("auto", None):
        return "auto"
    if text == "none":
        return None
    try:
        offset, scale = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--normalisation: expected auto, none or OFFSET,SCALE (e.g. 0.1,0.02), got {text!r}") \
            from None
    try:
        return check_normalisation((offset, scale))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--normalisation: {text!r}: {str(exc).partition(': ')[2]}") from None


def _add_train_parser(sub):
    from .noise_units import noise_units
    from .training.train import train

    p = sub.add_parser("train", help="train a U-Net denoiser (N2N, N2C, real pairs, Neighbor2Neighbor)",
                       formatter_class=_HelpFormatter)
    data = p.add_mutually_exclusive_group(required=True)
    _option(data, train, "--data", nargs="+", metavar="PATH",
            help="folder, image file(s): clean (or noisy for --targets neighbor)")
    _option(data, train, "--pairs", nargs="+", metavar="FOLDER",
            help="two or more folders of aligned noisy realisations")
    _option(p, train, "--noise", help=f"noise model: {NOISE_TEXT_HELP}; SIGMA in the data's units (--noise-units: "
                                      "25 on 8-bit images means 25/255), PEAK in photons at full scale (or from "
                                      "--gain)")
    _option(p, train, "--targets", choices=TRAIN_TARGETS,
            help="noisy: N2N on --data + --noise; clean: the N2C baseline; neighbor: Neighbor2Neighbor")
    _option(p, train, "--loss", choices=LOSS_KINDS,
            help="l2 (mean: zero-mean noise), l1 (median), l0 (annealed: mode, impulse noise), hdr")
    _option(p, train, "--steps", type=int, help="optimizer steps")
    _option(p, train, "--batch-size", type=int, help="per process (rank)")
    _option(p, train, "--crop", type=_crop, help="side of the square training crops; with --dims 3 a cube's side "
                                                 "or DEPTH,HEIGHT,WIDTH (e.g. 8,64,64)")
    _option(p, train, "--dims", type=int, choices=(2, 3),
            help="2: images (Z/T stacks as 2-D slices); 3: volumes (files whose axes hold Z, MRC: ZYX), a 3-D U-Net "
                 "(docs/volumes.md); --pairs then takes files too (even.mrc odd.mrc)")
    _option(p, train, "--lr", type=float, help="Adam learning rate")
    _option(p, train, "--seed", type=int, help="seeds the network, the crops and the noise")
    _option(p, train, "--features", type=int, help="U-Net width (48 in the paper)")
    _option(p, train, "--out", dest="out_dir", help="output folder: checkpoints, history, plot")
    _option(p, train, "--resume", action="store_true",
            help="continue from OUT/last.pt when it exists (a larger --steps extends a finished run)")
    _option(p, noise_units, "--noise-units", dest="units", choices=NOISE_UNITS,
            help="units of the --noise sigmas: data (8-bit levels for uint8 images, 16-bit counts for uint16, "
                 "--range for floats given one, else [0, 1]), 8bit, 16bit or unit ([0, 1])")
    _option(p, noise_units, "--gain", type=float,
            help="camera gain in counts per photon: a Poisson peak of full scale / gain (e.g. --noise poisson "
                 "--gain 2 on 16-bit counts)")
    _option(p, train, "--overwrite", action="store_true", help="replace a run already in OUT (else it is refused)")
    _option(p, train, "--range", dest="value_range", metavar="LOW,HIGH|hdr", help=VALUE_RANGE_HELP)
    _option(p, train, "--normalisation", metavar="auto|none|OFFSET,SCALE",
            help="the affine map the network sees the data through (docs/normalisation.md): auto (the training "
                 "data's mean and standard deviation), none, or OFFSET,SCALE in the crops' units")
    _option(p, train, "--axes", help="layout of the images: YX, YXC, CYX, ZYX, TYX, ZYXC, ... (Z/T stacks train as "
                                     "2-D images; needed when a 3-D file could be a stack or channels)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; on a shared machine fewer can be faster)")
    _option(p, train, "--val", nargs="+", metavar="PATH", help="clean validation images")
    p.add_argument("--val-noisy", nargs="+", metavar="PATH", help="their noisy versions (else noised with --noise)")
    _option(p, train, "--device", help="cpu, cuda, cuda:1 ...")
    _option(p, train, "--precision", choices=PRECISIONS + ("bf16",), help="autocast precision of the network")
    _option(p, train, "--compile", action="store_true", help="torch.compile the network")
    _option(p, train, "--log-every", type=int, help="steps between history records")
    _option(p, train, "--val-every", type=int, help="steps between validations")
    _option(p, train, "--checkpoint-every", type=int, help="steps between checkpoints")
    _option(p, train, "--quiet", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=_cmd_train, flags=_flags(p))


def _add_demo_parser(sub):
    from .demo import demo

    p = sub.add_parser("demo", help="train N2N on scikit-image's photographs, write noisy | N2N | clean and PSNRs",
                       formatter_class=_HelpFormatter)
    _option(p, demo, "--out", dest="out_dir", help="output folder")
    _option(p, demo, "--steps", type=int, help="optimizer steps")
    _option(p, demo, "--sigma", type=float, help="Gaussian noise sigma in 8-bit units")
    _option(p, demo, "--n2c", action="store_true", help="also train the N2C baseline (clean targets) and compare")
    _option(p, demo, "--features", type=int, help="U-Net width (48 in the paper; fewer keeps it quick)")
    _option(p, demo, "--crop", type=int, help="side of the square training crops")
    _option(p, demo, "--batch-size", type=int, help="crops per step")
    _option(p, demo, "--lr", type=float, help="Adam learning rate")
    _option(p, demo, "--seed", type=int, help="seeds the network, the crops and the noise")
    _option(p, demo, "--device", help="cpu, cuda, cuda:1 ...")
    _option(p, demo, "--precision", choices=PRECISIONS + ("bf16",), help="autocast precision of the network")
    _option(p, demo, "--quiet", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=_cmd_demo, flags=_flags(p))


def _add_denoise_parser(sub):
    from .inference.denoise import PRECISIONS as DENOISE_PRECISIONS
    from .inference.denoise import denoise
    from .inference.folder import denoise_files

    p = sub.add_parser("denoise", help="denoise images of any size with a trained checkpoint (tiled, seam-free)",
                       formatter_class=_HelpFormatter)
    _option(p, denoise_files, "--checkpoint", dest="model", help="checkpoint written by `n2n-fast train` (.pt)")
    _option(p, denoise_files, "source", metavar="input",
            help="image or volume file (PNG, JPEG, TIFF, .npy, MRC), a folder of them, or Zarr/OME-Zarr (.zarr); "
                 "a 3-D checkpoint streams volumes through in z slabs")
    _option(p, denoise_files, "target", metavar="output", help="output file, or folder (for a folder input)")
    _option(p, denoise, "--tile", type=_auto_or_int,
            help="tile side, a multiple of 32, or auto: the largest that fits --memory-budget; a 3-D checkpoint "
                 "takes Z,Y,X too (multiples of its alignment per axis)")
    _option(p, denoise, "--overlap", type=_auto_or_int,
            help="tile overlap in pixels (< tile / 2), or auto: the measured seam rule; Z,Y,X for a 3-D checkpoint")
    _option(p, denoise, "--memory-budget", type=_bytes, metavar="BYTES",
            help="memory for one model call and the output band, sizing --tile auto: bytes or with a unit (512M, "
                 "2G); default: a quarter of total RAM up to 1G on the CPU, half the GPU's memory")
    _option(p, denoise, "--batch-size", type=int, help="at most this many tiles per model call")
    _option(p, denoise, "--blend", choices=tuple(BLEND_MODES), help="how overlapping tiles are blended")
    _option(p, denoise, "--precision", choices=DENOISE_PRECISIONS + ("bf16",), help="precision of the network")
    _option(p, denoise_files, "--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    _option(p, denoise_files, "--quiet", dest="progress", action="store_const", const=False, help="no progress bar")
    _option(p, denoise_files, "--axes",
            help="layout of the input: Zarr without axis names (e.g. yx, cyx, zyx, tczyx), or an image file that "
                 "could be a stack or channels (ZYX, TYX: denoised slice by slice and written back as a stack; "
                 "CYX, YXC: channels)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    _option(p, denoise_files, "--overwrite", action="store_true",
            help="replace outputs that exist (else they are refused before any work); inputs are never replaced")
    _option(p, denoise_files, "--range", dest="value_range", metavar="LOW,HIGH|hdr", help=VALUE_RANGE_HELP)
    p.set_defaults(run=_cmd_denoise, flags=_flags(p))


def _add_export_parser(sub):
    from .interop.export import export

    p = sub.add_parser("export", help="a checkpoint (2-D or 3-D) as ONNX (.onnx) or a bioimage.io package (.zip) "
                                      "for Fiji/deepImageJ, ilastik, napari, onnxruntime; needs pip install "
                                      "'n2n_fast[export]'",
                       formatter_class=_HelpFormatter)
    _option(p, export, "--checkpoint", dest="model_or_checkpoint",
            help="checkpoint written by `n2n-fast train` (.pt)")
    _option(p, export, "path", metavar="output", help="file to write: .onnx or .zip (bioimage.io)")
    _option(p, export, "--format", choices=("onnx", "bioimageio"), help="default: from the output's suffix")
    _option(p, export, "--overwrite", action="store_true", help="replace OUTPUT when it exists")
    p.add_argument("--name", help="bioimage.io: model name")
    p.add_argument("--author", dest="authors", metavar="AUTHOR", action="append",
                   help="bioimage.io: an author's name (repeat for several)")
    p.add_argument("--license", help="bioimage.io: SPDX license id of the weights (default CC-BY-4.0)")
    p.add_argument("--input-dtype", choices=("uint8", "uint16", "float32"),
                   help="bioimage.io: the data's dtype, scaled to [0, 1] by declared preprocessing (default: the "
                        "training data's)")
    p.set_defaults(run=_cmd_export, flags=_flags(p))


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
    _add_demo_parser(sub)
    _add_denoise_parser(sub)
    _add_export_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    flags = getattr(args, "flags", {})
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print(f"n2n-fast {args.command}: error: --threads: expected >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError, MissingExtra) as exc:
        print(f"n2n-fast {args.command}: error: {_in_flags(str(exc), flags)}", file=sys.stderr)
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
