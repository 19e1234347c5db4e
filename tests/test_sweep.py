"""A tiny real sweep on local Ray (2 CPUs): ASHA, a failing trial, MLflow parent/child runs, the
ablation report, resuming, and `vfn compare` on the result."""

from __future__ import annotations

import pytest
import yaml

from conftest import tiny_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def write_specs(tmp_path, data):
    base = tiny_experiment(data, tmp_path / "work", optim={"epochs": 1}, tracking={"experiment": "sweep-test"})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {
        "name": "tiny",
        "base": "base.yaml",
        "space": {"model.design": {"grid": ["parallel", "spatial"]},
                  # the second value is impossible for 4 stages: those trials fail, the others finish
                  "model.focal_levels": {"grid": [[1, 1, 1, 1], [2, 2, 2]]}},
        "seeds": [0],
        "trial": {"num_workers": 1, "cpus_per_worker": 0.5},
        # grace = epochs: ASHA schedules and reports but stops no trial, so no trial is killed mid-run
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    }
    (tmp_path / "ablate.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "ablate.yaml"


def test_tiny_asha_sweep_reports_nests_resumes_and_compares(ray_session, tiny_shards, tmp_path):
    from mlflow.tracking import MlflowClient

    from vfn.platform.compare import compare
    from vfn.platform.sweep import run_sweep
    from vfn.platform.sweep_spec import load_sweep

    spec, base = load_sweep(write_specs(tmp_path, tiny_shards))
    result = run_sweep(spec, base, kind="ablate")

    assert len(result.outcomes) == 4
    failed = [o for o in result.outcomes if o.error]
    finished = [o for o in result.outcomes if not o.error]
    assert len(failed) == 2 and all(o.setting["model.focal_levels"] == [2, 2, 2] for o in failed)
    assert all("focal_levels" in o.error and "one entry per stage" in o.error for o in failed)
    assert {o.setting["model.design"] for o in finished} == {"parallel", "spatial"}
    assert all(0.0 <= o.metrics["val_top1"] <= 1.0 and o.metrics["epoch"] >= 1 for o in finished)

    # the ablation report: one row per setting, failures explained, files written
    table = result.report["markdown"].read_text()
    assert "| parallel | 1-1-1-1 |" in table and "| spatial | 1-1-1-1 |" in table
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
    assert sorted(c.data.params["model.design"] for c in children) == ["parallel", "spatial"]
    assert all(c.data.params["model.focal_levels"] == "[1, 1, 1, 1]" for c in children)
    assert all(c.data.metrics.get("epoch/val_top1") is not None for c in children)

    # the same command again restores the finished experiment: nothing re-runs, same parent run
    again = run_sweep(spec, base, kind="ablate")
    assert again.parent_run_id == result.parent_run_id
    assert len(client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")) == 2
    assert sorted(o.metrics.get("val_top1", -1) for o in again.outcomes) == sorted(
        o.metrics.get("val_top1", -1) for o in result.outcomes)

    # vfn compare: the two trials side by side, the differing param shown
    cmp = compare(result.tracking_uri, ["sweep-test"], "epoch/val_top1", "tags.design = 'spatial'",
                  out=tmp_path / "compare.png")
    assert len(cmp["rows"]) == 1 and "spatial" in cmp["table"]
    cmp = compare(result.tracking_uri, [c.info.run_id for c in children], "epoch/val_top1",
                  out=tmp_path / "compare.png")
    assert "model.design" in cmp["table"].splitlines()[0] and (tmp_path / "compare.png").stat().st_size > 1000
