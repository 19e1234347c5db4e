"""Paper-style ablation tables: one row per setting, mean ± std over seeds, with model cost.

Written as Markdown and CSV, plus a PNG of top-1 vs GFLOPs (the paper's Figure 1 style).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrialOutcome:
    """What one sweep trial produced (read from Ray Tune's result grid)."""

    setting: dict[str, Any]  # row key -> value, e.g. {"model.design": "spatial"}
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)  # last reported metrics
    error: str | None = None
    trial_id: str = ""


def _label(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def ablation_rows(
    outcomes: list[TrialOutcome],
    row_keys: list[str],
    cost: dict[str, tuple[float, float]],
    top1_key: str = "val_top1",
    top5_key: str = "val_top5",
    speed_key: str = "clips_per_s",
) -> list[dict[str, Any]]:
    """Group trials by their setting; `cost` maps a row name to (params M, GFLOPs)."""
    groups: dict[str, list[TrialOutcome]] = {}
    for o in outcomes:
        groups.setdefault(row_name(o.setting, row_keys), []).append(o)
    rows = []
    for name, trials in groups.items():
        ok = [t for t in trials if t.error is None and top1_key in t.metrics]
        top1 = _mean_std([100 * t.metrics[top1_key] for t in ok])
        top5 = _mean_std([100 * t.metrics[top5_key] for t in ok if top5_key in t.metrics])
        speed = _mean_std([t.metrics[speed_key] for t in ok if speed_key in t.metrics])
        params, gflops = cost.get(name, (math.nan, math.nan))
        rows.append({
            "setting": name, **{k: _label(trials[0].setting.get(k)) for k in row_keys},
            "params_m": params, "gflops": gflops,
            "top1_mean": top1[0], "top1_std": top1[1], "top5_mean": top5[0], "top5_std": top5[1],
            "clips_per_s": speed[0], "seeds": len(ok), "failed": len(trials) - len(ok),
            "errors": "; ".join(sorted({t.error.splitlines()[0][:200] for t in trials if t.error})),
        })
    return rows


def row_name(setting: dict[str, Any], row_keys: list[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={_label(setting.get(k))}" for k in row_keys)


def _pm(mean: float, std: float) -> str:
    return "failed" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}"


def to_markdown(rows: list[dict[str, Any]], row_keys: list[str], title: str, chance: float | None = None) -> str:
    head = [*(k.split(".")[-1] for k in row_keys),
            "params (M)", "GFLOPs/view", "top-1 (%)", "top-5 (%)", "clips/s", "seeds"]
    lines = [f"### {title}", ""]
    if chance is not None:
        lines += [f"Chance: {100 * chance:.1f}% top-1. Mean ± std over seeds.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r[k] for k in row_keys] + [
            f"{r['params_m']:.3g}", f"{r['gflops']:.3g}", _pm(r["top1_mean"], r["top1_std"]),
            _pm(r["top5_mean"], r["top5_std"]), "-" if math.isnan(r["clips_per_s"]) else f"{r['clips_per_s']:.1f}",
            f"{r['seeds']}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    errors = [f"- {r['setting']}: {r['errors']}" for r in rows if r["errors"]]
    if errors:
        lines += ["", "Failed trials:", *errors]
    return "\n".join(lines) + "\n"


def accuracy_vs_gflops_figure(rows: list[dict[str, Any]], title: str, chance: float | None = None):
    """Top-1 (mean ± std over seeds) against GFLOPs per view, one marker per setting, and the
    chance level as a dashed line when the class count is known."""
    from matplotlib.figure import Figure  # LAZY: matplotlib only for the figure

    fig = Figure(figsize=(6, 4.5), dpi=120, layout="tight")
    ax = fig.subplots()
    markers = "osD^vPX*"  # settings often share a point (same cost, same accuracy): a legend, not labels
    for i, r in enumerate(x for x in rows if not math.isnan(x["top1_mean"])):
        ax.errorbar(r["gflops"], r["top1_mean"], yerr=r["top1_std"], fmt=markers[i % len(markers)], capsize=3,
                    markersize=7, alpha=0.85, label=r["setting"])
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("GFLOPs per view")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=10)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8, loc="best")
    return fig


def write_report(rows: list[dict[str, Any]], row_keys: list[str], out_dir: Path, title: str,
                 chance: float | None = None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "ablation.md", "csv": out_dir / "ablation.csv",
             "png": out_dir / "ablation_top1_vs_gflops.png", "json": out_dir / "ablation.json"}
    paths["markdown"].write_text(to_markdown(rows, row_keys, title, chance))
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps(rows, indent=1, default=str))
    accuracy_vs_gflops_figure(rows, title, chance).savefig(paths["png"])
    return paths
