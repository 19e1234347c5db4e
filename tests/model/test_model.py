"""Video-FocalNet: parity with the published code, checkpoint layouts, inflation, variants, FLOPs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.support import REFERENCE
from vfn.model import (
    DESIGNS,
    VideoFocalNet,
    WeightsError,
    create_model,
    load_image_weights,
    load_released_weights,
    save_released_weights,
)
from vfn.model.flops import count_flops

PARITY_CASES = ["parallel_micro", "parallel_micro_tubelet2", "parallel_micro_options"]
MICRO = dict(img_size=32, embed_dim=8, depths=(1, 1, 1, 1), num_classes=5, num_frames=4)


def manifest() -> dict:
    return json.loads((REFERENCE / "state_dict_manifest.json").read_text())


def zeros_like_manifest(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(shape) for k, shape in manifest()[name].items()}


@pytest.mark.parametrize("case", PARITY_CASES)
def test_parity_with_published_implementation(case):
    ref = torch.load(REFERENCE / f"{case}.pt", weights_only=True)
    model = VideoFocalNet(**ref["constructor"]).eval()
    load_released_weights(model, ref["state_dict"])
    with torch.no_grad():
        logits = model(ref["input"])
    assert logits.shape == ref["logits"].shape
    torch.testing.assert_close(logits, ref["logits"], atol=1e-5, rtol=0)


def test_parity_survives_save_and_reload_in_released_layout(tmp_path):
    ref = torch.load(REFERENCE / "parallel_micro.pt", weights_only=True)
    model = load_released_weights(VideoFocalNet(**ref["constructor"]).eval(), ref["state_dict"])
    save_released_weights(model, tmp_path / "ckpt.pth")
    saved = torch.load(tmp_path / "ckpt.pth", weights_only=True)["model"]
    assert saved.keys() == ref["state_dict"].keys()
    again = load_released_weights(VideoFocalNet(**ref["constructor"]).eval(), tmp_path / "ckpt.pth")
    with torch.no_grad():
        torch.testing.assert_close(again(ref["input"]), ref["logits"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_full_size_released_keys_load_exactly(size):
    model = create_model(f"videofocalnet_{size}", num_classes=400, num_frames=8)
    expected = manifest()[f"video_focalnet_{size}_k400"]
    model_shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert model_shapes == expected  # none missing, none unused, same shapes
    load_released_weights(model, zeros_like_manifest(f"video_focalnet_{size}_k400"))


def test_mismatching_checkpoint_names_first_bad_key(tmp_path):
    sd = zeros_like_manifest("video_focalnet_tiny_k400")
    model = create_model("videofocalnet_small", num_classes=400)
    with pytest.raises(WeightsError, match="missing key 'layers.2.blocks.6"):
        load_released_weights(model, sd)
    sd["head.weight"] = torch.zeros(10, 768)
    with pytest.raises(WeightsError, match=r"shape mismatch at 'head.weight'.*\(10, 768\)"):
        load_released_weights(create_model("videofocalnet_tiny", num_classes=400), sd)
    not_ckpt = tmp_path / "notes.pth"
    not_ckpt.write_text("hello")
    with pytest.raises(WeightsError, match="not a loadable checkpoint"):
        load_released_weights(create_model("videofocalnet_tiny"), not_ckpt)
    with pytest.raises(WeightsError, match="no such checkpoint"):
        load_released_weights(create_model("videofocalnet_tiny"), tmp_path / "missing.pth")


def test_inflate_released_image_checkpoint():
    image = torch.load(REFERENCE / "image_focalnet_micro.pth", weights_only=True)["model"]
    ctor = json.loads((REFERENCE / "index.json").read_text())["image_focalnet_micro"]["constructor"]
    video = VideoFocalNet(**{**ctor, "num_classes": 3, "num_frames": 4})
    fresh_temporal = video.layers[0].blocks[0].modulation.f_temporal.weight.clone()
    report = load_image_weights(video, REFERENCE / "image_focalnet_micro.pth")
    sd = video.state_dict()
    for key in report.copied:
        torch.testing.assert_close(sd[key], image[key])
    assert all("temporal" in k or k.startswith("head.") for k in report.initialised)
    assert any("f_temporal" in k for k in report.initialised)
    assert {"head.weight", "head.bias"} <= set(report.initialised) and sd["head.weight"].shape == (3, 128)
    assert set(report.ignored) == {"head.weight", "head.bias"}
    assert len(report.copied) + len(report.initialised) == len(sd)
    torch.testing.assert_close(video.layers[0].blocks[0].modulation.f_temporal.weight, fresh_temporal)


def _timm_image_model(layout: str):
    """A timm image FocalNet and the same weights in `layout` (timm's or the released one), with
    weights large enough that every modulator changes the output (at init scale they barely do)."""
    from timm.models.focalnet import FocalNet, checkpoint_filter_fn

    torch.manual_seed(0)
    if layout == "released":
        released = torch.load(REFERENCE / "image_focalnet_micro.pth", weights_only=True)["model"]
        released = {k: v + 0.2 * torch.randn_like(v) for k, v in released.items()}
        ctor = json.loads((REFERENCE / "index.json").read_text())["image_focalnet_micro"]["constructor"]
        model = FocalNet(embed_dim=ctor["embed_dim"], depths=ctor["depths"], num_classes=released["head.bias"].numel(),
                         focal_levels=ctor.get("focal_levels", (2, 2, 2, 2)),
                         focal_windows=ctor.get("focal_windows", (3, 3, 3, 3)), drop_path_rate=0)
        model.load_state_dict(checkpoint_filter_fn(released, model))
        return model.eval(), released
    model = FocalNet(embed_dim=16, depths=(1, 1, 1, 1), num_classes=6, focal_levels=(2, 2, 2, 2),
                     focal_windows=(3, 3, 3, 3), drop_path_rate=0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model, model.state_dict()


@pytest.mark.parametrize("layout", ["timm", "released"])
@pytest.mark.parametrize("design", ["parallel", "sequential"])
def test_inflated_model_reproduces_the_image_model_on_a_moving_clip(layout, design):
    """With `temporal_init="identity"` (the default) an inflated video model, before any training, gives
    the image FocalNet's logits averaged over frames, for any clip (here random frames)."""
    pytest.importorskip("timm")
    image_model, weights = _timm_image_model(layout)
    size = dict(embed_dim=image_model.embed_dim[0], depths=[len(s.blocks) for s in image_model.layers],
                num_frames=3, drop_path_rate=0, design=design)
    video = VideoFocalNet(**size, num_classes=image_model.num_classes).eval()
    report = load_image_weights(video, weights)
    assert not [k for k in report.initialised if "temporal" not in k and not k.startswith("head.")]
    with torch.no_grad():  # the classifier is new in general; here it takes the image head to compare logits
        video.head.weight.copy_(image_model.head.fc.weight)
        video.head.bias.copy_(image_model.head.fc.bias)
        clip = torch.randn(2, 3, 3, 64, 64)
        expected = torch.stack([image_model(clip[:, t]) for t in range(3)]).mean(0)
        got = video(clip)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the released init does not: its near-zero temporal modulator scales the image features down
    released_init = VideoFocalNet(**size, num_classes=0, temporal_init="released").eval()
    load_image_weights(released_init, weights)
    video.reset_classifier(0)
    with torch.no_grad():
        assert (released_init(clip) - video(clip)).abs().max() > 0.1 * video(clip).abs().max()


@pytest.mark.parametrize("design", DESIGNS)
def test_identity_temporal_init_starts_as_the_spatial_model(design):
    """Every design starts blind to frame order; parallel and sequential are exactly the spatial model
    with the same spatial weights."""
    torch.manual_seed(0)
    model = VideoFocalNet(design=design, **MICRO).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model(x[:, [2, 0, 3, 1]]), out, atol=1e-5, rtol=1e-5)
    if design in ("parallel", "sequential"):
        spatial = VideoFocalNet(design="spatial", **MICRO).eval()
        sd = {k.replace(".modulation.spatial.", ".modulation."): v for k, v in model.state_dict().items()}
        spatial.load_state_dict({k: v for k, v in sd.items() if k in spatial.state_dict()})
        with torch.no_grad():
            torch.testing.assert_close(spatial(x), out, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown temporal_init"):
        VideoFocalNet(temporal_init="zeros")


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_inflate_full_size_image_manifests_both_layouts(size):
    timm = pytest.importorskip("timm")
    released = {k: torch.randn(s) for k, s in manifest()[f"focalnet_{size}_srf_imagenet1k"].items()}
    model = create_model(f"videofocalnet_{size}", num_classes=174)
    report = load_image_weights(model, released)
    assert len(report.copied) == len(released) - 2
    torch.testing.assert_close(model.state_dict()["layers.2.blocks.1.modulation.f.weight"],
                               released["layers.2.blocks.1.modulation.f.weight"])
    # the same weights in timm's layout land in the same places
    timm_model = timm.create_model(f"focalnet_{size}_srf", pretrained=False)
    from timm.models.focalnet import checkpoint_filter_fn
    timm_sd = checkpoint_filter_fn(released, timm_model)
    timm_model.load_state_dict(timm_sd)
    model2 = create_model(f"videofocalnet_{size}", num_classes=174)
    report2 = load_image_weights(model2, timm_model.state_dict())
    assert sorted(report2.copied) == sorted(report.copied)
    for key in report.copied:
        torch.testing.assert_close(model2.state_dict()[key], model.state_dict()[key])


def test_tubelet_patch_weights_inflated_over_time():
    image = torch.load(REFERENCE / "image_focalnet_micro.pth", weights_only=True)["model"]
    ctor = json.loads((REFERENCE / "index.json").read_text())["image_focalnet_micro"]["constructor"]
    video = VideoFocalNet(**{**ctor, "num_frames": 4, "tubelet_size": 2})
    report = load_image_weights(video, image)
    assert report.inflated == ["patch_embed.proj.weight"]
    w = video.patch_embed.proj.weight
    assert w.shape == (16, 3, 2, 4, 4)
    torch.testing.assert_close(w[:, :, 0], image["patch_embed.proj.weight"] / 2)
    torch.testing.assert_close(w[:, :, 1], image["patch_embed.proj.weight"] / 2)


def test_image_weights_of_another_size_fail_with_the_key():
    image = torch.load(REFERENCE / "image_focalnet_micro.pth", weights_only=True)
    with pytest.raises(WeightsError, match="patch_embed.proj.weight"):
        load_image_weights(VideoFocalNet(embed_dim=24, depths=(1, 1, 2, 1)), image)


def test_timm_registration():
    import timm

    names = {"videofocalnet_tiny", "videofocalnet_small", "videofocalnet_base"}
    assert names <= set(timm.list_models("videofocalnet*"))
    model = timm.create_model("videofocalnet_tiny", num_classes=400, num_frames=8)
    assert isinstance(model, VideoFocalNet) and model.head.out_features == 400
    assert [len(s.blocks) for s in model.layers] == [2, 2, 6, 2]
    with pytest.raises(ValueError, match="never downloads"):
        timm.create_model("videofocalnet_tiny", pretrained=True)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 32, 32)
    model = VideoFocalNet(**MICRO, drop_path_rate=0.0)
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(checkpointing)
        calls = []
        handle = model.layers[0].blocks[0].norm1.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        model(x).square().sum().backward()
        handle.remove()
        assert len(calls) == (2 if checkpointing else 1)  # recomputed in backward: it really runs
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, msg=name)


