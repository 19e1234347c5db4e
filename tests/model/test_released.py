"""Released checkpoints through the platform: `vfn eval` takes released weights (or a plain state
dict) with an experiment file or `--model` and overrides, checks that they fit before Ray starts,
evaluates them on shards of ../shared/videos like a training checkpoint, and logs an evaluation
run tagged with the source file and its sha256."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import yaml

from tests.support import VIDEOS

CLIPS = ["kinetics_yoga.mp4", "kinetics_arm_wrestling.mp4", "flipping_a_pancake.mkv", "short_test.avi",
         "one_second.mp4", "rotated_90.mov"]


@pytest.fixture(scope="module")
def shared_shards(tmp_path_factory):
    """The shared clips, 4 classes, packed as they are (no re-encoding: it is not under test here)."""
    from vfn.data.ingest import write_shards
    from vfn.data.manifest import VideoRecord, write_manifest

    root = tmp_path_factory.mktemp("shared_shards")
    records = [VideoRecord(str(VIDEOS / name), i % 4, i + 1) for i, name in enumerate(CLIPS)]
    write_manifest(records, root / "val.csv")
    write_shards(str(root / "val.csv"), str(root / "val"), progress=False, encoding=None, num_classes=4)
    return root / "val"


def experiment(tmp_path, **data) -> tuple[str, object]:
    """An experiment file describing a micro model (4 classes unless `data` says otherwise), and its config."""
    from vfn.config.load import load_config

    raw = {"model": {"embed_dim": 8, "depths": [1, 1, 1, 1]},
           "data": {"num_classes": 4, "num_frames": 4, "input_size": 32, "decode_cpus": 0.5, **data},
           "eval": {"num_clips": 2, "num_crops": 1, "batch_size": 2},
           "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
           "output": {"root": str(tmp_path), "name": "micro"}, "tracking": {"experiment": "baselines"}}
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path), load_config(path)


def released_weights(cfg, path) -> dict:
    """A seeded model of the config, saved in the released layout (`{"model": state_dict}`)."""
    import vfn.model as vm
    from vfn.training.build import build_model

    torch.manual_seed(0)
    model = build_model(cfg, load_pretrained=False)
    vm.save_released_weights(model, path)
    return model.state_dict()


def reference_result(cfg, sd, shards):
    """The same evaluation without Ray: every video's views decoded here, softmax-averaged."""
    import pyarrow.parquet as pq

    from vfn.data.clips import decode_test_views
    from vfn.data.shards import list_shards
    from vfn.data.video import ClipSpec
    from vfn.evaluation.metrics import EvalAccumulator, evaluate_batches
    from vfn.training.build import build_model

    model = build_model(cfg, load_pretrained=False)
    model.load_state_dict(sd)
    table = pq.read_table(list_shards(str(shards)))
    acc = EvalAccumulator(cfg.data.num_classes, table.num_rows)
    spec = ClipSpec.from_config(cfg.data, cfg.eval)
    for video, label, index in zip(*(table.column(c).to_pylist() for c in ("video", "label", "index"))):
        views = torch.from_numpy(decode_test_views(video, spec))  # every shared clip here decodes
        batch = {"video": views[None], "label": torch.tensor([label]), "index": torch.tensor([index]),
                 "valid": torch.tensor([True])}
        evaluate_batches(model, [batch], acc, torch.device("cpu"), lambda: torch.autocast("cpu", enabled=False))
    return acc.result()


