"""`vfn eval --print-config`: the config an evaluation would use, resolved as the evaluation
resolves it (released weights described by --model and overrides), printed before Ray starts."""

from __future__ import annotations

import torch
import yaml

from vfn.cli import main
from vfn.model import create_model

TINY = ["model.embed_dim=8", "model.depths=[1,1,1,1]", "data.num_classes=4"]


def test_print_config_resolves_released_weights_and_their_overrides(tmp_path, capsys):
    weights = tmp_path / "tiny.pth"
    model = create_model("videofocalnet_tiny", embed_dim=8, depths=[1, 1, 1, 1], num_classes=4)
    torch.save({"model": model.state_dict()}, weights)
    assert main(["eval", str(weights), "--data", str(tmp_path / "val"), "--model", "videofocalnet_tiny", *TINY,
                 "eval.num_clips=2", "--workers", "2", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["eval"]["num_clips"] == 2 and cfg["model"]["embed_dim"] == 8 and cfg["scaling"]["num_workers"] == 2
    assert cfg["data"]["val"] == str(tmp_path / "val")

    assert main(["eval", str(tmp_path / "missing.pth"), "--data", "val", "--model", "videofocalnet_tiny",
                 "--print-config"]) == 2
    assert "missing.pth: no such checkpoint file or run directory" in capsys.readouterr().err
