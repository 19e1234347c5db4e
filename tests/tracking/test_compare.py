"""`vfn compare` without Ray: two runs in a local store, the table of what differs, the plot."""

from __future__ import annotations

import argparse
import csv
import io
import re

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from vfn.commands import compare as compare_command
from vfn.config.load import load_config
from vfn.tracking.compare import compare
from vfn.tracking.runs import MetricLogger, default_tracking_uri, start_run, tracking_uri


def test_compare_two_runs_and_the_missing_store(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    # no store in the current directory: one line, nothing created
    args = argparse.Namespace(runs=[], metric="epoch/val_top1", filter="", tracking_uri=None, out="c.png",
                              format="table", all_params=False, mode=None)
    assert compare_command.run(args) == 2
    err = capsys.readouterr().err
    assert f"no MLflow store at {tmp_path / 'mlflow.db'}; give --tracking-uri" in err
    assert not (tmp_path / "mlflow.db").exists()
    # after `make quickstart` the store is in its work directory: the line names it
    (tmp_path / "quickstart_run").mkdir()
    (tmp_path / "quickstart_run" / "mlflow.db").write_bytes(b"")
    assert compare_command.run(args) == 2
    assert "stores here: --tracking-uri sqlite:///quickstart_run/mlflow.db" in capsys.readouterr().err
    (tmp_path / "quickstart_run" / "mlflow.db").unlink()

    for design, top1 in (("parallel", 0.6), ("spatial", 0.4)):
        cfg = load_config(None, [f"output.root={tmp_path}", f"output.name={design}", f"model.design={design}",
                                 "tracking.experiment=cmp"])
        uri = tracking_uri(cfg)
        logger = MetricLogger(uri, start_run(cfg, tmp_path / "runs" / design, tags={"gflops_per_view": "1.0"}))
        logger.log({"epoch/val_top1": top1 / 2}, step=1)
        logger.log({"epoch/val_top1": top1}, step=2)
        logger.flush()
    assert uri == default_tracking_uri(".")  # `vfn compare` reads the store `vfn train` wrote here

    result = compare(uri, ["cmp"], "epoch/val_top1", out=tmp_path / "compare.png")
    header, _, first, second = result["table"].splitlines()
    assert "model.design" in header and "output.name" not in header  # what differs, not where it went
    assert first.startswith("parallel") and second.startswith("spatial")  # sorted by the metric
    assert result["png"].stat().st_size > 1000

    args.runs, args.out = ["spatial"], str(tmp_path / "one.png")  # by run name, through the command
    assert compare_command.run(args) == 0
    assert "1 runs" in capsys.readouterr().out


def _runs(tmp_path, experiment: str, designs: list[str], parent_run_id: str | None = None) -> str:
    for i, design in enumerate(designs):
        cfg = load_config(None, [f"output.root={tmp_path}", f"output.name={experiment}-{design}",
                                 f"model.design={design}", f"tracking.experiment={experiment}"])
        run_id = start_run(cfg, tmp_path / "runs" / f"{experiment}-{design}", parent_run_id=parent_run_id,
                           run_name=f"model.design={design}, model.focal_levels=[2, 2, 2, 2] seed=0",
                           tags={"gflops_per_view": "1.0"})
        logger = MetricLogger(tracking_uri(cfg), run_id)
        for epoch, top1 in enumerate((0.3, 0.5 + 0.1 * i, 0.4 + 0.1 * i), start=1):  # best at epoch 2
            logger.log({"epoch/val_top1": top1}, step=epoch)
        logger.flush()
    return tracking_uri(cfg)


def test_only_what_differs_best_and_last_in_120_columns(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = _runs(tmp_path, "three", ["parallel", "spatial", "joint"])
    text = compare(uri, ["three"], "epoch/val_top1")["table"]
    header, rule, *rows = text.splitlines()
    assert header.split() == ["run", "status", "model.design", "GFLOPs", "best", "val_top1", "last", "val_top1"]
    assert all(len(line) <= 120 for line in text.splitlines()), text
    cells = [re.split(r"\s{2,}", r) for r in rows]  # columns are 2+ spaces apart
    assert [c[2] for c in cells] == ["joint", "spatial", "parallel"]  # best first
    assert cells[0][-2:] == ["0.7", "0.6"]  # best (epoch 2) and last (epoch 3)

    md = compare(uri, ["three"], "epoch/val_top1", fmt="md")["table"].splitlines()
    assert md[0].startswith("| run | status | model.design |") and md[1].startswith("|---|") and len(md) == 5
    rows = list(csv.reader(io.StringIO(compare(uri, ["three"], "epoch/val_top1", fmt="csv")["table"])))
    assert rows[0][2] == "model.design" and len(rows) == 4
    assert "optim.lr" in compare(uri, ["three"], "epoch/val_top1", all_params=True)["table"].splitlines()[0]


def test_the_chance_level_is_known_where_every_run_has_the_same_class_count(tmp_path, monkeypatch):
    from vfn.tracking.compare import chance_level, find_runs
    from vfn.tracking.runs import mlflow_client

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = _runs(tmp_path, "chance", ["parallel", "spatial"])
    rows = find_runs(mlflow_client(uri), ["chance"])
    classes = int(rows[0].params["data.num_classes"])
    assert chance_level(rows, "epoch/val_top1") == 1 / classes
    assert chance_level(rows, "epoch/val_top5") == min(1.0, 5 / classes)
    assert chance_level(rows, "epoch/train_loss") is None
    png = compare(uri, ["chance"], "epoch/val_top1", out=tmp_path / "c.png")["png"]
    assert png.stat().st_size > 1000


def test_an_ablation_parent_is_a_heading_over_its_trials(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = _runs(tmp_path, "abl", ["parallel"])  # the store and experiment exist
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("abl").experiment_id
    parent = client.create_run(experiment, run_name="design", tags={"vfn.kind": "ablate"}).info.run_id
    client.log_batch(parent, params=[Param("base.optim.lr", "0.1"), Param("base.model.design", "parallel")])
    _runs(tmp_path, "abl", ["spatial", "sequential"], parent_run_id=parent)

    header, rule, *rows = compare(uri, ["abl"], "epoch/val_top1")["table"].splitlines()
    assert "base." not in header and "model.design" in header
    assert rows[0].startswith("parallel") or rows[0].startswith("ablate design (2 trials)")
    heading = rows.index(next(r for r in rows if r.startswith("ablate design (2 trials)")))
    assert rows[heading + 1].startswith("  ") and rows[heading + 2].startswith("  ")
    assert "sequential" in rows[heading + 1] and "spatial" in rows[heading + 2]  # best first within the group
    # naming only the parent shows its trials
    only = compare(uri, [parent], "epoch/val_top1")["table"].splitlines()
    assert len(only) == 5 and only[2].startswith("ablate design (2 trials)")
