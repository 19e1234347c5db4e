"""What every dataset reader shares: one annotated video (`Annotation`), the split a file's name
says, and the index of the video files under a root, found by name in any of the usual layouts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vfn.errors import ConfigError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp"})
SPLIT_WORDS = {"train": ("train", "training"), "val": ("val", "validate", "validation"), "test": ("test", "testing")}


@dataclass(frozen=True)
class Annotation:
    """One annotated video: its split, its id as the annotations name it, its class name (None in an
    unlabelled test split), the file names (no extension) its video may have, most specific first,
    and where it was read (for messages)."""

    split: str
    key: str
    label: str | None
    stems: tuple[str, ...]
    where: str


def split_from_name(path: Path) -> str:
    """train / val / test from an annotation file's name (`kinetics_400_validate.csv`,
    `something-something-v2-validation.json`, `Diving48_V2_test.json`); one line when it says none."""
    words = set(re.split(r"[^a-z]+", path.stem.lower()))
    found = [split for split, spellings in SPLIT_WORDS.items() if words & set(spellings)]
    if len(found) != 1:
        raise ConfigError(f"{path}: the file name does not say its split (train, val or test)")
    return found[0]


class VideoIndex:
    """Every video file under `root` by file stem, walked once: flat, per-class and per-split
    folders alike. Paths are relative to `root`, as manifests hold them."""

    def __init__(self, root: Path):
        self.root = root
        self.by_stem: dict[str, list[str]] = {}
        for folder, _, files in os.walk(root, followlinks=True):
            for name in files:
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS:
                    self.by_stem.setdefault(stem, []).append(os.path.relpath(os.path.join(folder, name), root))

    def find(self, stems: tuple[str, ...], split: str, label: str | None) -> str | None:
        """The video of the first stem that has one; where a stem is in several folders, the one
        whose folders name the split or the class."""
        for stem in stems:
            if paths := self.by_stem.get(stem):
                return min(paths, key=lambda p: (-folder_score(p, split, label), p))
        return None


def folder_score(path: str, split: str, label: str | None) -> int:
    folders = {part.lower().replace("_", " ") for part in Path(path).parts[:-1]}
    score = 2 if label and label.lower().replace("_", " ") in folders else 0
    return score + (1 if folders & set(SPLIT_WORDS.get(split, (split,))) else 0)
