"""`vfn bench data` helpers (the benchmark itself is run by hand: it starts its own Ray)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from vfn.platform import bench_data


def test_memory_of_a_process_tree_counts_children():
    alone, n_alone = bench_data.tree_pss()
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(30)"])
    try:
        with bench_data.PeakMemory(interval=0.05) as mem:
            for _ in range(100):
                mb, n = bench_data.tree_pss()
                if mb > alone + 50:
                    break
                subprocess.run([sys.executable, "-c", "pass"])  # let the child allocate
    finally:
        child.kill()
        child.wait()
    assert n == n_alone + 1 and mb > alone + 50  # the child's 64 MB are counted
    assert mem.peak >= mb - 1 and mem.procs >= 2


def test_arguments_and_defaults():
    p = argparse.ArgumentParser()
    bench_data.add_arguments(p)
    args = p.parse_args([])
    assert (args.videos, args.scale, args.frames, args.input_size) == (40, 10, 8, 224)
