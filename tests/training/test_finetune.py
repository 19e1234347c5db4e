"""Fine-tuning from a video checkpoint (`model.finetune_from`), without Ray: what fits is loaded,
a classifier of another class count starts fresh, another tubelet size is re-inflated, anything
else is refused naming the key; the driver's report comes from shapes alone, before Ray starts;
the training step starts from the loaded weights. (Through Ray on the shared videos:
tests/model/test_released.py.)"""

from __future__ import annotations

import pytest
import torch

import vfn.model as vm
from vfn.config.load import load_config
from vfn.errors import ConfigError

MICRO = dict(embed_dim=8, depths=[1, 1, 1, 1], num_frames=4, img_size=32)


def released_file(tmp_path, num_classes=400, **kw) -> tuple:
    torch.manual_seed(0)
    model = vm.create_model("videofocalnet_tiny", num_classes=num_classes, **{**MICRO, **kw})
    vm.save_released_weights(model, tmp_path / "k400.pth")
    return tmp_path / "k400.pth", model.state_dict()


def test_a_400_class_checkpoint_loads_into_4_classes_with_a_fresh_head(tmp_path):
    path, sd = released_file(tmp_path)
    torch.manual_seed(1)
    model = vm.create_model("videofocalnet_tiny", num_classes=4, **MICRO)
    fresh_head = model.head.weight.clone()
    report = vm.load_video_weights(model, path)
    assert report.initialised == ["head.weight", "head.bias"] and not report.retimed
    assert len(report.copied) == len(sd) - 2 and "re-initialised 2: head.weight, head.bias" in report.summary()
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh_head) if k == "head.weight" else (k == "head.bias" or torch.equal(v, sd[k])), k


def test_another_tubelet_size_is_re_inflated_and_a_static_clip_keeps_its_features(tmp_path):
    path, sd = released_file(tmp_path, num_classes=4)
    model = vm.create_model("videofocalnet_tiny", num_classes=4, tubelet_size=2, **MICRO)
    report = vm.load_video_weights(model, path)
    assert report.retimed == ["patch_embed.proj.weight"] and not report.initialised
    source = vm.create_model("videofocalnet_tiny", num_classes=4, **MICRO)
    source.load_state_dict(sd)
    static = torch.rand(1, 1, 3, 32, 32).repeat(1, 4, 1, 1, 1)  # (B, T, C, H, W), the same frame 4 times
    want = source.patch_embed(static)  # tubelet 1: (1, 4, 8, 8, C), one output per frame
    got = model.patch_embed(static)  # tubelet 2: (1, 2, 8, 8, C), one per pair of frames
    torch.testing.assert_close(got, want[:, ::2], rtol=1e-5, atol=1e-5)
    back = vm.create_model("videofocalnet_tiny", num_classes=4, **MICRO)  # and back to tubelet 1
    assert vm.load_video_weights(back, {k: v for k, v in model.state_dict().items()}).retimed
    torch.testing.assert_close(back.patch_embed(static), want, rtol=1e-5, atol=1e-5)


def test_what_does_not_fit_is_refused_naming_the_key(tmp_path):
    path, _ = released_file(tmp_path)
    deeper = vm.create_model("videofocalnet_tiny", num_classes=4, **{**MICRO, "depths": [2, 1, 1, 1]})
    with pytest.raises(vm.WeightsError, match=r"missing key 'layers.0.blocks.1\."):
        vm.load_video_weights(deeper, path)
    wider = vm.create_model("videofocalnet_tiny", num_classes=4, **{**MICRO, "embed_dim": 16})
    with pytest.raises(vm.WeightsError, match=r"shape mismatch at 'patch_embed.proj.weight'.*only the classifier"):
        vm.load_video_weights(wider, path)


def test_the_schema_takes_one_start_and_the_driver_reports_before_ray(tmp_path):
    from vfn.training.build import finetune_transfer

    path, _ = released_file(tmp_path)
    with pytest.raises(ConfigError, match="model.pretrained .* and model.finetune_from .* set one of them"):
        load_config(None, ["model.pretrained=a.pth", f"model.finetune_from={path}"])
    base = ["model.embed_dim=8", "model.depths=[1,1,1,1]", "data.num_frames=4", "data.input_size=32",
            "data.num_classes=4"]
    report = finetune_transfer(load_config(None, [*base, f"model.finetune_from={path}"]))
    assert report.initialised == ["head.weight", "head.bias"]
    with pytest.raises(ConfigError, match=r"^model.finetune_from: .*no such checkpoint"):
        finetune_transfer(load_config(None, [*base, f"model.finetune_from={tmp_path / 'nope.pth'}"]))
    with pytest.raises(ConfigError, match=r"^model.finetune_from: checkpoint does not fit the model: shape mismatch"):
        finetune_transfer(load_config(None, [*base, "model.embed_dim=16", f"model.finetune_from={path}"]))


def test_the_training_step_starts_from_the_checkpoint(tmp_path):
    from vfn.training.step import Plan, TrainStep

    path, sd = released_file(tmp_path)
    cfg = load_config(None, ["model.embed_dim=8", "model.depths=[1,1,1,1]", "data.num_frames=4", "data.input_size=32",
                             "data.num_classes=4", "optim.optimizer=adamw", "augment.mixup_prob=0",
                             f"model.finetune_from={path}"])
    plan = Plan(train_videos=8, val_videos=0, micro_steps_per_epoch=2, steps_per_epoch=2, total_steps=2,
                warmup_steps=0, lr=1e-3)
    step = TrainStep(cfg, plan, torch.device("cpu"))
    loaded = {k: v.clone() for k, v in step.bare.state_dict().items()}
    assert all(torch.equal(loaded[k], v) for k, v in sd.items() if not k.startswith("head."))
    x, y = torch.randint(0, 255, (4, 4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 3])
    for i in range(2):
        step(x, y, None, i)
    assert not torch.equal(step.bare.state_dict()["layers.0.blocks.0.mlp.fc1.weight"],
                           loaded["layers.0.blocks.0.mlp.fc1.weight"])
