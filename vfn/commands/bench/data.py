"""`vfn bench data`: how fast the CPU side feeds training, for the same videos stored two ways.

For the original bytes (`vfn data shard --keep-original`) and the re-encoded, seek-friendly shards
(`vfn data shard`'s default: short side 256, a keyframe every 8 frames), in one run:
  * the raw decord bound: decode exactly the frames a clip samples, nothing else, on `--cpus`
    processes, for the large dataset's videos (those the pipeline is timed on), each file's videos
    right after it is read (the reads are not timed);
  * decode + augment on the CPU (the pure functions, the same processes);
  * the full Ray Data pipeline as a GPU worker gets it (`augment.on_device`: decode tasks decode
    and cut the crop window; augmentation runs on the device), its ratio to the raw bound, and the
    CPU time it spends per clip over every process of the Ray tree, split by role (`ROLES`);
  * peak memory for two dataset sizes 10x apart (streaming execution should keep it flat);
  * the cost of re-encoding at shard time (videos/s per core) and the size change.
`--json PATH` writes the figures, top-level keys `original` and `transcoded` (the default encoding),
plus one per `--encoding` (other settings measured in the same run, keyed by the fields changed).

Data: the real Kinetics-style clips in ../shared/videos (corrupt one excluded), repeated to the
wanted number of rows and packed into Parquet shards like any user dataset.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

_say = functools.partial(print, flush=True)

# PSS needs Linux's smaps; elsewhere RSS (shared pages then count once per process that maps them)
PSS = sys.platform.startswith("linux")
MEMORY = "PSS" if PSS else "RSS"

SHARED_VIDEOS = ["kinetics_arm_wrestling.mp4", "kinetics_yoga.mp4", "flipping_a_pancake.mkv", "short_test.avi",
                 "one_second.mp4"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=int, default=40, help="rows of the small dataset (the large one has 10x)")
    parser.add_argument("--scale", type=int, default=10, help="size of the large dataset relative to the small")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-mb", type=float, default=2.0,
                        help="shard size; small enough that the small dataset already spans several "
                             "shards, so both sizes run with the same parallelism")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs for the local Ray")
    parser.add_argument("--videos-dir", default=None,
                        help="directory with the shared test videos (default: $VFN_SHARED/videos or ../shared/videos)")
    parser.add_argument("--workdir", default=None,
                        help="where shards go (default: a temporary directory); shards already there are reused, "
                             "not packed or timed again")
    parser.add_argument("--encoding", action="append", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                        help="also measure shards re-encoded this way (Encoding fields, e.g. crf=18 or "
                             "chroma_qp_offset=0), in the same run; repeatable. Its JSON key is the fields changed")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON to PATH")


def _videos_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    shared = os.environ.get("VFN_SHARED")
    if shared:
        return Path(shared) / "videos"
    return Path(__file__).resolve().parents[3].parent / "shared" / "videos"


# ---------------------------------------------------------------- memory of the whole Ray tree


def _process_mb(proc: psutil.Process) -> float:
    """Proportional set size where the OS reports it (Linux): shared pages (Ray's object store,
    torch's libraries mapped by every worker) are split between the processes that map them, so the
    sum over the tree is not inflated by double counting; resident set size elsewhere."""
    if PSS:
        return proc.memory_full_info().pss / 2**20
    return proc.memory_info().rss / 2**20


def tree_memory(root: int | None = None) -> tuple[float, int]:
    """(MB, number of processes) of `root` (default: this process) and all its descendants
    (for a local Ray: its GCS, raylet and worker processes)."""
    parent = psutil.Process(root or os.getpid())
    total, count = 0.0, 0
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            total += _process_mb(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):  # exited while we looked
            continue
        count += 1
    return total, count


class PeakMemory:
    """Samples the memory of this process and all its descendants (Ray's raylet, workers) in a
    background thread while the pipeline runs; `peak` (MB) and `procs` at that peak."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.peak, self.procs, self._stop = interval, 0.0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        mb, n = tree_memory()
        if mb > self.peak:
            self.peak, self.procs = mb, n

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


# ---------------------------------------------------------------- the measurements


def _files_rows(files: list[str]):
    """Each shard file's encoded videos, read one file at a time, as a loader without Ray reads them."""
    import pyarrow.parquet as pq

    for f in files:
        yield pq.read_table(f, columns=["video"], use_threads=False).column("video").to_pylist()


def _timed_per_file(files: list[str], decode) -> float:
    """clips/s of `decode(video)` over the shards, timing only the decodes: each file's videos are
    decoded right after it is read (their bytes still in the cache, as in a decode task), and the
    read itself is left out, so the bound is decoding and nothing else."""
    n, spent = 0, 0.0
    for videos in _files_rows(files):
        t = time.perf_counter()
        for v in videos:
            decode(v)
        spent += time.perf_counter() - t
        n += len(videos)
    return n / spent


def _raw_decord(files: list[str], frames: int, seed: int = 0) -> float:
    """Decode exactly the frames a training clip samples (segment sampling), nothing else."""
    import numpy as np

    from vfn.data.video import ClipSpec, open_video, read_frames, train_indices

    clip, rng = ClipSpec(num_frames=frames), np.random.default_rng(seed)

    def decode(data: bytes) -> None:
        vr = open_video(data)
        read_frames(vr, train_indices(len(vr), clip, rng))

    return _timed_per_file(files, decode)


def _decode_augment(files: list[str], frames: int, size: int, seed: int = 0) -> float:
    import numpy as np
    import torch

    from vfn.data.clips import decode_train_clip
    from vfn.data.video import AugmentSpec, ClipSpec

    torch.set_num_threads(1)  # one process per CPU, as Ray's decode tasks run (more threads oversubscribe)
    clip, aug, rng = ClipSpec(num_frames=frames, input_size=size), AugmentSpec(), np.random.default_rng(seed)
    return _timed_per_file(files, lambda data: decode_train_clip(data, clip, aug, rng))


def _parallel(fn, files: list[str], procs: int, *args, repeats: int = 2) -> float:
    """Throughput of `fn` over the shard files split between `procs` processes (the bound with the
    same CPUs as Ray gets), best of `repeats`. Each process times its own loop and the rates add
    up: the ideal of every process busy throughout."""
    from vfn.data.ingest import process_pool

    chunks = [files[i::procs] for i in range(procs)]
    with process_pool(procs) as pool:
        list(pool.map(fn, [c[:1] for c in chunks], *[[a] * procs for a in args]))  # warm the workers
        return max(sum(pool.map(fn, chunks, *[[a] * procs for a in args])) for _ in range(repeats))


def _epoch(ds, batch_size: int) -> dict:
    """One pass: clips, corrupt, whole-pass clips/s, and the steady rate (the middle 80% of the clips,
    leaving out the per-pass start: planning, listing files, first tasks) that a long epoch sees."""
    n = bad = 0
    t = time.perf_counter()
    marks = []
    for batch in ds.iter_torch_batches(batch_size=batch_size):
        n += len(batch["label"])
        bad += int((~batch["valid"]).sum())
        marks.append((n, time.perf_counter() - t))
    lo = next(m for m in marks if m[0] >= 0.1 * n)
    hi = next(m for m in marks if m[0] >= 0.9 * n)
    rate = n / marks[-1][1]
    # a pass of one or two batches has no middle to time: its whole-pass rate is all there is
    steady = (hi[0] - lo[0]) / max(hi[1] - lo[1], 1e-9) if hi[0] > lo[0] else rate
    return {"clips": n, "corrupt": bad, "rate": rate, "steady": steady, "first_batch_s": marks[0][1]}


# the parts of the pipeline that CPU time is split into (`cpu_ms_by_role`)
ROLES = ("decode_children", "ray_workers", "driver", "ray_system")


def process_role(proc: psutil.Process, driver_pid: int) -> str:
    """Which part of the pipeline a process of the Ray tree is: the decode guards' children (they
    decode) and their forkservers; Ray worker processes running tasks (Parquet reads, the decode
    tasks' own side: guard IPC, output blocks) or idle between them; this process (the streaming
    executor and `iter_torch_batches`); everything else Ray runs (raylet, GCS, dashboard agent,
    Ray Data's internal `_StatsActor` and autoscaling coordinator)."""
    if proc.pid == driver_pid:
        return "driver"
    cmd = " ".join(proc.cmdline())
    if "multiprocessing.forkserver" in cmd or "multiprocessing.resource_tracker" in cmd:
        return "decode_children"
    if cmd.startswith("ray::") and not cmd.startswith(("ray::_", "ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return "ray_workers"
    return "ray_system"


def cpu_snapshot(root: int | None = None) -> dict[int, tuple[str, float]]:
    """{pid: (role, user + system CPU seconds)} of `root` (default: this process) and its live descendants."""
    parent = psutil.Process(root or os.getpid())
    out = {}
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[proc.pid] = (process_role(proc, parent.pid), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def cpu_ms_by_role(before: dict, after: dict, clips: int) -> dict[str, float]:
    """CPU ms per clip spent between two snapshots, by role (a process started in between counts
    whole; one that exited in between is lost, which Ray's long-lived workers rarely do)."""
    spent = dict.fromkeys(ROLES, 0.0)
    for pid, (role, seconds) in after.items():
        spent[role] += seconds - before.get(pid, (role, 0.0))[1]
    return {role: ms / clips * 1000 for role, ms in spent.items()}


def start_ray(cpus: int) -> None:
    """A local Ray of `cpus` CPUs of our own (never one another process left running: a stale
    `ray_current_cluster` file would make a plain `ray.init(num_cpus=...)` try to join it)."""
    from vfn.runtime import ray_setup

    ray_setup.init_ray({"num_cpus": cpus, "log_to_driver": False})
    ray_setup.quiet_ray_data()


def make_shards(work: Path, vdir: Path, sizes: dict[str, int], encoding, shard_mb: float) -> dict:
    """Shards of both sizes under `work`, and what packing cost: {size: dir, "pack": {...}}."""
    from vfn.data.ingest import write_shards
    from vfn.data.shards import count_videos, read_metadata

    out: dict = {}
    work.mkdir(parents=True, exist_ok=True)
    for name, n in sizes.items():
        manifest = work / f"{name}.csv"
        manifest.write_text("".join(f"{vdir / SHARED_VIDEOS[i % len(SHARED_VIDEOS)]},{i % 5}\n" for i in range(n)))
        workers = min(8, os.cpu_count() or 1)  # write_shards' default pool
        report = write_shards(str(manifest), str(work / name), max_shard_bytes=int(shard_mb * 2**20),
                              encoding=encoding, num_workers=workers, progress=False)
        out[name] = str(work / name)
        assert count_videos(out[name]) == n, report.summary()
        if name == "small":
            meta = read_metadata(out[name], ["num_bytes", "source_bytes"])
            stored, source = (sum(meta.column(c).to_pylist()) for c in ("num_bytes", "source_bytes"))
            # wall time x pool size: the pool's processes have exited, their CPU times with them;
            # shards left in a reused --workdir were not packed in this run, so there is no cost to report
            speed = None if report.skipped else n / (report.seconds * workers)
            out["pack"] = {"videos_per_cpu_s": speed, "size_ratio": stored / source}
    return out


def cpu_bounds(files: list[str], args) -> dict:
    """Raw decord and decode + augment over the shards the pipeline is timed on, best of 2 passes as
    the pipeline's (a busy neighbour should not drag either side down)."""
    return {"raw_bound_clips_per_s": _parallel(_raw_decord, files, args.cpus, args.frames),
            "decode_augment_clips_per_s": _parallel(_decode_augment, files, args.cpus, args.frames, args.input_size)}


def pipeline_figures(shards: dict, args) -> dict:
    """The Ray Data pipeline in on-device mode. The large dataset runs first, unsampled: it brings up
    every decode worker the CPUs allow (each a Ray worker process plus its decode guard's child). Then
    both sizes are sampled for memory with that same pool, so the two peaks differ only by what the
    data adds (a fresh Ray on a few dozen rows starts fewer decode workers and peaks lower for that
    reason alone). The last two passes, unsampled (reading every process's smaps for PSS costs CPU
    the pipeline would otherwise get), are timed, and the faster counts, as the raw bound takes the
    faster of its 2 passes over the same rows: a busy neighbour should not decide the ratio."""
    from vfn.data.pipeline import build_dataset
    from vfn.data.video import AugmentSpec, ClipSpec

    clip = ClipSpec(num_frames=args.frames, input_size=args.input_size)
    out, timed = {}, []
    passes = [("large", "warm-up"), ("small", "memory"), ("large", "memory"), ("large", "timed"), ("large", "timed")]
    for name, kind in passes:
        ds = build_dataset(shards[name], "train", clip, AugmentSpec(), augment_on_device=True)
        if kind == "memory":
            with PeakMemory() as mem:
                _epoch(ds, args.batch_size)
            out[f"peak_mb_{name}"], out[f"peak_procs_{name}"] = mem.peak, mem.procs
        elif kind == "timed":
            before = cpu_snapshot()
            ep = _epoch(ds, args.batch_size)
            timed.append((ep, cpu_ms_by_role(before, cpu_snapshot(), ep["clips"])))
        else:
            _epoch(ds, args.batch_size)
    ep, cpu = max(timed, key=lambda t: t[0]["steady"])
    return out | dict(pipeline_clips_per_s=ep["steady"], pipeline_passes_clips_per_s=[e["steady"] for e, _ in timed],
                      pipeline_epoch_clips_per_s=ep["rate"], epoch_start_s=ep["first_batch_s"],
                      cpu_ms_per_clip=sum(cpu.values()), cpu_ms_by_role=cpu, corrupt=ep["corrupt"])


def measure(label: str, work: Path, vdir: Path, sizes: dict, encoding, args) -> dict:
    import ray

    from vfn.data.shards import list_shards

    shards = make_shards(work / label, vdir, sizes, encoding, args.shard_mb)
    fig = cpu_bounds(list_shards(shards["large"]), args)
    start_ray(args.cpus)
    try:
        fig.update(pipeline_figures(shards, args))
    finally:
        ray.shutdown()
    fig["pipeline_over_raw"] = fig["pipeline_clips_per_s"] / fig["raw_bound_clips_per_s"]
    fig["pack_videos_per_cpu_s"], fig["size_ratio"] = shards["pack"]["videos_per_cpu_s"], shards["pack"]["size_ratio"]
    speed = fig["pack_videos_per_cpu_s"]
    pack = "(reused shards, not timed)" if speed is None else f"{speed:.2f}"
    _say(f"{label:10s} raw bound {fig['raw_bound_clips_per_s']:6.1f} clips/s | decode+augment "
         f"{fig['decode_augment_clips_per_s']:6.1f} | pipeline (augment on device) {fig['pipeline_clips_per_s']:6.1f} "
         f"= {fig['pipeline_over_raw']:.0%} of raw ({fig['pipeline_epoch_clips_per_s']:.1f} over the whole pass, "
         f"first batch after {fig['epoch_start_s']:.1f} s), {fig['cpu_ms_per_clip']:.1f} CPU ms/clip ("
         + ", ".join(f"{role} {ms:.1f}" for role, ms in fig["cpu_ms_by_role"].items()) + f") | peak {MEMORY} "
         f"{fig['peak_mb_small']:.0f} -> {fig['peak_mb_large']:.0f} MB ({fig['peak_procs_small']} / "
         f"{fig['peak_procs_large']} processes) | packing "
         f"{pack} videos/s per core, size x{fig['size_ratio']:.2f}")
    return fig


def run(args: argparse.Namespace) -> int:
    from vfn.data.transcode import Encoding, encoding_label, parse_encoding

    try:
        extra = [parse_encoding(text) for text in args.encoding or []]
    except ValueError as e:
        print(f"vfn bench data: error: {e}", file=sys.stderr)
        return 2
    vdir = _videos_dir(args.videos_dir)
    missing = [v for v in SHARED_VIDEOS if not (vdir / v).is_file()]
    if missing:
        print(f"vfn bench data: error: {vdir} lacks {missing} (pass --videos-dir)", file=sys.stderr)
        return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vfn_bench_data_"))
    sizes = {"small": args.videos, "large": args.videos * args.scale}
    _say(f"data: {len(SHARED_VIDEOS)} Kinetics-style clips (240-320p, 164-310 frames) repeated to {sizes['small']} "
         f"and {sizes['large']} rows; clips {args.frames}x{args.input_size}; {args.cpus} CPUs; load average "
         f"{os.getloadavg()[0]:.1f} at start")
    arms = [("original", None), ("transcoded", Encoding()), *((encoding_label(e), e) for e in extra)]
    result = {label: measure(label, work, vdir, sizes, encoding, args) for label, encoding in arms}
    result["config"] = {k: getattr(args, k) for k in ("videos", "scale", "frames", "input_size", "batch_size", "cpus")}
    _say(f"load average {os.getloadavg()[0]:.1f} at the end (other work on this machine slows every figure)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        _say(f"wrote {args.json}")
    return 0
