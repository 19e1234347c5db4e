"""Side-by-side comparison of MLflow runs: the params that differ, the metric's best and last
values, and two plots.

Runs are named by run id, run name, or experiment name (all its runs); `filter` is an MLflow
search expression such as "params.`model.design` = 'spatial'" or "tags.design = 'parallel'".
A sweep's or ablation's parent run (which holds the base experiment as `base.*` params) is shown
as a heading over its trials, not as a row.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException

from .figures import save_figure
from .runs import mlflow_client

FORMATS = ("table", "csv", "md")
NAME_WIDTH = 36  # run names of sweep trials spell out their setting: the differing params show it anyway


class CompareError(ValueError):
    pass


@dataclass
class RunRow:
    run_id: str
    name: str
    experiment: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    best: float | None = None  # of the compared metric over its history
    children: list[RunRow] = field(default_factory=list)  # a sweep parent's trials

    @property
    def gflops(self) -> float:
        return float(self.tags.get("gflops_per_view", "nan"))

    @property
    def parent_id(self) -> str | None:
        return self.tags.get("mlflow.parentRunId")

    @property
    def is_sweep(self) -> bool:
        return self.tags.get("vfn.kind") in ("sweep", "ablate")


def find_runs(client, selectors: list[str], filter_string: str = "", max_runs: int = 200) -> list[RunRow]:
    """Resolve run ids / run names / experiment names to runs (all experiments when none given)."""
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        raise CompareError("the tracking store has no experiments yet")
    runs, unmatched = [], []
    if not selectors:
        runs = client.search_runs(list(experiments), filter_string, max_results=max_runs)
    for sel in selectors:
        exp = client.get_experiment_by_name(sel)
        if exp is not None:
            runs += client.search_runs([exp.experiment_id], filter_string, max_results=max_runs)
            continue
        try:
            runs.append(client.get_run(sel))
            continue
        except MlflowException:
            pass
        by_name = client.search_runs(list(experiments), f"attributes.run_name = '{sel}'", max_results=max_runs)
        if by_name:
            runs += by_name
        else:
            unmatched.append(sel)
    if unmatched:
        raise CompareError(f"no run id, run name or experiment called: {', '.join(unmatched)}")
    seen, rows = set(), []
    for r in runs:
        if r.info.run_id in seen:
            continue
        seen.add(r.info.run_id)
        rows.append(run_row(r, experiments.get(r.info.experiment_id, "?")))
    if not rows:
        raise CompareError(f"no runs match{f' filter {filter_string!r}' if filter_string else ''}")
    return rows


def run_row(run, experiment: str) -> RunRow:
    return RunRow(run.info.run_id, run.info.run_name or run.info.run_id[:8], experiment, run.info.status,
                  dict(run.data.params), dict(run.data.metrics), dict(run.data.tags))


def differing_params(rows: list[RunRow], ignore_prefixes: tuple[str, ...] = ("tracking.", "output.", "data.train",
                                                                              "data.val", "debug.")) -> list[str]:
    keys = sorted({k for r in rows for k in r.params})
    return [k for k in keys if not k.startswith(ignore_prefixes) and len({r.params.get(k) for r in rows}) > 1]


def group_sweeps(client, rows: list[RunRow]) -> list[RunRow]:
    """Top-level rows: a sweep parent carries its trials (those among `rows`, or all of them when
    only the parent was named) as `children`; plain runs stay rows."""
    parents = {r.run_id: r for r in rows if r.is_sweep}
    for parent in parents.values():
        parent.children = [r for r in rows if r.parent_id == parent.run_id]
        if not parent.children:
            found = client.search_runs([client.get_run(parent.run_id).info.experiment_id],
                                       f"tags.mlflow.parentRunId = '{parent.run_id}'", max_results=1000)
            parent.children = [run_row(r, parent.experiment) for r in found]
    return [r for r in rows if r.run_id in parents or r.parent_id not in parents]


def add_best(client, rows: list[RunRow], metric: str, mode: str) -> None:
    """Each run's best value of `metric` over its logged history (max or min)."""
    pick = max if mode == "max" else min
    for r in rows:
        history = [m.value for m in client.get_metric_history(r.run_id, metric)]
        r.best = pick(history) if history else None