@pytest.mark.ray
@pytest.mark.slow
def test_evaluate_a_released_checkpoint_fine_tune_from_it_and_compare_in_mlflow(ray_session, shared_shards, tmp_path):
    """The README's path on the shared videos: a 400-class checkpoint in the released layout is
    evaluated like the model it holds (the same numbers as evaluating it here without Ray) into a
    tagged evaluation run; a 4-class run fine-tunes from it with a fresh classifier; `vfn compare`
    lists both in the experiment."""
    from mlflow.tracking import MlflowClient

    from vfn.evaluation.driver import run_evaluation
    from vfn.tracking.compare import compare
    from vfn.training.driver import run_training

    exp, cfg = experiment(tmp_path, num_classes=400)
    sd = released_weights(cfg, tmp_path / "released.pth")
    res, info = run_evaluation(str(tmp_path / "released.pth"), str(shared_shards), config_file=exp,
                               overrides=["eval.num_crops=3"], workdir=str(tmp_path))
    want = reference_result(cfg.with_overrides({"eval.num_crops": 3}), sd, shared_shards)
    assert res.videos == want.videos == len(CLIPS) and res.corrupt == 0
    np.testing.assert_array_equal(res.confusion, want.confusion)
    assert (res.top1, res.top5) == (want.top1, want.top5)

    client = MlflowClient(info["tracking_uri"])
    run = client.get_run(info["mlflow_run_id"])
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["vfn.kind"] == "eval" and tags["eval.views"] == "2x3"
    assert tags["source_checkpoint"] == str(tmp_path / "released.pth") and tags["design"] == "parallel"
    assert tags["source_sha256"] == hashlib.sha256((tmp_path / "released.pth").read_bytes()).hexdigest()
    assert run.data.metrics["eval_top1"] == res.top1 and run.data.params["data.num_classes"] == "400"

    # fine-tune the 400-class checkpoint to the shared clips' 4 classes (one short epoch)
    tuned_cfg = cfg.with_overrides({"data.num_classes": 4, "model.finetune_from": str(tmp_path / "released.pth"),
                                    "data.train": str(shared_shards), "data.val": str(shared_shards),
                                    "optim.optimizer": "adamw", "optim.lr": 1e-4, "optim.lr_scale_batch": None,
                                    "optim.epochs": 1, "optim.warmup_epochs": 0, "optim.batch_size": 2,
                                    "augment.mixup_prob": 0.0, "scaling.num_workers": 1, "output.name": "tuned"})
    tuned = run_training(tuned_cfg, progress=False)
    assert tuned.metrics["global_step"] == 3 and 0.0 <= tuned.metrics["val_top1"] <= 1.0  # 6 clips, batch 2
    tuned_run = client.get_run(tuned.mlflow_run_id)
    assert tuned_run.data.tags["finetune.report"].endswith("re-initialised 2: head.weight, head.bias")
    report = client.list_artifacts(tuned.mlflow_run_id)
    assert "finetune_report.json" in {a.path for a in report}

    # `vfn compare baselines --metric eval_top1`: the released baseline beside the trained run
    cmp = compare(info["tracking_uri"], ["baselines"], "eval_top1")
    assert len(cmp["rows"]) == 2 and "eval released.pth" in cmp["table"] and "tuned" in cmp["table"], cmp["table"]


def test_weights_that_do_not_fit_the_config_fail_in_one_line_before_ray(shared_shards, tmp_path, monkeypatch):
    from vfn.errors import ConfigError
    from vfn.evaluation import driver as evaluate

    exp, cfg = experiment(tmp_path)
    released_weights(cfg, tmp_path / "released.pth")
    monkeypatch.setattr("vfn.runtime.ray_setup.init_ray", lambda *a, **k: pytest.fail("Ray was started"))
    monkeypatch.chdir(tmp_path)  # a file name as the user types it, no directory
    with pytest.raises(ConfigError, match=r"^released.pth does not fit the config's model .*: shape mismatch at "
                                          r"'head.weight': checkpoint \(4, 64\) vs model \(5, 64\)$"):
        evaluate.run_evaluation("released.pth", str(shared_shards), config_file=exp, overrides=["data.num_classes=5"])
    with pytest.raises(ConfigError, match=r"does not fit .*: (unexpected|missing) key 'layers.0.blocks.1."):
        evaluate.run_evaluation(str(tmp_path / "released.pth"), str(shared_shards), config_file=exp,
                                overrides=["model.depths=[2,1,1,1]"])


def test_a_training_checkpoint_keeps_its_own_config_and_both_layouts_load_the_same_weights(shared_shards, tmp_path):
    """--config/--model describe released weights only; the weights a worker loads from a training
    checkpoint and from the same weights in the released layout are the same."""
    from vfn.errors import ConfigError
    from vfn.evaluation.driver import eval_source
    from vfn.evaluation.worker import load_eval_weights
    from vfn.training.build import build_model
    from vfn.training.checkpoints import save_state

    exp, cfg = experiment(tmp_path)
    sd = released_weights(cfg, tmp_path / "released.pth")
    (tmp_path / "run").mkdir()
    save_state(tmp_path / "run", {"model": sd, "config": cfg.to_dict(), "epoch": 1, "global_step": 1})
    with pytest.raises(ConfigError, match="carries its own config; --config and --model describe released weights"):
        eval_source(str(tmp_path / "run"), str(shared_shards), config_file=exp)
    trained = eval_source(str(tmp_path / "run"), str(shared_shards), ["eval.num_clips=1"])
    released = eval_source(str(tmp_path / "released.pth"), str(shared_shards), ["eval.num_clips=1"], config_file=exp)
    assert trained.trained and not released.trained and trained.cfg.model == released.cfg.model
    models = [build_model(cfg, load_pretrained=False) for _ in range(2)]
    for model, source in zip(models, (trained, released)):
        load_eval_weights(model, {"checkpoint": source.weights, "trained": source.trained})
    for k, v in models[0].state_dict().items():
        assert torch.equal(v, models[1].state_dict()[k]) and torch.equal(v, sd[k]), k
