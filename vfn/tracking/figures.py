"""The figures of a run, as plain matplotlib `Figure`s (no pyplot state: nothing registers them,
so nothing needs closing): the confusion matrix and the learning curves read back from MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure to a local file (PNG by the suffix). The plots here are plain `Figure`s
    outside pyplot: nothing registers them, so nothing needs closing."""
    fig.savefig(path)
    return Path(path)


def plot_confusion(confusion, labels: list[str] | None, title: str = "confusion matrix") -> Figure:
    """The confusion matrix (rows: true class, normalised per row) as a matplotlib `Figure`."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.shape[0]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # rows: true class, as recall
    size = min(4 + 0.35 * n, 40)
    fig = Figure(figsize=(size, size * 0.9), dpi=110, layout="tight")
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 60:
        names = labels if labels and len(labels) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


ACCURACY_CURVES = (  # key, label, style: validation runs every eval.every_epochs, so its points are marked
    ("epoch/train_top1", "train top-1", {"lw": 1, "marker": "."}),
    ("epoch/val_top1", "val top-1", {"lw": 1.5, "marker": "o"}),
    ("epoch/val_top5", "val top-5", {"lw": 1.5, "marker": "s", "ls": "--"}),
)


def plot_learning_curves(client, run_id: str) -> Figure:
    """Loss and learning rate per step, accuracies per epoch, read back from the MLflow run, as a
    matplotlib `Figure`. Accuracies are drawn only where measured: a negative value (the -1.0
    checkpoint-ranking placeholder of an epoch without validation) is not a measurement."""
    def series(key, keep=lambda v: True):
        h = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        h = [m for m in h if keep(m.value)]
        return [m.step for m in h], [m.value for m in h]

    fig = Figure(figsize=(15, 4), dpi=100, layout="tight")
    axes = fig.subplots(1, 3)
    axes[0].plot(*series("train/loss"), lw=1)
    axes[0].set_xlabel("optimiser step")
    axes[0].set_title("training loss")
    axes[1].plot(*series("train/lr"), lw=1)
    axes[1].set_xlabel("optimiser step")
    axes[1].set_title("learning rate")
    for key, label, style in ACCURACY_CURVES:
        steps, values = series(key, keep=lambda v: v >= 0)
        if steps:
            axes[2].plot(steps, [100 * v for v in values], label=label, **style)
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("%")
    axes[2].set_title("accuracy")
    if axes[2].lines:
        axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig
