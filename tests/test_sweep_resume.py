"""A sweep whose driver is killed mid-run resumes with the same command: the finished trial is not
re-run, the interrupted one continues from its last checkpoint and ends with the full step count.

The driver runs in a subprocess with its own local Ray (`--address local`), so killing it takes its
Ray processes down too, as a crashed laptop or a lost head node would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EPOCHS = 3


def _command(spec: Path) -> list[str]:
    return [sys.executable, "-c", "import sys; from vfn.cli import main; sys.exit(main())",
            "sweep", str(spec), "--address", "local"]


def _results(exp_dir: Path) -> dict[str, list[dict]]:
    """Tune's per-trial result.json lines, by design."""
    out = {}
    for f in exp_dir.glob("_run_trial_*/result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        design = "parallel" if "design=parallel" in f.parent.name else "spatial"
        out[design] = rows
    return out


def _checkpoints(run_dir: Path) -> int:
    return len(list(run_dir.glob("checkpoint_*")))


def test_killed_sweep_driver_resumes_without_rerunning_finished_trials(tiny_shards, tmp_path):
    work = tmp_path / "work"
    base = tiny_experiment(tiny_shards, work, optim={"epochs": EPOCHS}, eval={"every_epochs": 1},
                           output={"checkpoint_every": 1}, tracking={"experiment": "resume-test"})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "resume", "base": "base.yaml", "space": {"model.design": {"grid": ["parallel", "spatial"]}},
        "seeds": [0], "trial": {"num_workers": 1, "cpus_per_worker": 0.5},
        "max_concurrent_trials": 1,  # one after the other: the kill lands between a finished and a running trial
    }))
    exp_dir = work / "ray_results" / "resume"
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    env.pop("RAY_ADDRESS", None)

    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(_command(spec), cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 600
    try:
        # wait for: one trial finished (all epochs reported) and the other with a checkpoint, not finished
        while True:
            assert first.poll() is None, ("the sweep ended before it could be interrupted:\n"
                                          f"{(tmp_path / 'first.log').read_text()[-3000:]}")
            assert time.time() < deadline, "timed out waiting for the first trial to finish"
            results = _results(exp_dir)
            done = [d for d, rows in results.items() if rows and rows[-1].get("epoch") == EPOCHS]
            running = [d for d in results if d not in done]
            run_dirs = [p for p in (work / "runs").glob("resume-*")] if (work / "runs").is_dir() else []
            if done and running and any(_checkpoints(p) >= 1 for p in run_dirs if _checkpoints(p) < EPOCHS):
                break
            time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        log.close()
    finished, interrupted = done[0], running[0]
    lines_before = len(_results(exp_dir)[finished])
    time.sleep(5)  # Ray's reaper takes the dead driver's local cluster down

    again = subprocess.run(_command(spec), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming" in again.stdout

    results = _results(exp_dir)
    assert len(results[finished]) == lines_before, "the finished trial was run again"
    assert results[finished][-1]["restarts"] == 0
    last = results[interrupted][-1]
    assert last["epoch"] == EPOCHS and last["restarts"] >= 1, (
        "the interrupted trial did not continue from its checkpoint")
    # the same number of optimiser steps as the trial that was never interrupted
    assert last["global_step"] == results[finished][-1]["global_step"] > 0
    # and both appear in the report, each once
    report_md = exp_dir / "report" / "ablation.md"
    table = report_md.read_text() if report_md.exists() else again.stdout
    assert table.count("| parallel |") == 1 and table.count("| spatial |") == 1
