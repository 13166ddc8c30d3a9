"""The `n2n-fast` command line (also `python -m n2n_fast`): train, denoise, demo, bench, info.

Each subcommand is one small function that parses nothing itself: argparse hands it the namespace.
"""
import argparse
import sys


def _cmd_info(args):
    from .info import info

    info()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="n2n-fast", description="Fast Noise2Noise training and inference.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, GPU, extension build, and which implementation serves each op")
    p.set_defaults(run=_cmd_info)

    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"n2n-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
