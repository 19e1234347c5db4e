"""Training checkpoints: one `checkpoint.pt` per Ray Train checkpoint directory.

The file holds only tensors and plain Python values (model, optimiser, scheduler, scaler, EMA,
epoch, global step, resolved config, MLflow run id), so `torch.load(..., weights_only=True)`
reads it: no pickled code runs when a checkpoint is opened. Beside it, `header.json` repeats the
small entries, so a driver that only needs the config (`vfn eval`) reads a few KB instead of the
weights and optimiser state (gigabytes for Base, possibly from object storage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from vfn.errors import first_line
from vfn.runtime import storage

CHECKPOINT_FILE = "checkpoint.pt"
HEADER_FILE = "header.json"
HEADER_KEYS = ("config", "mlflow_run_id", "epoch", "global_step")
RUN_INDEX = "vfn_run.json"  # written by the driver next to Ray's files: best/latest checkpoint, MLflow run


class RunCheckpointError(ValueError):
    """A path that is not a vfn checkpoint or run (one-line message)."""


def save_state(directory: str | Path, state: dict[str, Any]) -> Path:
    path = Path(directory) / CHECKPOINT_FILE
    torch.save(state, path)
    header = {k: state.get(k) for k in HEADER_KEYS}
    (Path(directory) / HEADER_FILE).write_text(json.dumps(header, indent=1) + "\n")
    return path


def read_header(location: str | Path) -> dict[str, Any]:
    """The small entries (config, MLflow run id, epoch, step) of the checkpoint file at `location`
    (as `find_checkpoint` gives it), without reading its tensors."""
    location = storage.absolute(location)  # a bare file name has a directory too
    text = storage.read_text(storage.join(location.rsplit("/", 1)[0], HEADER_FILE))
    if text is not None:
        return json.loads(text)
    # a checkpoint from before header.json: memory-map it, so the tensors stay on disk
    path = storage.local_copy(location)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise RunCheckpointError(f"{path}: not a loadable vfn checkpoint ({first_line(e)})") from None
    if not isinstance(state, dict) or "config" not in state:
        raise RunCheckpointError(f"{path}: not a vfn training checkpoint (no 'config' entry)")
    return {k: state.get(k) for k in HEADER_KEYS}


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file (or a directory holding one) with weights_only=True."""
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunCheckpointError(f"{path}: not a loadable vfn checkpoint ({first_line(e)})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise RunCheckpointError(f"{path}: not a vfn training checkpoint (no 'model'/'config' entries)")
    return state


def read_run_index(run_dir: str | Path) -> dict[str, Any]:
    text = storage.read_text(storage.join(run_dir, RUN_INDEX))
    return json.loads(text) if text else {}


def write_run_index(run_dir: str | Path, **entries: Any) -> None:
    index = read_run_index(run_dir) | entries
    storage.write_text(storage.join(run_dir, RUN_INDEX), json.dumps(index, indent=2) + "\n")


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A local checkpoint file from: the file itself, a Ray checkpoint directory, or a run directory
    (its best checkpoint, or the latest when `which="latest"` or no best is recorded). Locations on
    object storage (s3://...) are downloaded once into a local cache."""
    return storage.local_copy(find_checkpoint(path, which))


def find_checkpoint(path: str | Path, which: str = "best") -> str:
    """The location (path or URI) of the checkpoint file `resolve_checkpoint` reads."""
    p = str(path)
    if storage.is_file(p):
        return p
    if not storage.is_dir(p):
        raise RunCheckpointError(f"{p}: no such checkpoint file or run directory")
    if storage.is_file(own := storage.join(p, CHECKPOINT_FILE)):
        return own
    index = read_run_index(p)
    for key in (f"{which}_checkpoint", "latest_checkpoint"):
        if index.get(key) and storage.is_file(f := storage.join(index[key], CHECKPOINT_FILE)):
            return f
    found = [(info.mtime_ns or 0, storage.with_path(p, info.path)) for info in storage.list_dir(p)
             if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_")]
    for _, directory in sorted(found, reverse=True):
        if storage.is_file(f := storage.join(directory, CHECKPOINT_FILE)):
            return f
    raise RunCheckpointError(f"{p}: no {CHECKPOINT_FILE} here, and no checkpoint_*/ directories (is it a vfn run?)")


def runs_location(output_root: str) -> str:
    """`<output.root>/runs`: Ray Train's storage path, one directory per run (and per evaluation of one)."""
    return storage.join(storage.absolute(output_root), "runs")
