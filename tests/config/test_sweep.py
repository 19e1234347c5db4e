"""Sweep/ablation specs and reports, without Ray: every mistake is caught before Ray starts."""

from __future__ import annotations

import csv
import math
import re

import pytest
import yaml

from tests.support import REPO
from vfn.config.sweep import load_sweep
from vfn.errors import ConfigError
from vfn.training.build import model_cost
from vfn.tuning.report import (
    TrialOutcome,
    ablation_rows,
    accuracy_vs_gflops_figure,
    to_markdown,
    write_report,
)


def write(tmp_path, text: str, name: str = "sweep.yaml"):
    (tmp_path / "base.yaml").write_text("model: {embed_dim: 8, depths: [1, 1, 1, 1]}\n"
                                        "data: {num_classes: 8, input_size: 32}\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_spec_loads_with_base_and_overrides(tmp_path):
    path = write(tmp_path, """
base: base.yaml
overrides: {optim.epochs: 3, optim.warmup_epochs: 1}
space:
  model.design: {grid: [parallel, spatial]}
  model.focal_levels: {grid: [[1, 1, 1, 1], [2, 2, 2, 2]]}
  optim.lr: {loguniform: [0.001, 0.1]}
seeds: [0, 1]
scheduler: {type: asha, grace_period: 1}
""")
    spec, base = load_sweep(path, ["optim.batch_size=2"])
    assert spec.name == "sweep" and spec.seeds == [0, 1]
    assert base.optim.epochs == 3 and base.optim.batch_size == 2 and base.model.embed_dim == 8
    assert spec.space["model.focal_levels"].kind == "grid"
    assert spec.row_keys == ["model.design", "model.focal_levels", "optim.lr"]


def test_relative_paths_in_the_spec_resolve_where_the_command_runs(tmp_path, monkeypatch):
    """The trials run in Ray's own working directories: a relative path left as written would point
    nowhere there (found when an ablation's model.pretrained failed in every trial)."""
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "base: base.yaml\n"
                           "overrides: {data.train: run/shards/train, model.pretrained: run/image.pth}\n"
                           "space: {model.design: {grid: [parallel]}}\n")
    _, base = load_sweep(path)
    assert base.data.train == str(tmp_path / "run" / "shards" / "train")
    assert base.model.pretrained == str(tmp_path / "run" / "image.pth")


def test_command_line_overrides_win_over_the_spec(tmp_path):
    path = write(tmp_path, "base: base.yaml\noverrides: {optim.epochs: 3, optim.warmup_epochs: 1, optim.lr: 0.01}\n"
                           "space: {model.design: {grid: [parallel]}}\n")
    _, base = load_sweep(path, ["optim.epochs=5"])
    assert base.optim.epochs == 5 and base.optim.lr == 0.01


