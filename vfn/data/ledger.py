"""The corrupt videos a run skipped, by name.

The epoch counters only count corrupt videos (`epoch/train_corrupt`); a user needs to know which
files to fix. Decode tasks report each one to a zero-CPU actor the driver created, so the progress
line and the final summary can name the first few and point to the full list, a CSV in the run
directory.
"""

from __future__ import annotations

import csv
import io
import posixpath

import ray

from vfn.errors import first_line
from vfn.runtime import storage

CORRUPT_LIST = "corrupt_videos.csv"  # in the run directory
SHOWN = 3  # paths named on the terminal


@ray.remote(num_cpus=0)
class CorruptLedger:
    """(split, path) -> reason, each video once however many epochs skip it."""

    def __init__(self):
        self._reasons: dict[tuple[str, str], str] = {}

    def add(self, split: str, path: str, reason: str) -> None:
        self._reasons.setdefault((split, path), reason)

    def entries(self) -> list[tuple[str, str, str]]:
        return [(split, path, reason) for (split, path), reason in self._reasons.items()]


def report_corrupt(ledger, split: str, path, error: BaseException) -> None:
    """From a decode task: one skipped video (fire and forget; nothing when there is no ledger)."""
    if ledger is not None:
        ledger.add.remote(split, str(path), first_line(error))


def describe(entries: list[tuple[str, str, str]], full_list: str | None) -> str:
    """'2 corrupt videos skipped (a.avi, b.avi; all in RUN/corrupt_videos.csv)', or '' for none."""
    if not entries:
        return ""
    names = ", ".join(posixpath.basename(path) for _, path, _ in entries[:SHOWN])
    more = ", ..." if len(entries) > SHOWN else ""
    where = f"; all in {full_list}" if full_list else ""
    return f"{len(entries)} corrupt video{'s' if len(entries) != 1 else ''} skipped ({names}{more}{where})"


def as_csv(entries: list[tuple[str, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["split", "path", "reason"])
    writer.writerows(entries)
    return out.getvalue()


class CorruptWatch:
    """Driver side: the run's ledger, whose entries are kept as a CSV in the run directory."""

    def __init__(self, run_dir: str):
        self.ledger = CorruptLedger.remote()
        self.path = storage.join(run_dir, CORRUPT_LIST)
        self._written = 0

    def note(self) -> str:
        """What to tell the user so far ('' while nothing was skipped); the CSV is rewritten when it grew."""
        try:
            entries = ray.get(self.ledger.entries.remote(), timeout=10)
        except Exception:  # best effort, as the progress line: never fail a run over the report
            return ""
        if len(entries) > self._written:
            storage.write_text(self.path, as_csv(entries))
            self._written = len(entries)
        return describe(entries, self.path)
