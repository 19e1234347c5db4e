"""From the annotation files a dataset ships to `path,label` manifests with the published label ids.

The released checkpoints' label ids are the order of the class lists in `labels/` (the lists of the
paper's repository, as `../shared/labels/` holds them): a converter that numbered classes in its
own order would train or evaluate the wrong classes without a word. So each dataset's reader
(`kinetics`, `ssv2`, `diving48`, `activitynet`: one module each, a new dataset is one more) turns
its files into `Annotation`s that name their class, and `prepare` maps names to ids through the
list, refusing a name that is not in it, in one line with the nearest names. Videos are found under
the usual names and layouts (flat, per-class or per-split folders; mp4, mkv, webm, avi, ...); an
annotation whose video is not there goes to `missing.csv` with the reason, not an error.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vfn.data.manifest import read_label_names
from vfn.errors import ConfigError

from . import activitynet, diving48, kinetics, ssv2
from .common import Annotation, VideoIndex

LABELS_DIR = Path(__file__).resolve().parent / "labels"
READERS = {  # dataset -> (reader module, its published class list)
    "kinetics400": (kinetics, "kinetics_400_labels.csv"),
    "kinetics600": (kinetics, "kinetics_600_labels.csv"),
    "ssv2": (ssv2, "ssv2_174_labels.csv"),
    "diving48": (diving48, "diving_48_labels.csv"),
    "activitynet": (activitynet, "activitynet_200_labels.csv"),
}
SPLIT_NAMES = {"training": "train", "train": "train", "validation": "val", "validate": "val", "val": "val",
               "testing": "test", "test": "test"}

__all__ = ["Annotation", "PrepareReport", "READERS", "class_names", "prepare"]


def class_names(dataset: str) -> list[str]:
    """The published class list of `dataset`: names in label-id order."""
    return read_label_names(LABELS_DIR / READERS[dataset][1])


@dataclass
class PrepareReport:
    """What `prepare` wrote: videos per split, the annotations without a video, where it all went."""

    out: Path
    classes: int
    per_split: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    unlabelled: int = 0

    def summary(self) -> str:
        splits = ", ".join(f"{split} {n}" for split, n in self.per_split.items()) or "no videos"
        extra = f"; {self.unlabelled} without a label (a test split) left out" if self.unlabelled else ""
        return (f"{splits} videos -> {self.out}/<split>.csv; {self.missing} annotations without a video "
                f"(listed in {self.out / 'missing.csv'}){extra}")


def label_ids(names: list[str]) -> dict[str, int]:
    """Name -> id, also under the spellings downloads use (underscores for spaces, any case)."""
    ids = {}
    for i, name in enumerate(names):
        for spelling in (name, name.replace(" ", "_"), name.lower(), name.lower().replace(" ", "_")):
            ids.setdefault(spelling, i)
    return ids


def label_id(name: str, ids: dict[str, int], names: list[str], dataset: str, where: str) -> int:
    """The published id of a class name; a one-line ConfigError with the nearest names otherwise."""
    for spelling in (name, name.strip(), name.lower().strip()):
        if spelling in ids:
            return ids[spelling]
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; nearest: {', '.join(repr(n) for n in near)}" if near else ""
    raise ConfigError(f"{where}: class {name!r} is not among the {len(names)} published {dataset} classes{hint}")


def prepare(dataset: str, annotations: list[str | os.PathLike], root: str | os.PathLike, out: str | os.PathLike,
            *, labels_file: str | os.PathLike | None = None) -> PrepareReport:
    """Write `<out>/<split>.csv` (`path,label`, paths relative to `root`), `<out>/labels.csv` and
    `<out>/missing.csv` for a dataset's annotation files."""
    if dataset not in READERS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(READERS)}")
    reader, _ = READERS[dataset]
    for path in annotations:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such annotation file")
    if not Path(root).is_dir():
        raise ConfigError(f"--root {root}: no such directory of videos")
    names = class_names(dataset)
    rows = reader.read_annotations([Path(p) for p in annotations], names=names, labels_file=labels_file)
    return write_manifests(dataset, rows, names, VideoIndex(Path(root)), Path(out))


def write_manifests(dataset: str, rows: list[Annotation], names: list[str], videos: VideoIndex,
                    out: Path) -> PrepareReport:
    ids, report = label_ids(names), PrepareReport(out, len(names))
    manifests: dict[str, list[tuple[str, int]]] = {}
    missing = []
    for row in rows:
        if row.label is None:
            report.unlabelled += 1
            continue
        label = label_id(row.label, ids, names, dataset, row.where)
        split = SPLIT_NAMES.get(row.split.lower(), row.split.lower())
        if (path := videos.find(row.stems, split=split, label=row.label)) is None:
            reason = f"no video named {' or '.join(row.stems)}.* under {videos.root}"
            missing.append((split, row.key, row.label, reason))
            continue
        manifests.setdefault(split, []).append((path, label))
    duplicated = [p for p, n in Counter(p for items in manifests.values() for p, _ in items).items() if n > 1]
    if duplicated:
        raise ConfigError(f"{len(duplicated)} videos are annotated more than once (first: {duplicated[0]}); "
                          "give each split's annotation file once")
    out.mkdir(parents=True, exist_ok=True)
    for split, items in sorted(manifests.items()):
        with open(out / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows(items)
        report.per_split[split] = len(items)
    with open(out / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("id", "name"), *enumerate(names)])
    with open(out / "missing.csv", "w", newline="") as f:
        csv.writer(f).writerows([("split", "video", "label", "reason"), *missing])
    report.missing = len(missing)
    return report
