"""`vfn bench data` helpers (the benchmark itself is run by hand: it starts its own Ray)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch

from vfn.commands.bench import data as bench_data


def test_memory_of_a_process_tree_counts_children():
    alone, n_alone = bench_data.tree_memory()
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(30)"])
    try:
        with bench_data.PeakMemory(interval=0.05) as mem:
            for _ in range(100):
                mb, n = bench_data.tree_memory()
                if mb > alone + 50:
                    break
                subprocess.run([sys.executable, "-c", "pass"])  # let the child allocate
    finally:
        child.kill()
        child.wait()
    assert n == n_alone + 1 and mb > alone + 50  # the child's 64 MB are counted
    # the sampler saw the child too (not `>= mb`: shared pages' PSS shifts as processes come and go)
    assert mem.peak > alone + 50 and mem.procs >= 2


def test_arguments_and_defaults():
    p = argparse.ArgumentParser()
    bench_data.add_arguments(p)
    args = p.parse_args([])
    assert (args.videos, args.scale, args.frames, args.input_size) == (40, 10, 8, 224)


# Ray looks for `<RAY_TMPDIR>/ray/ray_current_cluster` (default /tmp/ray/...) when ray.init gets no
# address; a crashed or killed Ray leaves that file behind, and a plain ray.init(num_cpus=...) then
# treats the dead address as a cluster to join and refuses num_cpus with a ValueError.
START_RAY = textwrap.dedent("""
    import ray
    from vfn.commands.bench import data as bench_data

    bench_data.start_ray(1)
    try:
        print("CPUs", ray.cluster_resources()["CPU"])
    finally:
        ray.shutdown()
""")


def test_starts_its_own_ray_despite_a_stale_cluster_file():
    # an isolated Ray temp dir, so the machine's /tmp/ray (and any Ray running there) is left alone;
    # short, because Ray puts unix sockets under it (at most 107 characters)
    tmp = Path(tempfile.mkdtemp(prefix="vfnr", dir="/tmp"))
    try:
        (tmp / "ray").mkdir()
        (tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")  # a cluster that is gone
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = str(tmp)
        proc = subprocess.run([sys.executable, "-c", START_RAY], capture_output=True, text=True, env=env,
                              timeout=300)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CPUs 1.0" in proc.stdout


class _Batches:
    """Stands in for a Ray dataset: `iter_torch_batches` yields one batch of `n` clips per
    (n, seconds) pair, each after that many seconds."""

    def __init__(self, batches: list[tuple[int, float]]):
        self.batches = batches

    def iter_torch_batches(self, batch_size: int):
        for n, seconds in self.batches:
            time.sleep(seconds)
            yield {"label": torch.zeros(n), "valid": torch.ones(n, dtype=torch.bool)}


def test_an_epoch_of_one_batch_reports_its_whole_pass_rate_as_steady():
    ep = bench_data._epoch(_Batches([(6, 0.01)]), 8)
    assert ep["clips"] == 6 and ep["steady"] == ep["rate"] > 0


def test_the_steady_rate_leaves_out_the_slow_start_of_a_pass():
    ep = bench_data._epoch(_Batches([(8, 1.0)] + [(8, 0.005)] * 19), 8)
    assert ep["clips"] == 160 and ep["first_batch_s"] >= 1.0
    assert ep["steady"] > 1.5 * ep["rate"]  # ~1600 clips/s in the middle, ~145 over the whole pass


def _named_process(argv0: str) -> subprocess.Popen:
    """A sleeping process whose command line starts with `argv0` (as Ray names its workers)."""
    return subprocess.Popen(["bash", "-c", f'exec -a "{argv0}" {sys.executable} -c "import time; time.sleep(60)"'])


def test_processes_of_the_ray_tree_get_their_roles():
    from vfn.data.guard import DecodeGuard

    named = {argv0: _named_process(argv0) for argv0 in ("ray::MapBatches(decode_train_batch)", "ray::IDLE",
                                                        "ray::_StatsActor", "ray::DashboardAgent")}
    try:
        with DecodeGuard(30.0, warm=()) as guard:
            guard.call("os:getpid")
            time.sleep(0.5)  # exec has replaced the command lines
            me = psutil.Process()
            assert bench_data.process_role(me, me.pid) == "driver"
            assert bench_data.process_role(psutil.Process(guard.pid), me.pid) == "decode_children"
            roles = {argv0: bench_data.process_role(psutil.Process(p.pid), me.pid) for argv0, p in named.items()}
            snapshot, child = bench_data.cpu_snapshot(), guard.pid
    finally:
        for p in named.values():
            p.kill()
            p.wait()
    assert roles == {"ray::MapBatches(decode_train_batch)": "ray_workers", "ray::IDLE": "ray_workers",
                     "ray::_StatsActor": "ray_system", "ray::DashboardAgent": "ray_system"}
    assert snapshot[os.getpid()][0] == "driver" and snapshot[child][0] == "decode_children"
    assert snapshot[named["ray::IDLE"].pid][0] == "ray_workers"


def test_cpu_by_role_counts_what_each_process_spent_and_new_processes_whole():
    before = {1: ("driver", 1.0), 2: ("ray_workers", 2.0), 4: ("ray_system", 9.0)}
    after = {1: ("driver", 1.5), 2: ("ray_workers", 2.2), 3: ("decode_children", 0.3), 4: ("ray_system", 9.1)}
    by_role = bench_data.cpu_ms_by_role(before, after, clips=100)
    assert by_role == pytest.approx({"decode_children": 3.0, "ray_workers": 2.0, "driver": 5.0, "ray_system": 1.0})


def test_the_bound_decodes_every_video_of_every_shard_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = []
    for k, videos in enumerate([[b"a", b"b", b"c"], [b"d"]]):
        files.append(str(tmp_path / f"shard-{k}.parquet"))
        pq.write_table(pa.table({"video": videos, "label": list(range(len(videos)))}), files[-1])
    seen = []
    rate = bench_data._timed_per_file(files, seen.append)
    assert seen == [b"a", b"b", b"c", b"d"] and rate > 0
