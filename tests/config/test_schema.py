"""Config validation: every mistake is one line naming the dotted key, before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vfn.config.load import load_config
from vfn.config.names import COMPILE_MODES, DESIGNS, MODELS
from vfn.config.schema import config_from_dict
from vfn.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"


def error(overrides=None, path=None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides or [])
    return str(e.value)


def test_typo_names_key_and_closest_valid_key():
    assert "unknown key 'optim.lrr' (did you mean 'optim.lr'?)" in error(["optim.lrr=0.1"])
    assert "did you mean 'model.design'" in error(["model.desing=joint"])
    # a key in the wrong section points to the right one
    assert "did you mean 'optim.epochs'" in error(["epochs=3"])


def test_typo_inside_a_yaml_file_names_file_and_key(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("optim:\n  warmup_epoch: 3\n")
    msg = error(path=f)
    assert msg.startswith("exp.yaml: unknown key 'optim.warmup_epoch'") and "optim.warmup_epochs" in msg


def test_wrong_types_and_impossible_values_name_the_key():
    assert "optim.epochs" in error(["optim.epochs=many"])
    assert "optim.lr" in error(["optim.lr=-1"])
    assert error(["optim.warmup_epochs=200"]).startswith(
        "config: optim.warmup_epochs: 200.0 must be below optim.epochs"
    )
    assert "data.input_size" in error(["data.input_size=100"])
    assert "model.focal_levels" in error(["model.depths=[1,1]"])
    assert "model.design" in error(["model.design=diagonal"])
    not_divisible = error(["data.num_frames=7", "model.tubelet_size=2"])
    assert "data.num_frames=7 is not divisible by model.tubelet_size=2" in not_divisible
    assert "key=value" in error(["optim.lr"])
    assert "optim.lr is a value" in error(["optim.lr.x=1"])


def test_extends_chain_overrides_and_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("optim: {lr: 0.5, epochs: 10, warmup_epochs: 1}\nmodel: {design: joint}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\noptim: {epochs: 20}\n")
    cfg = load_config(tmp_path / "b.yaml", ["optim.batch_size=4", "tracking.tags.team=vision"])
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.optim.batch_size, cfg.model.design) == (0.5, 20, 4, "joint")
    assert cfg.tracking.tags == {"team": "vision"} and cfg.output.name == "b"
    (tmp_path / "c.yaml").write_text("extends: d.yaml\n")
    (tmp_path / "d.yaml").write_text("extends: c.yaml\n")
    assert "cycle" in error(path=tmp_path / "c.yaml")
    assert "no such experiment file" in error(path=tmp_path / "missing.yaml")


def test_relative_paths_become_absolute_and_config_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.train=shards/train"])
    assert cfg.data.train == str(tmp_path / "shards" / "train")
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg
    # what a sweep trial does: any dotted key, re-validated
    assert cfg.with_overrides({"model.design": "factorized"}).model.design == "factorized"
    with pytest.raises(ConfigError, match="model.design"):
        cfg.with_overrides({"model.design": "nope"})


def test_paper_recipes_validate():
    """Every experiment file validates; their values against the released configs: tests/config/test_recipes.py."""
    files = sorted(EXPERIMENTS.glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"k400_tiny", "k400_small", "k400_base", "k600_base", "ssv2_base", "diving48_base",
            "activitynet_base", "quickstart"} <= names
    for f in files:
        cfg = load_config(f)
        if f.stem not in ("base", "quickstart"):
            assert (cfg.data.num_frames, cfg.data.input_size) == (8, 224)
            assert cfg.model.pretrained or cfg.model.finetune_from
            assert (cfg.eval.num_clips, cfg.eval.num_crops) == (4, 3)


def test_defaults_sample_like_the_released_code_and_scale_every_learning_rate():
    from vfn.data.video import ClipSpec

    cfg = load_config(None)
    assert cfg.data.sampling == ClipSpec().sampling == "segment"
    assert cfg.optim.timm_opt_name == "nesterov"  # timm: 'sgd' == 'nesterov'; 'momentum' is classical
    assert cfg.with_overrides({"optim.nesterov": False}).optim.timm_opt_name == "momentum"
    assert cfg.with_overrides({"optim.optimizer": "adamw"}).optim.timm_opt_name == "adamw"
    cfg = cfg.with_overrides({"optim.batch_size": 16, "scaling.num_workers": 4, "optim.accum_steps": 2,
                              "optim.warmup_lr": 1e-3, "optim.min_lr": 2e-3})
    assert cfg.global_batch == 128 and cfg.lr_scale == 0.25
    assert (cfg.scaled_lr, cfg.scaled_warmup_lr, cfg.scaled_min_lr) == (0.025, 2.5e-4, 5e-4)


def test_schema_choices_match_the_model_package():
    import vfn.model

    assert tuple(DESIGNS) == tuple(vfn.model.DESIGNS)
    assert COMPILE_MODES == vfn.model.COMPILE_MODES
    assert set(MODELS) == set(vfn.model.ZOO)


def test_rerun_with_a_different_config_is_refused(tmp_path):
    from vfn.training.driver import prepare_run_dir

    cfg = load_config(None, [f"output.root={tmp_path}", "output.name=r1"])
    prepare_run_dir(cfg)
    prepare_run_dir(cfg.with_overrides({"tracking.tags.x": "y"}))  # tracking may change
    with pytest.raises(ConfigError, match=r"optim.lr: 0.1 -> 0.2.*output.name=NEW_NAME"):
        prepare_run_dir(cfg.with_overrides({"optim.lr": 0.2}))


def test_a_run_that_cannot_fit_a_fixed_cluster_is_refused_before_work(capsys, monkeypatch):
    from vfn.runtime import ray_setup
    from vfn.runtime.ray_setup import check_resources

    def on(resources):  # the cluster Ray reports, without starting Ray
        monkeypatch.setattr(ray_setup.ray, "cluster_resources", lambda: resources)

    cfg = load_config("experiments/quickstart.yaml")  # 2 workers x 0.5 CPU + 0.5 for decoding
    on({"CPU": 2.0})
    check_resources(cfg, gpu=False, fixed=True)  # fits this 2-core machine
    big = cfg.with_overrides({"scaling.cpus_per_worker": 1.0})
    with pytest.raises(ConfigError, match=r"2 workers x 1 CPU and 0.5 CPU for a decode task: 2.5 CPUs \(has 2\)"):
        check_resources(big, gpu=False, fixed=True)
    on({"CPU": 64.0, "GPU": 1.0})
    with pytest.raises(ConfigError, match=r"2 GPUs \(has 1\)"):
        check_resources(cfg, gpu=True, fixed=True)
    on({"CPU": 2.0})
    check_resources(big, gpu=False, fixed=False)  # an autoscaler may add nodes: a note only
    assert "waiting for the autoscaler" in capsys.readouterr().err


def test_augment_on_device_is_auto_true_or_false():
    cfg = load_config(None, [])
    assert cfg.augment.on_device == "auto"
    assert cfg.augment.resolve_on_device(use_gpu=True) and not cfg.augment.resolve_on_device(use_gpu=False)
    assert load_config(None, ["augment.on_device=true"]).augment.resolve_on_device(use_gpu=False)
    assert not load_config(None, ["augment.on_device=false"]).augment.resolve_on_device(use_gpu=True)
    assert "augment.on_device" in error(["augment.on_device=gpu"])


@pytest.mark.parametrize("linear_init", ["released", "xavier"])
def test_model_temporal_init_reaches_the_model(linear_init):
    """`model.temporal_init` builds the model that way, also after `model.init: xavier` re-draws the linears."""
    from vfn.training.build import build_model

    base = {"model": {"embed_dim": 8, "depths": [1, 1, 1, 1], "init": linear_init},
            "data": {"num_classes": 4, "num_frames": 4, "input_size": 32}}
    identity = build_model(config_from_dict(base)).layers[0].blocks[0].modulation.h_temporal
    assert identity.weight.abs().max() == 0 and (identity.bias == 1).all()
    released = build_model(config_from_dict({**base, "model": {**base["model"], "temporal_init": "released"}}))
    assert released.layers[0].blocks[0].modulation.h_temporal.weight.abs().max() > 0
    with pytest.raises(ConfigError, match="temporal_init"):
        config_from_dict({**base, "model": {**base["model"], "temporal_init": "zeros"}})
