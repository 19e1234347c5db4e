"""`vfn compare` without Ray: two runs in a local store, the table of what differs, the plot."""

from __future__ import annotations

import argparse

from vfn.platform.commands import compare as compare_command
from vfn.platform.compare import compare
from vfn.platform.config import load_config
from vfn.platform.tracking import MetricLogger, default_tracking_uri, start_run, tracking_uri


def test_compare_two_runs_and_the_missing_store(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    # no store in the current directory: one line, nothing created
    args = argparse.Namespace(runs=[], metric="epoch/val_top1", filter="", tracking_uri=None, out="c.png")
    assert compare_command.run(args) == 2
    assert f"no MLflow store at {tmp_path / 'mlflow.db'}" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()

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
