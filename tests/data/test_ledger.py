"""Corrupt videos by name: the ledger decode tasks report to, its CSV, and the progress line."""

from __future__ import annotations

import io
import time

import pytest

pytestmark = pytest.mark.ray


def test_the_ledger_names_each_video_once_and_keeps_the_list(ray_session, tmp_path):
    from vfn.data.ledger import CorruptWatch, report_corrupt
    from vfn.data.video import CorruptVideoError

    watch = CorruptWatch(str(tmp_path))
    assert watch.note() == "" and not (tmp_path / "corrupt_videos.csv").exists()
    for _ in range(2):  # every epoch skips them again: named once
        for name in ("a.avi", "b.mp4", "c.mkv", "d.avi"):
            report_corrupt(watch.ledger, "train", f"/data/{name}", CorruptVideoError(f"{name}: moov atom not found"))
    report_corrupt(None, "train", "/data/e.avi", CorruptVideoError("no ledger: nothing happens"))
    deadline = time.monotonic() + 10
    while not watch.note().startswith("4 ") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert watch.note() == f"4 corrupt videos skipped (a.avi, b.mp4, c.mkv, ...; all in {tmp_path}/corrupt_videos.csv)"
    lines = (tmp_path / "corrupt_videos.csv").read_text().splitlines()
    assert lines[0] == "split,path,reason" and lines[1] == "train,/data/a.avi,a.avi: moov atom not found"
    assert len(lines) == 5


def test_the_progress_line_carries_the_note(ray_session):
    import ray

    from vfn.training.progress import ProgressBoard, ProgressPrinter

    board = ProgressBoard.remote()
    ray.get(board.update.remote({"epoch": 1, "epochs": 2, "step": 3, "steps": 5, "loss": 1.0, "lr": 0.1,
                                 "clips_per_s": 10.0, "data_wait": 0.5, "epoch_done": 1}))
    out = io.StringIO()
    with ProgressPrinter(board, stream=out, interval_s=0.05, note=lambda: "1 corrupt video skipped (a.avi; all in X)"):
        time.sleep(1.0)
    first = out.getvalue().splitlines()[0]
    assert first.startswith("epoch 1/2 [3/5] loss 1.000")
    assert first.endswith(" | 1 corrupt video skipped (a.avi; all in X)")
    ray.kill(board)
