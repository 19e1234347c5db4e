"""`model.compile` (no Ray): compiled ahead, the eager step's numbers, clean checkpoints, no recompiles.

Inductor's code generation on this 2-core CPU takes minutes for a training graph, so the step's
plumbing (train and eval graphs, DDP-free wrapper, padding of short eval batches, guards) runs
with the `aot_eager` backend (Dynamo + AOTAutograd, eager kernels) and inductor itself is checked
on a forward; `scripts/gpu_check.py` runs the compiled step with inductor on CUDA.
"""

from __future__ import annotations

import functools

import pytest
import torch

from tests.support import REPO, tiny_experiment
from vfn.config.schema import config_from_dict
from vfn.evaluation.metrics import EvalAccumulator, evaluate_batches
from vfn.model import compile_ahead, create_model, load_released_weights, save_released_weights
from vfn.training.build import eval_batch_clips
from vfn.training.step import Plan, TrainStep

PLAN = Plan(train_videos=8, val_videos=3, micro_steps_per_epoch=4, steps_per_epoch=2, total_steps=4, warmup_steps=1,
            lr=1e-3)


def micro_config(compile: bool):
    return config_from_dict(tiny_experiment(
        None, None, model={"compile": compile}, data={"num_frames": 2}, eval={"batch_size": 2},
        optim={"warmup_epochs": 1, "min_lr": 1e-6, "batch_size": 2, "accum_steps": 2, "ema": True}))


def run_epoch(step: TrainStep, cfg, batches, val_batches) -> tuple[list[float], list[float]]:
    step.model.train()
    losses = [step(video, label, None, i).loss for i, (video, label) in enumerate(batches)]
    top1 = []
    for net in step.eval_nets.values():
        acc = EvalAccumulator(4, 3)
        evaluate_batches(net, val_batches, acc, step.device, step.autocast, pad_to=eval_batch_clips(cfg))
        top1.append(acc.result().top1)
    return losses, top1


def data(seed: int):
    g = torch.Generator().manual_seed(seed)
    train = [(torch.randint(0, 256, (2, 2, 3, 32, 32), generator=g, dtype=torch.uint8), torch.tensor([i % 4, 3]))
             for i in range(4)]
    val = [{"video": torch.randint(0, 256, (n, 1, 2, 3, 32, 32), generator=g, dtype=torch.uint8),
            "label": torch.arange(n), "index": torch.arange(k, k + n), "valid": torch.ones(n, dtype=torch.bool)}
           for k, n in ((0, 2), (2, 1))]  # a short last batch: padded, not recompiled
    return train, val


def test_compiled_step_trains_like_eager_without_recompiling(monkeypatch, tmp_path):
    import torch._dynamo

    eager_cfg, cfg = micro_config(False), micro_config(True)
    eager = TrainStep(eager_cfg, PLAN, torch.device("cpu"))
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    step = TrainStep(cfg, PLAN, torch.device("cpu"))
    assert step.compile_s > 0 and type(step.model).__name__ == "OptimizedModule"
    assert all(type(net).__name__ == "OptimizedModule" for net in step.eval_nets.values())

    with torch._dynamo.config.patch(error_on_recompile=True):  # every graph was compiled ahead
        for epoch in range(2):
            train, val = data(epoch)
            expected = run_epoch(eager, eager_cfg, train, val)
            got = run_epoch(step, cfg, train, val)
            assert got[0] == pytest.approx(expected[0], abs=1e-5) and got[1] == expected[1]

    # checkpoints hold the eager module's keys: they load into an eager model in the released layout
    state = step.state_dict()
    assert list(state["model"]) == list(eager.state_dict()["model"])
    save_released_weights(step.bare, tmp_path / "released.pth")
    model = create_model("videofocalnet_tiny", num_classes=4, num_frames=2, img_size=32, embed_dim=8,
                         depths=[1, 1, 1, 1])
    load_released_weights(model, tmp_path / "released.pth")  # every key used, none missing
    for a, b in zip(model.state_dict().values(), state["model"].values()):
        assert torch.equal(a, b)


def test_a_failed_compilation_warns_once_and_trains_eagerly(monkeypatch):
    class Broken(torch.nn.Module):  # what a backend without a working toolchain does on its first call
        def forward(self, *args):
            raise RuntimeError("InductorError: no working C++ compiler\nlong trace")

    def broken(module, **kwargs):
        return Broken()

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="torch.compile failed, running eagerly: InductorError: no working") as w:
        step = TrainStep(micro_config(True), PLAN, torch.device("cpu"))
    assert len(w) == 1
    assert step.model is step.bare and step.eval_nets["val_"] is step.bare
    train, _ = data(0)
    assert step(*train[0], None, 0).loss > 0


def test_inductor_gives_the_eager_logits():
    torch.manual_seed(0)
    model = create_model("videofocalnet_tiny", num_classes=4, num_frames=2, img_size=32, embed_dim=8,
                         depths=[1, 1, 1, 1]).eval()
    x = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        compiled = compile_ahead(model, lambda m: m(x))
        assert compiled.compiled, compiled.error
        assert (compiled.module(x) - model(x)).abs().max() < 1e-5


DDP_SCRIPT = '''
import functools, os, sys
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def worker(rank, port, out, repo):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    sys.path.insert(0, repo)  # this test module imports as `tests.model.test_compile`
    from tests.model.test_compile import PLAN, data, micro_config
    from vfn.training.step import TrainStep

    eager = TrainStep(micro_config(False), PLAN, torch.device("cpu"), wrap=DistributedDataParallel)
    torch.compile = functools.partial(torch.compile, backend="aot_eager")
    step = TrainStep(micro_config(True), PLAN, torch.device("cpu"), wrap=DistributedDataParallel)
    assert type(step.model).__name__ == "OptimizedModule", type(step.model)
    train, _ = data(10 + rank)  # each rank its own batches; accumulation skips the all-reduce but on the last
    for s in (eager, step):
        s.model.train()
        for i, (video, label) in enumerate(train):
            s(video, label, None, i)
    flat = torch.cat([p.detach().flatten() for p in step.bare.parameters()])
    other = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(other, flat)
    eager_flat = torch.cat([p.detach().flatten() for p in eager.bare.parameters()])
    torch.save({"ranks_gap": (other[0] - other[1]).abs().max().item(),
                "eager_gap": (flat - eager_flat).abs().max().item(), "steps": step.global_step}, f"{out}.{rank}")
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.multiprocessing.spawn(worker, args=(int(sys.argv[1]), sys.argv[2], sys.argv[3]), nprocs=2)
'''


@pytest.mark.slow
def test_compiled_step_under_ddp_averages_like_eager(tmp_path):
    """Two gloo processes (what Ray Train's prepare_model sets up): the compiled DDP step keeps the
    ranks' weights identical and equal to the eager DDP step's, with accumulation's no_sync."""
    import socket
    import subprocess
    import sys

    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "result"
    proc = subprocess.run([sys.executable, str(tmp_path / "ddp.py"), str(port), str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(2):
        r = torch.load(f"{out}.{rank}")
        assert r["steps"] == 2 and r["ranks_gap"] == 0.0 and r["eager_gap"] < 1e-5, r
