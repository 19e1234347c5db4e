"""GPU checks of the model package on its own (torch + timm; no ray, mlflow or decord), for a GPU image.

    VFN_SHARED=../shared python scripts/gpu_check.py     # PYTHONPATH=. where the package is not installed

1. Parity: the published implementation's reference logits (../shared/fixtures/reference),
   reproduced on CUDA in float32 (TF32 off) and under bf16 autocast.
2. Every design trains a step on CUDA under bf16 autocast: finite loss and gradients, pointing
   the way float32's do (cosine > 0.95; 0.987-0.994 measured on an H200, torch 2.11: bf16 keeps
   about 3 significant digits, while a wrong cast or overflow gives far less).
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
    print("all GPU checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