@pytest.mark.parametrize("design", DESIGNS)
def test_design_trains_a_step_and_responds_to_frame_order(design):
    torch.manual_seed(0)
    model = create_model("videofocalnet_tiny", design=design, **{**MICRO, "depths": (1, 1, 1, 1)})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, 4, 3, 32, 32), torch.tensor([1, 3])
    # identity init: the layers behind a zero-initialised weight get their gradient from the second
    # step on, once that weight has left zero; by then every parameter must be learning
    live = set()
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        live |= {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}
        opt.step()
    dead = [n for n, _ in model.named_parameters() if n not in live]
    assert not dead, f"parameters without gradient: {dead}"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        for p in model.parameters():  # larger weights than at init, so any use of time shows
            p.normal_(0, 0.3)
        out, out_permuted = model(x), model(x[:, [2, 0, 3, 1]])
    if design == "spatial":
        torch.testing.assert_close(out, out_permuted, atol=1e-5, rtol=1e-5)
    else:
        assert (out - out_permuted).abs().max() > 1e-3 * out.abs().max()


def hand_counted_macs(T=4, S=32, C0=8, depths=(1, 1, 1, 1), L=2, window=3, classes=5) -> int:
    """Multiply-accumulates of the parallel design, written out layer by layer."""
    n = (S // 4) ** 2  # tokens per frame at stage 1
    macs = T * n * C0 * 3 * 4 * 4  # stem 4x4 conv
    kernels = [window + 2 * level for level in range(L)]
    for i, depth in enumerate(depths):
        C = C0 * 2**i
        tokens = T * n
        per_block = (
            tokens * C * (2 * C + L + 1)  # f: q, spatial context, gates
            + tokens * C * (C + L + 1)  # f_temporal: temporal context, gates
            + sum(tokens * C * k * k for k in kernels)  # depthwise spatial levels
            + sum(tokens * C * C * k for k in kernels)  # dense temporal levels
            + 3 * tokens * C * C  # h, h_temporal, proj
            + 2 * tokens * C * 4 * C  # MLP
        )
        macs += depth * per_block
        if i < len(depths) - 1:
            n //= 4
            macs += T * n * (2 * C) * C * 2 * 2  # 2x2 patch merging
    return macs + C0 * 2 ** (len(depths) - 1) * classes


def test_flops_match_hand_count():
    model = VideoFocalNet(**MICRO)
    params, gflops = count_flops(model, num_frames=4, img_size=32)
    assert gflops * 1e9 == pytest.approx(hand_counted_macs(), rel=1e-9)
    assert params * 1e6 == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("design", DESIGNS)
def test_flops_command_runs_on_every_design(design, capsys):
    from vfn.cli import main

    assert main(["flops", "videofocalnet_tiny", "--frames", "4", "--size", "64", "--design", design]) == 0
    out = capsys.readouterr().out
    assert "params:" in out and "GFLOPs per view:" in out


def test_model_package_imports_neither_ray_nor_mlflow():
    code = ("import sys, vfn.model, vfn.model.flops; "
            "bad=[m for m in sys.modules if m.split('.')[0] in ('ray','mlflow')]; print(bad); sys.exit(bool(bad))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_constructor_arguments_are_errors():
    with pytest.raises(ValueError, match="one entry per stage"):
        VideoFocalNet(focal_levels=(2, 2))
    with pytest.raises(ValueError, match="unknown design"):
        VideoFocalNet(design="diagonal")
    with pytest.raises(TypeError):
        VideoFocalNet(focal_level=2)  # typo of focal_levels is not silently dropped
    with pytest.raises(ValueError, match="divisible by tubelet_size"):
        VideoFocalNet(num_frames=5, tubelet_size=2)
