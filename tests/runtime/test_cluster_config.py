"""cluster.yaml is checked offline with Ray's own cluster-config schema and validator."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml

from tests.support import REPO

jsonschema = pytest.importorskip("jsonschema")


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json"))).read())


def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validator():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = cluster()
    jsonschema.validate(raw, ray_schema())  # the file as written: no unknown or mistyped key
    prepared = prepare_config(copy.deepcopy(raw))  # what `ray up` does before launching: merge defaults
    validate_config(prepared)
    nodes = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and nodes["head"]["resources"] == {"CPU": 0}
    assert nodes["gpu_worker"]["min_workers"] == 0 and nodes["gpu_worker"]["max_workers"] >= 1


@pytest.mark.parametrize("mutate", [
    lambda c: c["available_node_types"]["gpu_worker"].update(min_worker=1),  # typo
    lambda c: c.update(idle_timeout_minute=5),  # typo at top level
    lambda c: c["available_node_types"]["gpu_worker"].update(resources={"GPU": "one"}),  # wrong type
    lambda c: c["available_node_types"]["gpu_worker"].pop("node_config"),  # missing required
])
def test_a_broken_key_is_caught(mutate):
    raw = cluster()
    mutate(raw)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, ray_schema())


def test_cluster_installs_this_checkout_and_holds_no_credentials():
    raw = cluster()
    text = (REPO / "cluster.yaml").read_text()
    assert raw["file_mounts"]["/home/ray/video-focalnets"] == "."
    # token auth: the token file is synced from the launching machine, never written here
    assert raw["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert all("RAY_AUTH_MODE=token" in c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
               if "ray start" in c)
    assert any("pip install" in c and "/home/ray/video-focalnets" in c for c in raw["setup_commands"])
    for secret in ("aws_access_key_id", "aws_secret_access_key", "AKIA", "password", "token:"):
        assert secret.lower() not in text.lower()
    assert "s3://" in text and "mlflow server" in text
