"""The paper's recipes in experiments/ resolve to the released Video-FocalNets configs.

Every YAML file under experiments/ is either a paper recipe (checked against the table below) or
listed as exempt: a new file fails here until it is classified.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vfn.config.load import load_config
from vfn.config.schema import ExperimentConfig
from vfn.config.sweep import load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

# -- the released values ----------------------------------------------------------------------------
# Shared by every released config: nesterov SGD; BASE_LR, WARMUP_LR and MIN_LR each scaled by
# global batch / 512; SampleFrames(clip_len=1, num_clips=NUM_FRAMES), i.e. one frame per segment.
RELEASED = {
    "data.sampling": "segment",
    "optim.optimizer": "sgd",
    "optim.nesterov": True,
    "optim.lr": 0.1,
    "optim.warmup_lr": 1e-3,
    "optim.min_lr": 1e-3,
    "optim.lr_scale_batch": 512,
    "optim.epochs": 120,
    "optim.warmup_epochs": 20,
    "optim.weight_decay": 1e-4,
    "augment.label_smoothing": 0.1,
    "augment.mixup_alpha": 0.8,
    "augment.cutmix_alpha": 1.0,
    "augment.mixup_prob": 0.5,
}
DROP_PATH = {"tiny": 0.2, "small": 0.3, "base": 0.5}
# dataset: (num_classes, flip probability); no flips on Something-Something-v2 (direction is the label)
DATASETS = {
    "k400": (400, 0.5),
    "k600": (600, 0.5),
    "ssv2": (174, 0.0),
    "diving48": (48, 0.5),
    "activitynet": (200, 0.5),
}

# -- every file under experiments/, classified --------------------------------------------------------
# paper recipe -> (dataset, model size); base.yaml is the shared recipe (Kinetics-400 shape, size T)
RECIPES = {
    "base.yaml": ("k400", "tiny"),
    "k400_tiny.yaml": ("k400", "tiny"),
    "k400_small.yaml": ("k400", "small"),
    "k400_base.yaml": ("k400", "base"),
    "k600_base.yaml": ("k600", "base"),
    "ssv2_base.yaml": ("ssv2", "base"),
    "diving48_base.yaml": ("diving48", "base"),
    "diving48_from_k400.yaml": ("diving48", "base"),  # the same recipe, started from a K400 checkpoint
    "activitynet_base.yaml": ("activitynet", "base"),
    "ablations/design_k400.yaml": ("k400", "tiny"),
    "ablations/focal_levels_k400.yaml": ("k400", "tiny"),
    "ablations/focal_windows_k400.yaml": ("k400", "tiny"),
}
# synthetic data on a CPU: their own small recipe (AdamW, 32x32 clips, no flips), not a paper recipe
EXEMPT = {
    "quickstart.yaml",
    "ablations/design_synthetic.yaml",
    "ablations/design_cluttered.yaml",
    "ablations/focal_levels_synthetic.yaml",
    "ablations/focal_windows_synthetic.yaml",
    "sweeps/quickstart_lr_asha.yaml",
}


def resolve(rel: str) -> ExperimentConfig:
    """An experiment file through load_config; a sweep/ablation spec as its base experiment + overrides."""
    path = EXPERIMENTS / rel
    raw = yaml.safe_load(path.read_text()) or {}
    return load_sweep(path)[1] if "space" in raw else load_config(path)


def released(dataset: str, size: str) -> dict:
    num_classes, flip = DATASETS[dataset]
    return {**RELEASED, "model.name": f"videofocalnet_{size}", "model.drop_path_rate": DROP_PATH[size],
            "data.num_classes": num_classes, "augment.flip_prob": flip}


def test_every_file_in_experiments_is_classified():
    files = {p.relative_to(EXPERIMENTS).as_posix() for p in EXPERIMENTS.rglob("*.yaml")}
    assert not RECIPES.keys() & EXEMPT
    assert files - RECIPES.keys() - EXEMPT == set(), "classify new files: RECIPES (checked) or EXEMPT"
    assert RECIPES.keys() | EXEMPT <= files, "the table names a file that is gone"


@pytest.mark.parametrize("rel", sorted(RECIPES))
def test_paper_recipe_equals_the_released_config(rel, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data paths resolve anywhere; nothing is read
    flat = resolve(rel).flat()
    want = released(*RECIPES[rel])
    got = {key: flat[key] for key in want}
    assert got == want, {key: f"{got[key]!r}, released {value!r}" for key, value in want.items() if got[key] != value}


def test_learning_rates_scale_with_the_global_batch():
    cfg = load_config(EXPERIMENTS / "k400_tiny.yaml")
    assert cfg.optim.timm_opt_name == "nesterov"
    at = {}
    for workers, batch, accum in ((8, 8, 1), (16, 8, 4), (32, 16, 2)):
        c = cfg.with_overrides({"scaling.num_workers": workers, "optim.batch_size": batch, "optim.accum_steps": accum})
        at[c.global_batch] = c
    assert sorted(at) == [64, 512, 1024]
    for g, c in at.items():
        assert c.lr_scale == pytest.approx(g / 512)
        scaled = (c.scaled_lr, c.scaled_warmup_lr, c.scaled_min_lr)
        assert scaled == pytest.approx((0.1 * g / 512, 1e-3 * g / 512, 1e-3 * g / 512))
    assert (at[512].scaled_lr, at[512].scaled_warmup_lr, at[512].scaled_min_lr) == pytest.approx((0.1, 1e-3, 1e-3))
    # lr_scale_batch: null switches scaling off for all three
    off = at[1024].with_overrides({"optim.lr_scale_batch": None})
    assert off.lr_scale == 1.0 and (off.scaled_lr, off.scaled_warmup_lr, off.scaled_min_lr) == (0.1, 1e-3, 1e-3)


def test_timm_optimizer_names_mean_what_the_config_says(tmp_path):
    import torch
    from timm.optim import create_optimizer_v2

    cfg = load_config(None)
    model = torch.nn.Linear(2, 2)
    for overrides, cls, nesterov in (({}, torch.optim.SGD, True), ({"optim.nesterov": False}, torch.optim.SGD, False),
                                     ({"optim.optimizer": "adamw"}, torch.optim.AdamW, None)):
        o = cfg.with_overrides(overrides).optim
        opt = create_optimizer_v2(model, opt=o.timm_opt_name, lr=0.1, momentum=o.momentum)
        assert type(opt) is cls
        if nesterov is not None:
            assert opt.defaults["nesterov"] is nesterov and opt.defaults["momentum"] == 0.9
