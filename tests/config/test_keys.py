"""The configuration reference (docs/reference/config.md) is built from `key_docs`: every key of
the experiment and sweep schemas appears with its type, default, bounds and a description."""

from __future__ import annotations

import pytest

from vfn.config.keys import KeyDoc, key_docs
from vfn.config.schema import ExperimentConfig
from vfn.config.sweep import SearchDim, SweepSpec


@pytest.mark.parametrize("schema", [ExperimentConfig, SweepSpec, SearchDim], ids=lambda s: s.__name__)
def test_every_key_has_a_description(schema):
    assert [d.key for d in key_docs(schema) if not d.description] == []


def test_rows_show_type_default_and_bounds_as_a_reader_writes_them():
    rows = {d.key: d for d in key_docs(ExperimentConfig)}
    assert rows["optim.lr"] == KeyDoc("optim.lr", "float", "0.1", "> 0.0", rows["optim.lr"].description)
    assert rows["model.embed_dim"][1:4] == ("int | None", "null", "> 0")
    assert rows["data.sampling"][1:3] == ("'segment' | 'dense'", "segment")
    assert rows["augment.scale"][1:3] == ("tuple[float, float]", "[0.08, 1.0]")
    assert rows["tracking.tags"][1:3] == ("dict[str, str]", "{}")  # a mapping is one key, not a section
    assert rows["data.input_size"].bounds == ">= 32"
    assert list(rows)[:2] == ["seed", "model.name"]  # declaration order, sections opened in place
    sweep = {d.key: d for d in key_docs(SweepSpec)}
    assert sweep["base"].default == "required" and sweep["space"].bounds == "length >= 1"
    assert "scheduler.grace_period" in sweep and "trial.num_workers" in sweep
