"""One module per `vfn` subcommand: `add_arguments(parser)` and `run(args)`.

`vfn.cli` imports a command's module to parse its arguments, so a module here imports at its top
only what parsing needs. The work (torch, Ray, MLflow: seconds of start-up) is imported inside the
functions that do it, so `--help` and usage errors answer at once. That is the one place in `vfn`
where imports inside functions need no comment of their own (`tests/test_structure.py` checks the rest).
"""

import argparse


def former_spelling(parser: argparse.ArgumentParser, flag: str, dest: str, type: type = int) -> None:
    """Keep a flag's former spelling working for a release (one spelling per flag across commands:
    `--input-size`, `--batch-size`): parsed into `dest`, hidden from `--help`."""
    parser.add_argument(flag, dest=dest, type=type, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
