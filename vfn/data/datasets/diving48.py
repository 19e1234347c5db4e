"""Diving-48 (V2): `Diving48_V2_train.json` / `Diving48_V2_test.json` list `{"vid_name", "label",
"start_frame", "end_frame"}` with integer labels, and `Diving48_vocab.json` (`--labels`) lists each
class as its [take-off, somersault, twist, flight] words, which the published names join with `_`.
The released `rgb/` videos are already the trimmed dives (`start_frame`/`end_frame` count within
them), named `<vid_name>.mp4`; nothing is cut again."""

from __future__ import annotations

from pathlib import Path

from vfn.errors import ConfigError

from .common import Annotation, split_from_name
from .ssv2 import load_json


def read_annotations(files: list[Path], names: list[str], labels_file: Path | None = None) -> list[Annotation]:
    if labels_file is not None:
        check_vocabulary(Path(labels_file), names)
    return [row for path in files for row in read_split(path, names)]


def check_vocabulary(path: Path, names: list[str]) -> None:
    vocab = load_json(path)
    if not isinstance(vocab, list) or len(vocab) != len(names):
        raise ConfigError(f"{path}: not the Diving-48 vocabulary (a list of {len(names)} classes)")
    for i, words in enumerate(vocab):
        if "_".join(words) != names[i]:
            raise ConfigError(f"{path}: class {i} is {'_'.join(words)!r} here but {names[i]!r} in the published list")


def read_split(path: Path, names: list[str]) -> list[Annotation]:
    entries = load_json(path)
    if not isinstance(entries, list) or any(not isinstance(e, dict) or "vid_name" not in e for e in entries):
        raise ConfigError(f"{path}: not a Diving-48 split file (a list of objects with a \"vid_name\")")
    split, rows = split_from_name(path), []
    for k, e in enumerate(entries):
        label = e.get("label")
        if label is not None and not (isinstance(label, int) and 0 <= label < len(names)):
            raise ConfigError(f"{path}: entry {k} ({e['vid_name']}): label {label!r} is not a class id "
                              f"0..{len(names) - 1}")
        rows.append(Annotation(split, e["vid_name"], None if label is None else names[label], (e["vid_name"],),
                               f"{path}: entry {k}"))
    return rows
