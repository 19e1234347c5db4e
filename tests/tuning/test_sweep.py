"""A tiny real sweep on local Ray (2 CPUs): ASHA stopping a trial, failing trials, MLflow
parent/child runs, the ablation report, resuming, `vfn compare` on the result, and nothing left
reserved afterwards. Four trials, two of which train: each trained trial costs ~30 s of start-up."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.support import tiny_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def write_specs(tmp_path, data):
    base = tiny_experiment(data, tmp_path / "work", optim={"epochs": 2}, tracking={"experiment": "sweep-test"})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {
        "name": "tiny",
        "base": "base.yaml",
        # a learning rate of 0.3 blows AdamW's first steps up: that trial's epoch-1 loss is far
        # above the other's, whatever the data order, so ASHA stops it every time
        "space": {"optim.lr": {"grid": [0.001, 0.3]},
                  # the last value is impossible for 4 stages: those trials fail, the others train
                  "model.focal_levels": {"grid": [[1, 1, 1, 1], [2, 2, 2]]}},
        "seeds": [0],  # 4 trials: 2 fail at once, 2 train
        "trial": {"num_workers": 1, "cpus_per_worker": 0.5},
        "max_concurrent_trials": 1,  # trials reach ASHA's rung in grid order: the good one first
        # one rung at epoch 1 that keeps only a trial better than 3/4 of those before it: ASHA stops
        # (kills) the second there, which is what used to leave placement groups reserved
        "metric": "train_loss", "mode": "min",
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 4},
    }
    (tmp_path / "ablate.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "ablate.yaml"


def test_asha_sweep_stops_a_trial_reports_failures_nests_resumes_compares_and_frees_everything(
        ray_session, tiny_shards, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from tests.support import live_placement_groups
    from vfn.config.sweep import load_sweep
    from vfn.tracking.compare import compare
    from vfn.tuning.sweep import run_sweep

    spec, base = load_sweep(write_specs(tmp_path, tiny_shards))
    groups_before, cpus_before = set(live_placement_groups()), ray_session.available_resources()["CPU"]
    result = run_sweep(spec, base, kind="ablate")

    assert len(result.outcomes) == 4
    failed = [o for o in result.outcomes if o.error]
    finished = [o for o in result.outcomes if not o.error]
    assert len(failed) == 2 and all(o.setting["model.focal_levels"] != [1, 1, 1, 1] for o in failed)
    assert all("focal_levels" in o.error and "one entry per stage" in o.error for o in failed)
    assert {o.setting["optim.lr"] for o in finished} == {0.001, 0.3}
    assert all(0.0 <= o.metrics["val_top1"] <= 1.0 and o.metrics["epoch"] >= 1 for o in finished)
    stopped = [o for o in finished if o.metrics["epoch"] < 2]
    assert [o.setting["optim.lr"] for o in stopped] == [0.3], [o.metrics for o in finished]  # stopped mid-run

    # the terminal: one line per trial event, each failure in one line with its reason
    lines = capsys.readouterr().out.splitlines()
    assert sum(" failed: " in ln and "one entry per stage" in ln for ln in lines) == 2, lines
    assert sum("stopped by the scheduler after epoch 1" in ln for ln in lines) == 1, lines
    assert any(ln.startswith("[4/4 done, 0 running, 2 failed") for ln in lines), lines

    # every trial's Train workers gave their placement group back, stopped ones included
    deadline = time.monotonic() + 30
    while (set(live_placement_groups()) != groups_before
           or ray_session.available_resources().get("CPU", 0) < cpus_before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(live_placement_groups()) == groups_before, live_placement_groups()
    assert ray_session.available_resources().get("CPU", 0) == cpus_before

    # the ablation report: one row per setting, failures explained, files written
    table = result.report["markdown"].read_text()
    assert "| 1-1-1-1 | 0.001 |" in table and "| 1-1-1-1 | 0.3 |" in table
    assert "Failed trials:" in table and "one entry per stage" in table
    assert result.report["csv"].is_file() and result.report["png"].stat().st_size > 1000

    # MLflow: a parent run for the sweep, one nested child per trial that trained
    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["vfn.kind"] == "ablate"
    assert parent.data.metrics["trials_failed"] == 2
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert artifacts >= {"report/ablation.md", "report/ablation.csv"}
    exp = client.get_experiment_by_name("sweep-test")
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert sorted(c.data.params["optim.lr"] for c in children) == ["0.001", "0.3"]
    # the stopped trial's run is closed as KILLED (Tune killed its process), the other FINISHED
    assert {c.data.params["optim.lr"]: c.info.status for c in children} == {"0.001": "FINISHED", "0.3": "KILLED"}
    assert [c.data.tags.get("vfn.stopped") for c in children if c.info.status == "KILLED"] == [
        "by the scheduler after epoch 1"]
    assert all(c.data.params["model.focal_levels"] == "[1, 1, 1, 1]" for c in children)
    assert all(c.data.metrics.get("epoch/val_top1") is not None for c in children)

    # the same command again restores the finished experiment: nothing re-runs, same parent run
    again = run_sweep(spec, base, kind="ablate")
    assert again.parent_run_id == result.parent_run_id
    assert len(client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")) == 2
    assert sorted(o.metrics.get("val_top1", -1) for o in again.outcomes) == sorted(
        o.metrics.get("val_top1", -1) for o in result.outcomes)

    # vfn compare: the two trials side by side, the differing param shown
    cmp = compare(result.tracking_uri, ["sweep-test"], "epoch/val_top1", "params.`optim.lr` = '0.3'",
                  out=tmp_path / "compare.png")
    assert [r.params["optim.lr"] for r in cmp["rows"]] == ["0.3"]
    cmp = compare(result.tracking_uri, [c.info.run_id for c in children], "epoch/val_top1",
                  out=tmp_path / "compare.png")
    assert "optim.lr" in cmp["table"].splitlines()[0] and (tmp_path / "compare.png").stat().st_size > 1000


def test_search_dims_map_to_tune():
    from ray import tune

    from vfn.config.sweep import SearchDim
    from vfn.tuning.sweep import tune_domain

    assert tune_domain(SearchDim(grid=[1, 2])) == {"grid_search": [1, 2]}
    assert isinstance(tune_domain(SearchDim(loguniform=(1e-3, 1e-1))), tune.search.sample.Float)
    assert isinstance(tune_domain(SearchDim(choice=["a", "b"])), tune.search.sample.Categorical)
