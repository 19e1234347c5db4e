"""`vfn ablate ABLATION.yaml [key=value ...]`: a sweep reported as a paper-style ablation table
(params, GFLOPs per view, top-1/top-5 mean ± std over seeds, clips/s; Markdown, CSV, PNG)."""

from __future__ import annotations

import argparse

from vfn.commands import sweep


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sweep.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return sweep.run(args, kind="ablate")
