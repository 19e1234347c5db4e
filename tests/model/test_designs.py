"""A design variant is one name in `vfn.config.names.DESIGNS` plus its modulation class registered
under that name (`vfn.model.modulation.register_modulation`): this builds and trains a toy one the
way a researcher would add theirs, and checks that the two lists never drift apart."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vfn.config import names
from vfn.config.schema import config_from_dict
from vfn.errors import ConfigError
from vfn.model import VideoFocalNet, modulation
from vfn.model.modulation import MODULATIONS, register_modulation

MICRO = dict(img_size=32, embed_dim=8, depths=(1, 1, 1, 1), num_classes=5, num_frames=4)


class ToyTemporalMix(nn.Module):
    """Each token mixed with the mean over its frames: the smallest design that sees time."""

    def __init__(self, dim: int, focal_level: int, focal_window: int, **kwargs):
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, H, W, C)
        return self.proj(torch.cat([x, x.mean(1, keepdim=True).expand_as(x)], -1))


def test_every_design_name_is_buildable_and_every_buildable_design_named():
    assert set(MODULATIONS) == set(names.DESIGNS)


def test_a_modulation_for_an_unnamed_design_is_refused():
    with pytest.raises(ValueError, match="not in vfn.config.names.DESIGNS"):
        register_modulation("toy")


def test_a_new_design_is_a_name_and_a_registered_class(monkeypatch):
    with pytest.raises(ConfigError, match="model.design"):
        config_from_dict({"model": {"design": "toy"}}, "probe.yaml")
    monkeypatch.setattr(names, "DESIGNS", (*names.DESIGNS, "toy"))
    monkeypatch.setattr(modulation, "DESIGNS", names.DESIGNS)
    try:
        register_modulation("toy")(ToyTemporalMix)
        assert config_from_dict({"model": {"design": "toy"}}, "probe.yaml").model.design == "toy"
        model = VideoFocalNet(design="toy", **MICRO)
        assert isinstance(model.layers[0].blocks[0].modulation, ToyTemporalMix)
        x = torch.randn(2, 4, 3, 32, 32)
        loss = model(x).logsumexp(-1).mean()
        loss.backward()
        assert model.layers[0].blocks[0].modulation.proj.weight.grad.abs().sum() > 0
    finally:
        MODULATIONS.pop("toy", None)
