"""The quickstart recipe: one source of truth shared with experiments/quickstart.yaml.

The full `vfn quickstart` (minutes) is measured by hand / in CI's quickstart job, not here.
"""

from __future__ import annotations

from pathlib import Path

from vfn.platform.commands.quickstart import build_config
from vfn.platform.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_yaml_matches_the_command_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from_file = load_config(REPO / "experiments" / "quickstart.yaml")
    workdir = tmp_path / "quickstart_run"
    from_command = build_config(workdir, workdir / "data")
    assert from_command.with_overrides({"output.root": str(tmp_path)}) == from_file


def test_quickstart_is_order_sensitive_and_two_workers(tmp_path):
    cfg = build_config(tmp_path, tmp_path / "data", ["optim.epochs=4"])
    assert cfg.scaling.num_workers == 2 and cfg.augment.flip_prob == 0.0 and cfg.model.init == "xavier"
    assert cfg.optim.epochs == 4 and cfg.data.train.startswith(str(tmp_path))


def test_xavier_init_gives_the_untrained_model_a_sense_of_frame_order(tmp_path):
    import torch

    from vfn.platform.train import build_model

    cfg = build_config(tmp_path, tmp_path / "data")
    x = torch.randn(2, cfg.data.num_frames, 3, cfg.data.input_size, cfg.data.input_size)

    def order_sensitivity(init):
        torch.manual_seed(0)
        model = build_model(cfg.with_overrides({"model.init": init})).eval()
        with torch.no_grad():
            out = model(x)
            return ((out - model(x.flip(1))).abs().max() / out.abs().max()).item()

    assert order_sensitivity("xavier") > 100 * order_sensitivity("released")
