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
    assert cfg.scaling.num_workers == 2 and cfg.augment.flip_prob == 0.0
    assert cfg.optim.epochs == 4 and cfg.data.train.startswith(str(tmp_path))
