"""The quickstart recipe: experiments/quickstart.yaml is its only source, `vfn quickstart` reads it.

The full `vfn quickstart` (minutes) is measured by hand / in CI's quickstart job, not here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vfn.commands import quickstart
from vfn.commands.quickstart import build_config
from vfn.config.load import load_config
from vfn.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_the_command_reads_the_experiment_file(tmp_path, monkeypatch):
    assert quickstart.RECIPE_FILE == REPO / "experiments" / "quickstart.yaml"
    assert not hasattr(quickstart, "RECIPE")  # no second copy of the recipe in the code
    # the file's data paths are where the command writes its data: training the file alone after a
    # quickstart (`vfn train experiments/quickstart.yaml output.root=quickstart_run`) reads the same shards
    monkeypatch.chdir(tmp_path)
    from_file = load_config(REPO / "experiments" / "quickstart.yaml")
    workdir = tmp_path / "quickstart_run"
    assert build_config(workdir, workdir / "data").with_overrides({"output.root": str(tmp_path)}) == from_file
    # a change to the file is a change to the command
    edited = tmp_path / "quickstart.yaml"
    edited.write_text((REPO / "experiments" / "quickstart.yaml").read_text().replace("epochs: 6", "epochs: 5"))
    monkeypatch.setattr(quickstart, "RECIPE_FILE", edited)
    assert build_config(workdir, workdir / "data").optim.epochs == 5


def test_a_missing_recipe_file_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(quickstart, "RECIPE_FILE", tmp_path / "experiments" / "quickstart.yaml")
    with pytest.raises(ConfigError, match="quickstart recipe not found") as e:
        build_config(tmp_path, tmp_path / "data")
    assert "\n" not in str(e.value)


def test_quickstart_is_order_sensitive_and_two_workers(tmp_path):
    cfg = build_config(tmp_path, tmp_path / "data", ["optim.epochs=4"])
    assert cfg.scaling.num_workers == 2 and cfg.augment.flip_prob == 0.0 and cfg.model.init == "xavier"
    assert cfg.optim.epochs == 4 and cfg.data.train.startswith(str(tmp_path))


def test_untrained_sense_of_frame_order_by_init(tmp_path):
    """With the released temporal init, xavier linears give the untrained model a sense of frame order
    the released linears lack; the quickstart's identity temporal init starts blind to it on purpose
    (the model starts as its spatial counterpart and temporal modulation grows from there)."""
    import torch

    from vfn.training.build import build_model

    cfg = build_config(tmp_path, tmp_path / "data")
    x = torch.randn(2, cfg.data.num_frames, 3, cfg.data.input_size, cfg.data.input_size)

    def order_sensitivity(init, temporal_init):
        torch.manual_seed(0)
        model = build_model(cfg.with_overrides({"model.init": init, "model.temporal_init": temporal_init})).eval()
        with torch.no_grad():
            out = model(x)
            return ((out - model(x.flip(1))).abs().max() / out.abs().max()).item()

    assert order_sensitivity("xavier", "released") > 100 * order_sensitivity("released", "released")
    assert cfg.model.temporal_init == "identity" and order_sensitivity("xavier", "identity") < 1e-5


def test_the_cluttered_style_starts_from_image_weights_pretrained_on_its_frames(tmp_path, monkeypatch):
    """`vfn quickstart --style cluttered`: from scratch nothing learns that style at this scale, so the
    quickstart first pre-trains the image FocalNet it inflates from (here shortened)."""
    import functools

    import torch

    from vfn.training import image_pretrain
    from vfn.training.build import build_model

    assert quickstart.SYNTH_STYLE == "simple" and "cluttered" in quickstart.SYNTH_STYLES
    monkeypatch.setattr(image_pretrain, "pretrain_image_focalnet",
                        functools.partial(image_pretrain.pretrain_image_focalnet, images=100, steps=1))
    cfg = quickstart.pretrained_start(build_config(tmp_path, tmp_path / "data"), tmp_path / "data" / "image.pth")
    assert cfg.model.pretrained == str(tmp_path / "data" / "image.pth")
    assert torch.load(cfg.model.pretrained, weights_only=True)["pretrain"]["style"] == "cluttered"
    build_model(cfg)  # inflates
