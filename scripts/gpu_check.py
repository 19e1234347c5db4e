"""GPU checks of the model package on its own (torch + timm; no ray, mlflow or decord), for a GPU image.

    VFN_SHARED=../shared python scripts/gpu_check.py     # PYTHONPATH=. where the package is not installed

1. Parity: the published implementation's reference logits (../shared/fixtures/reference),
   reproduced on CUDA in float32 (TF32 off) and under bf16 autocast.
2. Every design trains a step on CUDA under bf16 autocast: finite loss and gradients, pointing
   the way float32's do (cosine > 0.95; 0.987-0.994 measured on an H200, torch 2.11: bf16 keeps
   about 3 significant digits, while a wrong cast or overflow gives far less).
3. The platform's own training step (`vfn.training.step.TrainStep`, the one the Ray worker runs)
   on CUDA in bf16 and fp16 (GradScaler): mixup/cutmix, accumulation over 2 micro-batches,
   clipping and EMA; finite losses, one optimiser step per 2 micro-batches, EMA moved. Then the
   same step compiled (`model.compile`, bf16): the same losses as eager within bf16's precision,
   and checkpoint keys without compile's prefix.
   It reads an `ExperimentConfig`, so pydantic must import: where the GPU image lacks it, carry
   its wheels (pydantic, pydantic-core, annotated-types, typing-inspection; the device README).
4. On-device augmentation (`augment.on_device`): `DeviceAugment` on CUDA against the CPU path
   for the same drawn parameters (8x224 clips, batch 32): agreement and time per batch.
Exits 1 on the first failed check.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from vfn.model import DESIGNS, VideoFocalNet, load_released_weights

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("VFN_SHARED", REPO.parent / "shared")) / "fixtures" / "reference"
CASES = ["parallel_micro", "parallel_micro_tubelet2", "parallel_micro_options"]


def check(ok: bool, what: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        sys.exit(1)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")

    for case in CASES:
        ref = torch.load(REFERENCE / f"{case}.pt", weights_only=True)
        model = load_released_weights(VideoFocalNet(**ref["constructor"]).eval(), ref["state_dict"]).to(dev)
        x = ref["input"].to(dev)
        with torch.no_grad():
            fp32 = model(x).cpu()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16 = model(x).float().cpu()
        err32 = (fp32 - ref["logits"]).abs().max().item()
        err16 = (bf16 - ref["logits"]).abs().max().item()
        scale = ref["logits"].abs().max().item()
        check(err32 < 1e-4, f"{case}: float32 on CUDA vs published logits, max |diff| {err32:.2e}")
        check(err16 < 0.05 * max(scale, 1.0),
              f"{case}: bf16 autocast vs published, max |diff| {err16:.2e} (logits up to {scale:.2f})")

    for design in DESIGNS:
        torch.manual_seed(0)
        model = VideoFocalNet(img_size=64, embed_dim=32, depths=(1, 1, 2, 1), num_classes=10, num_frames=8,
                              design=design).to(dev).train()
        x = torch.randn(4, 8, 3, 64, 64, device=dev)
        y = torch.randint(0, 10, (4,), device=dev)
        grads = {}
        for dtype in (torch.float32, torch.bfloat16):
            model.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            grads[dtype] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            check(bool(torch.isfinite(loss)) and bool(torch.isfinite(grads[dtype]).all()),
                  f"{design}: {dtype} training step, loss {loss.item():.4f}, finite gradients")
        cos = torch.nn.functional.cosine_similarity(grads[torch.float32], grads[torch.bfloat16], dim=0).item()
        check(cos > 0.95, f"{design}: bf16 vs float32 gradient cosine {cos:.4f}")
    check_train_step(dev)
    check_device_augment(dev)
    print("all GPU checks passed")
    return 0


def check_train_step(dev: torch.device) -> None:
    from vfn.config.schema import config_from_dict
    from vfn.training.step import Plan, TrainStep

    losses = {}
    for precision, compile in (("bf16", False), ("fp16", False), ("bf16", True)):
        cfg = config_from_dict({
            "model": {"embed_dim": 32, "depths": [1, 1, 2, 1], "drop_path_rate": 0.0, "compile": compile},
            "data": {"num_classes": 10, "num_frames": 8, "input_size": 64},
            "augment": {"mixup_prob": 1.0},
            "optim": {"optimizer": "adamw", "lr": 1e-3, "lr_scale_batch": None, "epochs": 2, "warmup_epochs": 1,
                      "batch_size": 4, "accum_steps": 2, "clip_grad": 1.0, "precision": precision, "ema": True},
        })
        plan = Plan(train_videos=16, val_videos=0, micro_steps_per_epoch=4, steps_per_epoch=2, total_steps=4,
                    warmup_steps=1, lr=cfg.scaled_lr)
        step = TrainStep(cfg, plan, dev)
        ema_before = next(iter(step.ema.module.parameters())).detach().clone()
        torch.manual_seed(1)  # the same batches and mixup draws for every variant
        run = []
        for i in range(4):
            video = torch.randint(0, 256, (4, 8, 3, 64, 64), dtype=torch.uint8)
            run.append(step(video, torch.randint(0, 10, (4,)), None, i).loss)
        ema_moved = not torch.equal(ema_before, next(iter(step.ema.module.parameters())).detach())
        name = f"TrainStep {precision}{' compiled' if compile else ''}"
        check(all(map(torch.isfinite, map(torch.tensor, run))) and step.global_step == 2 and ema_moved,
              f"{name} on CUDA: losses {[round(x, 3) for x in run]}, "
              f"{step.global_step} optimiser steps for 4 micro-batches, EMA moved: {ema_moved}")
        losses[precision, compile] = torch.tensor(run)
        if compile:
            gap = (losses["bf16", True] - losses["bf16", False]).abs().max().item()
            keys = list(step.state_dict()["model"])
            check(step.compile_s is not None and type(step.model).__name__ == "OptimizedModule",
                  f"{name}: compiled ahead in {step.compile_s:.1f} s")
            check(gap < 0.05 and not any("_orig_mod" in k for k in keys),
                  f"{name}: losses vs eager bf16 max |diff| {gap:.4f}; checkpoint keys as eager ({keys[0]}, ...)")



def check_device_augment(dev: torch.device, b: int = 32) -> None:
    """DeviceAugment (augment.on_device) on CUDA vs the CPU path, 8x224 clips: time per batch, agreement."""
    import time
    from dataclasses import replace

    import numpy as np

    from vfn.data.clips import apply_augment_params, draw_augment_params, landscape, slice_window
    from vfn.data.device_augment import DeviceAugment
    from vfn.data.video import AugmentSpec, ClipSpec, train_window_shape

    clip, aug = ClipSpec(num_frames=8, input_size=224), AugmentSpec()
    shape = train_window_shape(clip, aug)
    low = torch.rand(8, 3, 32, 43, generator=torch.Generator().manual_seed(0)) * 255  # smooth picture, no decord
    frames = torch.nn.functional.interpolate(low, size=(256, 340), mode="bicubic").clamp(0, 255).round()
    frames = frames.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()  # (T, H, W, 3), as decoded
    clips = [frames if s % 2 else np.ascontiguousarray(frames.transpose(0, 2, 1, 3)) for s in range(b)]  # + portrait
    params = [draw_augment_params(*f.shape[1:3], clip, aug, np.random.default_rng(s)) for s, f in enumerate(clips)]
    cpu = torch.stack([apply_augment_params(f, p, clip.input_size) for f, p in zip(clips, params)]).float()
    windows, vectors = [], []
    for f, p in zip(clips, params):
        upright, box, transposed = landscape(f, p.box)
        window, box = slice_window(upright, box, shape)
        windows.append(window)
        vectors.append(replace(p, box=box, transposed=transposed).to_vector())
    windows, vectors = torch.from_numpy(np.stack(windows)).to(dev), torch.from_numpy(np.stack(vectors))
    augment = DeviceAugment(clip.input_size)
    out = augment(windows, vectors)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        out = augment(windows, vectors)
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) / 10 * 1000
    diff = (out.cpu() - cpu).abs()
    check(diff.mean() < 0.5 and (diff > 2).float().mean() < 0.01,
          f"DeviceAugment on CUDA: {ms:.2f} ms per batch of {b} 8x224 clips; vs the CPU path mean |diff| "
          f"{diff.mean():.3f}, {(diff > 2).float().mean():.2%} over 2 levels")


if __name__ == "__main__":
    sys.exit(main())
