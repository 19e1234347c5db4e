"""Video manifests and label-name lists.

Accepted manifest formats (paths relative to a data root unless absolute):
  * CSV lines `path,label` (the published format), with or without a `path,label` header;
    a CSV with a header may have more columns, `path` and `label` are picked by name;
  * space-separated `path label` lines (VideoMAE style; the label is the last field, so a path
    may contain spaces);
  * Parquet with `path` and `label` columns.
Blank lines and lines starting with `#` are ignored.

Problems are collected and reported together, each with file and line, so a user fixes a
manifest in one pass instead of one error per run.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

MAX_LISTED = 20  # problems listed in one error message; the rest are counted


class ManifestError(ValueError):
    """A manifest or label list has problems; the message lists them with file:line."""


@dataclass(frozen=True)
class VideoRecord:
    path: str  # as written in the manifest (relative to the root, or absolute, or a URI)
    label: int
    line: int  # 1-based line (CSV/text) or row (Parquet) in the manifest, for messages
    root: str | None = None

    @property
    def full_path(self) -> str:
        if self.root is None or os.path.isabs(self.path) or "://" in self.path:
            return self.path
        return os.path.join(self.root, self.path)


def _raise(problems: list[str], what: str) -> None:
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise ManifestError(f"{what}: {len(problems)} problem(s)\n  " + "\n  ".join(shown) + more)


def _parse_label(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _rows_from_text(path: str, text: str, problems: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """(line, path, label text) rows of a CSV or space-separated manifest."""
    lines = text.splitlines()
    content = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    if not content:
        return []
    first = content[0][1]
    rows: list[tuple[int, str, str]] = []
    if "," in first:
        header = [h.strip().lower() for h in next(csv.reader([first]))]
        if "path" in header and "label" in header:  # header: pick columns by name
            pi, li = header.index("path"), header.index("label")
            content = content[1:]
        else:
            pi, li = 0, 1
        for lineno, ln in content:
            fields = next(csv.reader([ln]))
            if len(fields) <= max(pi, li):
                problems.append((lineno, f"{path}:{lineno}: unreadable row {ln.strip()!r} (expected path,label)"))
                continue
            rows.append((lineno, fields[pi].strip(), fields[li]))
        return rows
    for lineno, ln in content:
        parts = ln.strip().rsplit(None, 1)
        if len(parts) != 2:
            problems.append((lineno, f"{path}:{lineno}: unreadable row {ln.strip()!r} (expected 'path label')"))
            continue
        if lineno == content[0][0] and parts[0].lower() == "path" and parts[1].lower() == "label":
            continue  # header in a space-separated file
        rows.append((lineno, parts[0], parts[1]))
    return rows


def _rows_from_parquet(path: str, problems: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    import pyarrow.parquet as pq  # LAZY: pyarrow only for Parquet manifests

    table = pq.read_table(path)
    missing = [c for c in ("path", "label") if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: Parquet manifest has no column(s) {missing} (has {table.column_names})")
    paths = table.column("path").to_pylist()
    labels = table.column("label").to_pylist()
    return [(i + 1, str(p) if p is not None else "", str(lab) if lab is not None else "")
            for i, (p, lab) in enumerate(zip(paths, labels))]


def read_manifest(manifest: str | os.PathLike, root: str | os.PathLike | None = None,
                  num_classes: int | None = None, check_files: bool = True) -> list[VideoRecord]:
    """Read and validate a manifest. Raises ManifestError listing every problem at once:
    unreadable rows, labels that are not integers or are outside [0, num_classes), and (with
    `check_files`) video files missing under `root`."""
    manifest = str(manifest)
    if not os.path.isfile(manifest):
        raise ManifestError(f"{manifest}: manifest not found")
    root = None if root is None else str(root)
    if root is not None and check_files and not os.path.isdir(root):
        raise ManifestError(f"{root}: data root is not a directory")
    problems: list[tuple[int, str]] = []  # (line, message)
    if manifest.endswith(".parquet"):
        rows = _rows_from_parquet(manifest, problems)
    else:
        with open(manifest, encoding="utf-8", errors="replace") as f:
            rows = _rows_from_text(manifest, f.read(), problems)
    records: list[VideoRecord] = []
    for lineno, vpath, label_text in rows:
        label = _parse_label(label_text)
        if not vpath:
            problems.append((lineno, f"{manifest}:{lineno}: empty path"))
            continue
        if label is None:
            problems.append((lineno, f"{manifest}:{lineno}: label {label_text.strip()!r} is not an integer"))
            continue
        if label < 0 or (num_classes is not None and label >= num_classes):
            bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            problems.append((lineno, f"{manifest}:{lineno}: label {label} out of range {bound}"))
            continue
        records.append(VideoRecord(vpath, label, lineno, root))
    missing = []
    if check_files:  # listed together with row problems: one pass fixes the whole manifest
        missing = [(r.line, f"{manifest}:{r.line}: missing video file {r.full_path}") for r in records
                   if "://" not in r.full_path and not os.path.isfile(r.full_path)]
    if problems or missing:
        what = f"{manifest}: {len(missing)} of {len(records)} video files missing" if missing else manifest
        if missing and root is None:
            what += " (relative paths are read from the current directory: pass the data root)"
        _raise([text for _, text in sorted(problems + missing)], what)
    if not records:
        raise ManifestError(f"{manifest}: manifest has no videos")
    return records


def write_manifest(records, path: str | os.PathLike) -> None:
    """Write `path,label` CSV (the published format, no header)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in records:
        w.writerow([r.path, r.label] if isinstance(r, VideoRecord) else list(r))
    Path(path).write_text(buf.getvalue())


def read_label_names(path: str | os.PathLike) -> list[str]:
    """Class names from `id,name` CSV (header optional; ids must be 0..N-1) or one name per line."""
    path = str(path)
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: label list not found")
    with open(path, encoding="utf-8") as f:
        lines = [(i + 1, ln.rstrip("\n")) for i, ln in enumerate(f) if ln.strip()]
    if not lines:
        raise ManifestError(f"{path}: label list is empty")
    first = next(csv.reader([lines[0][1]]))
    if [x.strip().lower() for x in first[:2]] == ["id", "name"]:
        lines = lines[1:]
    elif len(first) < 2 or _parse_label(first[0]) is None:
        return [ln.strip() for _, ln in lines]  # plain list: one name per line
    names: dict[int, str] = {}
    problems = []
    for lineno, ln in lines:
        fields = next(csv.reader([ln]))
        idx = _parse_label(fields[0]) if fields else None
        if idx is None or len(fields) < 2:
            problems.append(f"{path}:{lineno}: unreadable row {ln!r} (expected id,name)")
        elif idx in names:
            problems.append(f"{path}:{lineno}: duplicate id {idx}")
        else:
            names[idx] = ",".join(fields[1:]).strip()
    if not problems and sorted(names) != list(range(len(names))):
        problems.append(f"{path}: ids are not 0..{len(names) - 1}")
    if problems:
        _raise(problems, path)
    return [names[i] for i in range(len(names))]