def test_a_sweep_whose_inputs_are_missing_stops_before_ray(tmp_path, monkeypatch, capsys):
    from vfn.cli import main

    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "base: base.yaml\noverrides: {data.train: nowhere}\n"
                           "space: {model.design: {grid: [parallel]}}\n")
    assert main(["ablate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vfn ablate: data.train: cannot read shards at") and err.count("\n") == 1


@pytest.mark.parametrize("text, message", [
    ("base: base.yaml\nspace: {model.desing: {grid: [parallel]}}\n",
     "unknown key 'model.desing' (did you mean 'model.design'?)"),
    ("base: base.yaml\nspace: {optim.lr: {loguniform: [0.1, 0.01]}}\n", "low < high"),
    ("base: base.yaml\nspace: {optim.lr: {grid: [0.1], choice: [1]}}\n", "exactly one of"),
    ("base: base.yaml\nspace: {optim.lr: {logunifrom: [0.001, 0.1]}}\n", "did you mean 'space.optim.lr.loguniform'"),
    ("base: base.yaml\nseed: [1]\nspace: {optim.lr: {grid: [0.1]}}\n", "did you mean 'seeds'"),
    ("base: base.yaml\nspace: {optim.lr: {grid: [0.1]}}\nscheduler: {type: asha, grace: 1}\n",
     "did you mean 'scheduler.grace_period'"),
    ("base: missing.yaml\nspace: {optim.lr: {grid: [0.1]}}\n", "no such experiment file"),
    ("base: base.yaml\nspace: {}\n", "space"),
])
def test_spec_mistakes_fail_before_ray_with_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_sweep(write(tmp_path, text))


def test_impossible_values_are_left_to_the_trial(tmp_path):
    # focal_levels with 3 entries for 4 stages is a value error: the spec loads, that trial will fail
    spec, base = load_sweep(write(tmp_path, "base: base.yaml\n"
                                            "space: {model.focal_levels: {grid: [[2, 2, 2], [1, 1, 1, 1]]}}\n"))
    with pytest.raises(ConfigError, match="focal_levels"):
        base.with_overrides({"model.focal_levels": [2, 2, 2]})
    assert base.with_overrides({"model.focal_levels": [1, 1, 1, 1]}).model.focal_levels == [1, 1, 1, 1]


def test_ablation_rows_mean_std_over_seeds_and_failures(tmp_path):
    outcomes = [
        TrialOutcome({"model.design": "parallel"}, 0, {"val_top1": 0.80, "val_top5": 1.0, "clips_per_s": 10.0}),
        TrialOutcome({"model.design": "parallel"}, 1, {"val_top1": 0.60, "val_top5": 0.9, "clips_per_s": 12.0}),
        TrialOutcome({"model.design": "spatial"}, 0, {"val_top1": 0.25, "val_top5": 0.7, "clips_per_s": 20.0}),
        TrialOutcome({"model.design": "spatial"}, 1, {},
                     error="ConfigError: model.focal_levels: needs one entry per stage"),
    ]
    cost = {"design=parallel": (1.5, 0.25), "design=spatial": (1.2, 0.2)}
    rows = ablation_rows(outcomes, ["model.design"], cost)
    parallel, spatial = rows
    assert parallel["top1_mean"] == pytest.approx(70.0) and parallel["top1_std"] == pytest.approx(math.sqrt(200))
    assert parallel["clips_per_s"] == pytest.approx(11.0) and parallel["seeds"] == 2
    assert spatial["seeds"] == 1 and spatial["failed"] == 1 and "needs one entry" in spatial["errors"]
    md = to_markdown(rows, ["model.design"], "design ablation", chance=0.125)
    assert "| parallel | 1.5 | 0.25 | 70.0 ± 14.1 | 95.0 ± 7.1 | 11.0 | 2 |" in md
    assert "Chance: 12.5%" in md and "1 failed" in md
    paths = write_report(rows, ["model.design"], tmp_path / "report", "design ablation", 0.125)
    with paths["csv"].open() as f:
        assert [r["model.design"] for r in csv.DictReader(f)] == ["parallel", "spatial"]
    assert paths["png"].stat().st_size > 1000
    lines = accuracy_vs_gflops_figure(rows, "t", 0.125).axes[0].get_lines()
    chance = [ln for ln in lines if ln.get_label() == "chance"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [12.5, 12.5]


def test_model_cost_of_a_config_matches_flops_counter(tmp_path):
    from vfn.model import create_model
    from vfn.model.flops import count_flops

    _, base = load_sweep(write(tmp_path, "base: base.yaml\nspace: {model.design: {grid: [joint]}}\n"))
    cfg = base.with_overrides({"model.design": "joint"})
    model = create_model("videofocalnet_tiny", design="joint", embed_dim=8, depths=[1, 1, 1, 1], num_classes=8,
                         num_frames=cfg.data.num_frames, img_size=32)
    assert model_cost(cfg) == pytest.approx(count_flops(model, cfg.data.num_frames, 32))


def test_the_trials_a_sweep_would_run_are_listed_before_ray(capsys):
    """`vfn ablate --dry-run`: every grid crossed with the seeds (as many as Tune will run), a
    sampled dimension shown as its distribution; nothing starts."""
    from vfn.cli import main
    from vfn.config.sweep import load_sweep, trial_settings

    spec, _ = load_sweep(REPO / "experiments" / "sweeps" / "quickstart_lr_asha.yaml")
    settings = trial_settings(spec)
    assert len(settings) == spec.trial_count
    assert {s["optim.lr"] for s in settings} == {"loguniform[0.0003, 0.005]"}
    assert main(["ablate", str(REPO / "experiments" / "ablations" / "design_synthetic.yaml"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    spec, _ = load_sweep(REPO / "experiments" / "ablations" / "design_synthetic.yaml")
    assert lines[0].startswith(f"ablate '{spec.name}': {spec.trial_count} trials")
    assert len(lines) == 1 + spec.trial_count and "model.design=spatial" in "\n".join(lines)
    assert main(["sweep", str(REPO / "experiments" / "sweeps" / "quickstart_lr_asha.yaml"), "--print-config",
                 "optim.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["sweep"]["name"] == "quickstart-lr-asha" and printed["base"]["optim"]["epochs"] == 3
