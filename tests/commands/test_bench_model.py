"""`vfn bench model` on a tiny model on the CPU: its JSON, and that it needs torch alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from vfn.commands.bench import model as bench

# the benchmark runs on a bare GPU image (torch + timm only): run it in a fresh interpreter and
# check that no platform dependency was imported on the way
SCRIPT = textwrap.dedent("""
    import argparse, sys
    from vfn.commands.bench import model as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--device", "cpu", "--embed-dim", "8", "--depths", "1", "1", "1", "1",
                              "--frames", "2", "--size", "32", "--repeats", "1", "--peak-tflops", "0.5",
                              "--json", sys.argv[1]])
    assert bench.run(args) == 0
    loaded = sorted(m for m in ("ray", "mlflow", "decord") if m in sys.modules)
    assert not loaded, f"vfn bench model imported {loaded}"
""")


def test_tiny_model_on_cpu_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "forward+backward" in proc.stdout and "clips/s training" in proc.stdout
    result = json.loads(out.read_text())
    assert tuple(result) == bench.JSON_KEYS
    assert (result["model"], result["batch"], result["frames"], result["size"]) == ("videofocalnet_tiny", 1, 2, 32)
    assert (result["dtype"], result["device"], result["compiled"]) == ("float32", "cpu", False)
    for key in ("train_clips_per_s", "infer_clips_per_s", "peak_mem_gb"):
        assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
    # MFU: model FLOPs (2 per MAC, x3 for a training step) per second over the given peak
    from vfn.model.flops import count_flops
    from vfn.model.zoo import create_model

    model = create_model("videofocalnet_tiny", num_frames=2, img_size=32, embed_dim=8, depths=[1, 1, 1, 1])
    gflop = 2 * count_flops(model, 2, 32)[1]
    assert result["peak_tflops"] == 0.5 and result["compile_s"] is None
    assert abs(result["mfu"] - 3 * gflop * result["train_clips_per_s"] / 500) < 1e-3 * result["mfu"]
    assert abs(result["infer_mfu"] - gflop * result["infer_clips_per_s"] / 500) < 1e-3 * result["infer_mfu"]
    assert "MFU:" in proc.stdout


def test_mfu_needs_a_known_peak():
    import torch

    assert bench.peak_tflops(torch.device("cpu"), "bfloat16") is None
