"""ActivityNet-1.3: one JSON (`activity_net.v1-3.min.json`) whose `database` maps each YouTube id to
its `subset` (training / validation / testing) and labelled `annotations` (`segment` [start, end] in
seconds, `label`). The videos are untrimmed, `v_<id>.mp4` (or `<id>.mp4`); a video is one manifest
row with the class of its segments (the class covering most of its annotated time where they
differ): video-level recognition, the whole video sampled. Cutting each segment into a clip of its
own is not done here."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from vfn.errors import ConfigError

from .common import Annotation
from .ssv2 import load_json


def read_annotations(files: list[Path], names: list[str], labels_file: Path | None = None) -> list[Annotation]:
    if labels_file is not None:
        raise ConfigError("ActivityNet annotations name their classes: --labels is for ssv2 and diving48")
    return [row for path in files for row in read_database(path)]


def read_database(path: Path) -> list[Annotation]:
    data = load_json(path)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise ConfigError(f"{path}: not the ActivityNet JSON (no \"database\" object)")
    rows = []
    for vid, entry in database.items():
        covered: Counter[str] = Counter()
        for a in entry.get("annotations") or []:
            start, end = a.get("segment", (0.0, 0.0))
            covered[a["label"]] += max(float(end) - float(start), 0.0)
        label = covered.most_common(1)[0][0] if covered else None
        rows.append(Annotation(entry.get("subset", "testing"), vid, label, (f"v_{vid}", vid), f"{path}: {vid}"))
    return rows
