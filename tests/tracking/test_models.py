"""A run's best weights as an MLflow model (no Ray): logged with signature, input example and the
experiment in its metadata, registered, loaded in a fresh process that imports no Ray and none of
the platform (only `vfn.model` and the torch-free names it shares with the config), and taken by
`vfn predict` / `vfn eval` as `models:/` and `runs:/` URIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tests.support import VIDEOS
from vfn.config.schema import config_from_dict
from vfn.tracking.models import MODEL_NAME, log_best_model, tracking_at
from vfn.tracking.runs import start_run
from vfn.training.build import build_model

CLASSES = ["abseiling", "archery", "bowling", "juggling"]

LOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import mlflow, mlflow.pytorch, torch

    uri, x_path, *model_uris = sys.argv[1:]
    mlflow.set_tracking_uri(uri)
    out = {}
    for model_uri in model_uris:
        model = mlflow.pytorch.load_model(model_uri)
        with torch.no_grad():
            out[model_uri] = (type(model).__name__, model.eval()(torch.load(x_path)).tolist())
    model_only = ("vfn", "vfn.model", "vfn.config", "vfn.config.names", "vfn.errors")
    needed = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")
                    or (m.startswith("vfn.") and m not in model_only and not m.startswith("vfn.model.")))
    print(json.dumps({"models": out, "imported": needed}))
""")


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A micro model's weights logged to a fresh local store, registered as 'vfn-micro'."""
    root = tmp_path_factory.mktemp("models")
    cfg = config_from_dict({
        "model": {"embed_dim": 8, "depths": [1, 1, 1, 1]},
        "data": {"num_classes": 4, "num_frames": 4, "input_size": 32},
        "output": {"root": str(root), "name": "micro"},
        "tracking": {"register_as": "vfn-micro"},
    })
    torch.manual_seed(0)
    model = build_model(cfg, load_pretrained=False).eval()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_id = start_run(cfg, root / "run")
    model_uri = log_best_model(uri, run_id, cfg, model.state_dict(), CLASSES)
    return dict(root=root, cfg=cfg, model=model, uri=uri, run_id=run_id, model_uri=model_uri)


def test_the_logged_model_loads_in_a_fresh_process_without_ray_and_gives_the_same_logits(logged, tmp_path):
    import mlflow
    from mlflow.models.utils import load_serving_example

    x = torch.randn(2, 4, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = logged["model"](x)
    uris = ["models:/vfn-micro/1", f"runs:/{logged['run_id']}/{MODEL_NAME}", logged["model_uri"]]
    proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, logged["uri"], str(tmp_path / "x.pt"), *uris],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported"] == [], out["imported"]  # torch, timm, mlflow and vfn.model are enough
    for model_uri in uris:
        kind, logits = out["models"][model_uri]
        assert kind == "VideoFocalNet" and torch.allclose(torch.tensor(logits), expected, atol=1e-6), model_uri

    with tracking_at(logged["uri"]):
        info = mlflow.models.get_model_info("models:/vfn-micro/1")
    (clips,), (logits,) = info.signature.inputs.inputs, info.signature.outputs.inputs
    assert clips.shape == (-1, 4, 3, 32, 32) and logits.shape == (-1, 4)
    assert info.metadata["class_names"] == CLASSES and info.metadata["vfn_config"]["data"]["num_frames"] == 4
    assert info.saved_input_example_info is not None

    # servable: its own serving example, through MLflow's serving input path, gives logits
    with tracking_at(logged["uri"]):
        (tmp_path / "serving.json").write_text(load_serving_example("models:/vfn-micro/1"))
        mlflow.models.predict("models:/vfn-micro/1", input_path=str(tmp_path / "serving.json"), env_manager="local",
                              output_path=str(tmp_path / "served.json"))
    served = json.loads((tmp_path / "served.json").read_text())["predictions"]
    assert np.asarray(served).shape == (1, 4), served


def test_vfn_predict_takes_a_registered_model(logged, capsys):
    from vfn.cli import main

    video = VIDEOS / "kinetics_yoga.mp4"
    args = ["predict", "models:/vfn-micro/1", str(video), "--tracking-uri", logged["uri"], "--top", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in CLASSES), out  # names from the model's metadata

    # the former spelling (VIDEO --checkpoint CHECKPOINT) still reaches the same checkpoint
    former = ["predict", str(video), "--checkpoint", "models:/no-such-model/1", "--tracking-uri", logged["uri"]]
    assert main(former) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("vfn predict: models:/no-such-model/1: no such MLflow model in sqlite:///"), last


def test_vfn_eval_takes_a_model_uri_as_its_weights_and_config(logged, tmp_path):
    """The driver side of `vfn eval models:/...` (the Ray side is the released-weights path)."""
    from vfn.errors import ConfigError
    from vfn.evaluation.driver import eval_source
    from vfn.model import read_state_dict

    source = eval_source("models:/vfn-micro/1", str(tmp_path / "val"), ["eval.num_clips=2"],
                         tracking_uri=logged["uri"], workdir=str(tmp_path))
    assert source.origin == "models:/vfn-micro/1" and not source.trained
    assert source.cfg.data.val == str(tmp_path / "val") and source.cfg.eval.num_clips == 2
    assert source.cfg.model.embed_dim == 8 and source.cfg.data.num_frames == 4
    exported = read_state_dict(source.weights)
    assert all(torch.equal(exported[k], v) for k, v in logged["model"].state_dict().items())
    with pytest.raises(ConfigError, match="carries its own config"):
        eval_source("models:/vfn-micro/1", str(tmp_path / "val"), model="videofocalnet_tiny",
                    tracking_uri=logged["uri"], workdir=str(tmp_path))


def test_logging_a_model_leaves_the_default_store_alone(logged, monkeypatch):
    """MLflow's set_tracking_uri also sets $MLFLOW_TRACKING_URI, which picks the store of later runs."""
    import mlflow

    from vfn.tracking.runs import default_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = default_tracking_uri()
    with tracking_at(logged["uri"]):
        assert mlflow.get_tracking_uri() == logged["uri"]
    assert default_tracking_uri() == before and "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    with tracking_at(logged["uri"]):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracking.example:5000"


def test_registering_needs_logging():
    from vfn.errors import ConfigError

    with pytest.raises(ConfigError, match="tracking.register_as registers the logged model"):
        config_from_dict({"tracking": {"register_as": "x", "log_model": False}})


def test_mlflows_warning_against_pickle_is_dropped_while_logging_only(caplog):
    """Pickling is chosen on purpose (the module's docstring says why): MLflow's notice against it
    would end every run's output with a warning about a decision the user did not make."""
    import logging

    from vfn.tracking.models import without_pickle_notice

    notice = "Saving pytorch model by Pickle or CloudPickle format requires exercising caution"
    logger = logging.getLogger("mlflow.pytorch")
    with caplog.at_level(logging.WARNING, logger="mlflow.pytorch"):
        with without_pickle_notice():
            logger.warning(notice)
            logger.warning("another warning")
        logger.warning(notice)
    assert [r.getMessage() for r in caplog.records] == ["another warning", notice]
