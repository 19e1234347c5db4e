"""`vfn compare [RUN_OR_EXPERIMENT ...] [--metric M] [--filter EXPR]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def default_tracking_uri(root: str | Path = ".") -> str:
    """The store `vfn train` writes to by default: $MLFLOW_TRACKING_URI or <root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN_OR_EXPERIMENT",
                        help="run ids, run names or experiment names (default: every run in the store)")
    parser.add_argument("--metric", default="epoch/val_top1", help="metric to sort and plot by")
    parser.add_argument("--filter", default="", help="MLflow search filter, e.g. \"tags.design = 'spatial'\"")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    parser.add_argument("--out", default="compare.png", help="PNG of learning curves and metric vs GFLOPs")


def run(args: argparse.Namespace) -> int:
    from vfn.platform.compare import CompareError, compare

    uri = args.tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        print(f"vfn compare: no MLflow store at {uri.removeprefix('sqlite:///')} (use --tracking-uri)", file=sys.stderr)
        return 2
    try:
        result = compare(uri, args.runs, args.metric, args.filter, Path(args.out))
    except CompareError as e:
        print(f"vfn compare: {e}", file=sys.stderr)
        return 2
    print(result["table"])
    print(f"\n{len(result['rows'])} runs; plot: {result['png']}")
    return 0
