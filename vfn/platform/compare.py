"""Side-by-side comparison of MLflow runs: the params that differ, the metrics, and two plots.

Runs are named by run id, run name, or experiment name (all its runs); `filter` is an MLflow
search expression such as "params.`model.design` = 'spatial'" or "tags.design = 'parallel'".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_METRICS = ("epoch/val_top1", "epoch/val_top5", "epoch/train_top1", "epoch/train_clips_per_s")


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

    @property
    def gflops(self) -> float:
        return float(self.tags.get("gflops_per_view", "nan"))


def find_runs(client, selectors: list[str], filter_string: str = "", max_runs: int = 200) -> list[RunRow]:
    """Resolve run ids / run names / experiment names to runs (all experiments when none given)."""
    from mlflow.exceptions import MlflowException

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
        rows.append(RunRow(r.info.run_id, r.info.run_name or r.info.run_id[:8],
                           experiments.get(r.info.experiment_id, "?"), r.info.status,
                           dict(r.data.params), dict(r.data.metrics), dict(r.data.tags)))
    if not rows:
        raise CompareError(f"no runs match{f' filter {filter_string!r}' if filter_string else ''}")
    return rows


def differing_params(rows: list[RunRow], ignore_prefixes: tuple[str, ...] = ("tracking.", "output.", "data.train",
                                                                              "data.val", "debug.")) -> list[str]:
    keys = sorted({k for r in rows for k in r.params})
    return [k for k in keys if not k.startswith(ignore_prefixes) and len({r.params.get(k) for r in rows}) > 1]


def table(rows: list[RunRow], metrics: list[str], sort_by: str | None = None) -> str:
    params = differing_params(rows)
    if sort_by:
        rows = sorted(rows, key=lambda r: -r.metrics.get(sort_by, -math.inf))
    head = ["run", "id", "status", *params, "GFLOPs", *metrics]
    body = []
    for r in rows:
        values = [f"{r.metrics[m]:.4g}" if m in r.metrics else "-" for m in metrics]
        body.append([r.name, r.run_id[:8], r.status, *(r.params.get(p, "-") for p in params),
                     r.tags.get("gflops_per_view", "-"), *values])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*(str(x) for x in row)) for row in body]
    return "\n".join(lines)


def plot(client, rows: list[RunRow], metric: str, out: Path) -> Path:
    """Learning curves of `metric` and `metric` vs GFLOPs per view, written to `out` (PNG)."""
    from matplotlib.figure import Figure

    from .tracking import save_figure

    fig = Figure(figsize=(13, 4.5), dpi=110, layout="tight")
    curves, cost = fig.subplots(1, 2)
    for r in rows:
        history = sorted(client.get_metric_history(r.run_id, metric), key=lambda m: (m.step, m.timestamp))
        if history:
            curves.plot([m.step for m in history], [m.value for m in history], marker=".", label=r.name)
        if metric in r.metrics and not math.isnan(r.gflops):
            cost.scatter(r.gflops, r.metrics[metric])
            cost.annotate(r.name, (r.gflops, r.metrics[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    curves.set(title=f"{metric} per step/epoch", xlabel="step", ylabel=metric)
    cost.set(title=f"{metric} vs GFLOPs per view", xlabel="GFLOPs per view", ylabel=metric)
    for ax in (curves, cost):
        ax.grid(alpha=0.3)
    if len(rows) <= 12 and curves.lines:
        curves.legend(fontsize=8)
    return save_figure(fig, out)


def compare(tracking_uri: str, selectors: list[str], metric: str, filter_string: str = "",
            out: Path | None = None, extra_metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict[str, Any]:
    from .tracking import mlflow_client

    client = mlflow_client(tracking_uri)
    rows = find_runs(client, selectors, filter_string)
    metrics = list(dict.fromkeys([metric, *extra_metrics]))
    text = table(rows, metrics, sort_by=metric)
    png = plot(client, rows, metric, out) if out else None
    return {"rows": rows, "table": text, "png": png}
