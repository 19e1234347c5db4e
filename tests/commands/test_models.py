"""`vfn --version` and `vfn models`: the zoo with the paper's parameter counts and GFLOPs, and the
released checkpoints, each named one way everywhere and evaluated by an experiment file that
builds its model."""

from __future__ import annotations

import importlib.metadata
import json
import re

import pytest

from tests.support import REPO
from vfn.cli import main
from vfn.config.load import load_config
from vfn.model import RELEASED


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    version = importlib.metadata.version("video-focalnets")  # pyproject.toml's
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"vfn {version}"


def test_the_zoo_has_the_papers_sizes_and_the_released_checkpoints(capsys):
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sizes = {m["model"]: (m["params_M"], m["gflops_per_view"]) for m in out["models"]}
    assert sizes == {"videofocalnet_tiny": (49.55, 63.0), "videofocalnet_small": (88.74, 124.3),
                     "videofocalnet_base": (157.39, 220.6)}
    assert {(r["model"], r["dataset"], r["top1"]) for r in out["released"]} >= {
        ("videofocalnet_tiny", "k400", 79.8), ("videofocalnet_base", "k600", 86.7),
        ("videofocalnet_base", "ssv2", 71.1)}
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "video-focalnet_tiny_k400.pth" in table and "experiments/k400_tiny.yaml" in table


@pytest.mark.parametrize("released", RELEASED, ids=lambda r: r.file)
def test_each_released_checkpoint_has_an_experiment_that_builds_its_model(released):
    cfg = load_config(REPO / released.experiment, [])
    assert (cfg.model.name, cfg.data.num_classes, cfg.data.num_frames) == (
        released.model, released.num_classes, released.frames)


def test_one_file_name_per_released_checkpoint_in_docs_experiments_and_code():
    files = {r.file for r in RELEASED}
    assert len(files) == len(RELEASED)
    sources = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "experiments").rglob("*.yaml"),
               *(REPO / "vfn").rglob("*.py")]
    named = {(m, p.relative_to(REPO)) for p in sources
             for m in re.findall(r"video-?focalnet[\w-]*\.pth", p.read_text(), flags=re.IGNORECASE)}
    assert {(m, p) for m, p in named if m not in files} == set()
