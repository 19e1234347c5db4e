"""A tiny real sweep on local Ray (2 CPUs): 8 trials, ASHA stopping several, failing trials, MLflow
parent/child runs, the ablation report, resuming, `vfn compare` on the result, and nothing left
reserved afterwards."""

from __future__ import annotations

import time

import pytest
import yaml

from conftest import tiny_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def write_specs(tmp_path, data):
    base = tiny_experiment(data, tmp_path / "work", optim={"epochs": 2}, tracking={"experiment": "sweep-test"})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {
        "name": "tiny",
        "base": "base.yaml",
        "space": {"model.design": {"grid": ["parallel", "spatial"]},
                  # the last value is impossible for 4 stages: those trials fail, the others train
                  "model.focal_levels": {"grid": [[1, 1, 1, 1], [2, 2, 2]]}},
        "seeds": [0, 1],  # 8 trials: 4 fail at once, 4 train
        "trial": {"num_workers": 1, "cpus_per_worker": 0.5},
        "max_concurrent_trials": 1,  # trials reach ASHA's rung in a fixed order: the same ones stop every run
        # one rung at epoch 1 that keeps only a trial better than 3/4 of those before it: ASHA stops
        # (kills) most trials there, which is what used to leave their placement groups reserved.
        # The training loss, not the accuracy on a few validation videos, so that ties are rare
        "metric": "train_loss", "mode": "min",
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 4},
    }
    (tmp_path / "ablate.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "ablate.yaml"


def test_asha_sweep_of_8_trials_stops_some_reports_nests_resumes_compares_and_frees_everything(
        ray_session, tiny_shards, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from conftest import live_placement_groups
    from vfn.platform.compare import compare
    from vfn.platform.sweep import run_sweep
    from vfn.platform.sweep_spec import load_sweep

    spec, base = load_sweep(write_specs(tmp_path, tiny_shards))
    groups_before, cpus_before = set(live_placement_groups()), ray_session.available_resources()["CPU"]
    result = run_sweep(spec, base, kind="ablate")

    assert len(result.outcomes) == 8
    failed = [o for o in result.outcomes if o.error]
    finished = [o for o in result.outcomes if not o.error]
    assert len(failed) == 4 and all(o.setting["model.focal_levels"] != [1, 1, 1, 1] for o in failed)
    assert all("focal_levels" in o.error and "one entry per stage" in o.error for o in failed)
    assert {o.setting["model.design"] for o in finished} == {"parallel", "spatial"}
    assert all(0.0 <= o.metrics["val_top1"] <= 1.0 and o.metrics["epoch"] >= 1 for o in finished)
    stopped = [o for o in finished if o.metrics["epoch"] < 2]
    assert len(stopped) >= 2, [o.metrics["epoch"] for o in finished]  # ASHA stopped several mid-run

    # the terminal: one line per trial event, each failure in one line with its reason
    lines = capsys.readouterr().out.splitlines()
    assert sum(" failed: " in ln and "one entry per stage" in ln for ln in lines) == 4, lines
    assert sum("stopped by the scheduler after epoch 1" in ln for ln in lines) == len(stopped), lines
    assert any(ln.startswith("[8/8 done, 0 running, 4 failed") for ln in lines), lines

    # every trial's Train workers gave their placement group back, stopped ones included
    deadline = time.monotonic() + 30
    while (set(live_placement_groups()) != groups_before
           or ray_session.available_resources().get("CPU", 0) < cpus_before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(live_placement_groups()) == groups_before, live_placement_groups()
    assert ray_session.available_resources().get("CPU", 0) == cpus_before

    # the ablation report: one row per setting, failures explained, files written
    table = result.report["markdown"].read_text()
    assert "| parallel | 1-1-1-1 |" in table and "| spatial | 1-1-1-1 |" in table
    assert "Failed trials:" in table and "one entry per stage" in table
    assert result.report["csv"].is_file() and result.report["png"].stat().st_size > 1000

    # MLflow: a parent run for the sweep, one nested child per trial that trained
    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["vfn.kind"] == "ablate"
    assert parent.data.metrics["trials_failed"] == 4
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert artifacts >= {"report/ablation.md", "report/ablation.csv"}
    exp = client.get_experiment_by_name("sweep-test")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert sorted(c.data.params["model.design"] for c in children) == ["parallel"] * 2 + ["spatial"] * 2
    assert all(c.data.params["model.focal_levels"] == "[1, 1, 1, 1]" for c in children)
    assert all(c.data.metrics.get("epoch/val_top1") is not None for c in children)

    # the same command again restores the finished experiment: nothing re-runs, same parent run
    again = run_sweep(spec, base, kind="ablate")
    assert again.parent_run_id == result.parent_run_id
    assert len(client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")) == 4
    assert sorted(o.metrics.get("val_top1", -1) for o in again.outcomes) == sorted(
        o.metrics.get("val_top1", -1) for o in result.outcomes)

    # vfn compare: the two trials side by side, the differing param shown
    cmp = compare(result.tracking_uri, ["sweep-test"], "epoch/val_top1", "tags.design = 'spatial'",
                  out=tmp_path / "compare.png")
    assert len(cmp["rows"]) == 2 and "spatial" in cmp["table"]
    cmp = compare(result.tracking_uri, [c.info.run_id for c in children], "epoch/val_top1",
                  out=tmp_path / "compare.png")
    assert "model.design" in cmp["table"].splitlines()[0] and (tmp_path / "compare.png").stat().st_size > 1000