def table(groups: list[RunRow], metric: str, mode: str = "max", fmt: str = "table", all_params: bool = False) -> str:
    """Runs (sweep trials under their sweep's heading) with the params that differ between them (all
    with `all_params`), GFLOPs per view, and the metric's best and last values, best first."""
    if fmt not in FORMATS:
        raise CompareError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    runs = [r for g in groups for r in (g.children if g.is_sweep else [g])]
    params = sorted({k for r in runs for k in r.params}) if all_params else differing_params(runs)
    short = metric.removeprefix("epoch/")
    head = ["run", "status", *params, "GFLOPs", f"best {short}", f"last {short}"]
    body: list[list[str]] = []
    for g in sorted(groups, key=lambda g: _rank(g, mode)):
        members = sorted(g.children, key=lambda r: _rank(r, mode)) if g.is_sweep else [g]
        if g.is_sweep:
            body.append([f"{g.tags['vfn.kind']} {g.name} ({len(g.children)} trials)", g.status]
                        + [""] * (len(head) - 2))
        for r in members:
            name = ("  " if g.is_sweep else "") + _clip(r.name, NAME_WIDTH)
            body.append([name, r.status, *(r.params.get(p, "-") for p in params),
                         r.tags.get("gflops_per_view", "-"), _value(r.best), _value(r.metrics.get(metric))])
    return render(head, body, fmt)


def _rank(r: RunRow, mode: str) -> float:
    value = r.best if not r.is_sweep else max((c.best for c in r.children if c.best is not None), default=None)
    if value is None:
        return math.inf
    return -value if mode == "max" else value


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render(head: list[str], body: list[list[str]], fmt: str) -> str:
    """Aligned text, CSV, or a Markdown table."""
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([head, *body])
        return out.getvalue().rstrip("\n")
    if fmt == "md":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(str(x).strip() for x in row) + " |" for row in body])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [line.format(*head), line.format(*("-" * w for w in widths))]
    return "\n".join(ln.rstrip() for ln in lines + [line.format(*(str(x) for x in row)) for row in body])


def plot(client, rows: list[RunRow], metric: str, out: Path) -> Path:
    """Learning curves of `metric` and `metric` vs GFLOPs per view, written to `out` (PNG)."""
    fig = Figure(figsize=(13, 4.5), dpi=110, layout="tight")
    curves, cost = fig.subplots(1, 2)
    for r in rows:
        history = sorted(client.get_metric_history(r.run_id, metric), key=lambda m: (m.step, m.timestamp))
        if history:
            curves.plot([m.step for m in history], [m.value for m in history], marker=".", label=r.name)
        if metric in r.metrics and not math.isnan(r.gflops):
            cost.scatter(r.gflops, r.metrics[metric])
            cost.annotate(r.name, (r.gflops, r.metrics[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if (level := chance_level(rows, metric)) is not None:
        for ax in (curves, cost):
            ax.axhline(level, color="grey", linestyle="--", linewidth=1, label="chance")
    curves.set(title=f"{metric} per step/epoch", xlabel="step", ylabel=metric)
    cost.set(title=f"{metric} vs GFLOPs per view", xlabel="GFLOPs per view", ylabel=metric)
    for ax in (curves, cost):
        ax.grid(alpha=0.3)
    if len(rows) <= 12 and curves.lines:
        curves.legend(fontsize=8)
    return save_figure(fig, out)


def chance_level(rows: list[RunRow], metric: str) -> float | None:
    """A guess's top-1 (top-5) accuracy when every run has the same known class count, else None."""
    classes = {r.params.get("data.num_classes") for r in rows}
    if len(classes) != 1 or None in classes or not any(k in metric for k in ("top1", "top5", "class_acc")):
        return None
    n = int(next(iter(classes)))
    return min(1.0, (5 if "top5" in metric else 1) / n)


def compare(tracking_uri: str, selectors: list[str], metric: str, filter_string: str = "",
            out: Path | None = None, fmt: str = "table", all_params: bool = False,
            mode: str | None = None) -> dict[str, Any]:
    """The comparison table (and with `out` the plot); `mode` defaults to min for losses, else max."""
    client = mlflow_client(tracking_uri)
    mode = mode or ("min" if "loss" in metric else "max")
    groups = group_sweeps(client, find_runs(client, selectors, filter_string))
    runs = [r for g in groups for r in (g.children if g.is_sweep else [g])]
    add_best(client, runs, metric, mode)
    text = table(groups, metric, mode, fmt, all_params)
    png = plot(client, runs, metric, out) if out else None
    return {"rows": runs, "groups": groups, "table": text, "png": png}
