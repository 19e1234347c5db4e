"""Kinetics-400 / -600: CSVs `label,youtube_id,time_start,time_end,split` (some add `is_cc`; a test
split may come without `label`). The clips the common downloaders write are already cut to their
10-s span and named `<youtube_id>_<start:06d>_<end:06d>.mp4`, flat or in one folder per class; a
video named by its id alone is taken as that clip (not trimmed again)."""

from __future__ import annotations

import csv
from pathlib import Path

from vfn.errors import ConfigError

from .common import Annotation, split_from_name

COLUMNS = ("youtube_id", "time_start", "time_end")


def read_annotations(files: list[Path], names: list[str], labels_file: Path | None = None) -> list[Annotation]:
    if labels_file is not None:
        raise ConfigError("Kinetics annotations name their classes: --labels is for ssv2 and diving48")
    return [row for path in files for row in read_csv(path)]


def read_csv(path: Path) -> list[Annotation]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if missing := [c for c in COLUMNS if c not in (reader.fieldnames or [])]:
            raise ConfigError(f"{path}: not a Kinetics annotation CSV (no {', '.join(missing)} column; expected "
                              "label,youtube_id,time_start,time_end,split)")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                start, end = int(float(r["time_start"])), int(float(r["time_end"]))
            except (TypeError, ValueError):
                raise ConfigError(f"{path}:{line}: time_start/time_end are not numbers") from None
            vid = r["youtube_id"].strip()
            split = (r.get("split") or "").strip() or split_from_name(path)
            rows.append(Annotation(split, vid, (r.get("label") or "").strip() or None,
                                   (f"{vid}_{start:06d}_{end:06d}", vid), f"{path}:{line}"))
    return rows
