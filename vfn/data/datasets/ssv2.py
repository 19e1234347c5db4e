"""Something-Something-v2: `something-something-v2-labels.json` maps each template to its id, and
each split file (`...-train.json`, `...-validation.json`, `...-test.json`) lists
`{"id", "label", "template", "placeholders"}`; the class is the template without its brackets
("Putting [something] on [something]" -> "Putting something on something"), as the released code
reads it. Videos are `<id>.webm`. The labels JSON, when given, must number the classes as the
published list does (it does in the official release); the test split has no templates."""

from __future__ import annotations

import json
from pathlib import Path

from vfn.errors import ConfigError

from .common import Annotation, split_from_name


def read_annotations(files: list[Path], names: list[str], labels_file: Path | None = None) -> list[Annotation]:
    if labels_file is not None:
        check_label_ids(Path(labels_file), names)
    return [row for path in files for row in read_split(path)]


def check_label_ids(path: Path, names: list[str]) -> None:
    """A labels JSON numbering any class differently from the published list: one line naming it."""
    ids = load_json(path)
    if not isinstance(ids, dict):
        raise ConfigError(f"{path}: not the SSv2 labels JSON (a template -> id object)")
    for template, i in ids.items():
        if not str(i).isdigit() or int(i) >= len(names) or names[int(i)] != template:
            published = names.index(template) if template in names else "none"
            raise ConfigError(f"{path}: {template!r} has id {i} here but {published} in the published list the "
                              "released checkpoints use")


def read_split(path: Path) -> list[Annotation]:
    entries = load_json(path)
    if not isinstance(entries, list) or any(not isinstance(e, dict) or "id" not in e for e in entries):
        raise ConfigError(f"{path}: not an SSv2 split file (a list of objects with an \"id\")")
    split = split_from_name(path)
    return [Annotation(split, str(e["id"]), class_of(e.get("template")), (str(e["id"]),), f"{path}: entry {k}")
            for k, e in enumerate(entries)]


def class_of(template: str | None) -> str | None:
    """"Putting [something] on [something]" -> "Putting something on something" (None: unlabelled)."""
    return template.replace("[", "").replace("]", "") if template else None


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
