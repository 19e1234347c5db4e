"""Writing Parquet video shards (`vfn data shard`): probe, re-encode and pack the videos of a
manifest. The format and its reading are `vfn.data.shards`.

Why re-encode: datasets such as Kinetics have a keyframe every few seconds, so every frame of a
segment-sampled training clip costs a decode from far back (~100 ms per 8-frame clip). By default
each video is re-encoded while packing (`vfn.data.transcode`): H.264 yuv420p, short side
256 (never upscaled), a keyframe every 8 frames, constant frame rate with every frame kept, rotation
applied to the pixels, audio dropped. The same clip then decodes about 2-3x faster and the shard is
no larger. `encoding=None` (`vfn data shard --keep-original`) stores the source bytes unchanged.

Shards are planned from file sizes before any decoding, so the assignment is deterministic and a
re-run after a crash writes only the shards that are missing. Each shard is written to a hidden
temporary file and renamed into place, so a visible shard is always complete.

Packing runs in a local process pool (one video per core), or, given a Ray cluster address, as one
Ray task per shard spread over the cluster's nodes; then the output directory (and the videos) must
be reachable from every node: a URI such as s3://..., or a shared file system.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import posixpath
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vfn.data.guard import guard_for
from vfn.data.manifest import VideoRecord, read_manifest
from vfn.data.shards import (
    ENCODING_KEY,
    SCHEMA,
)
from vfn.data.transcode import Encoding, TranscodeError, encoding_json, transcode
from vfn.data.video import CorruptVideoError, open_video, read_frames
from vfn.runtime.storage import filesystem_and_path, join, read_bytes, read_text, write_text

log = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 256 << 20
PROBE_TIMEOUT_S = 60.0  # first, middle and last frame of one video
FULL_PROBE_TIMEOUT_S = 600.0  # every frame (--full-probe)
ROW_GROUP_BYTES = 64 << 20  # Parquet row groups: a reader never holds more than this per group
DEFAULT_ENCODING = Encoding()


def probe_video(data: bytes, full: bool = False) -> dict:
    """Metadata of an encoded video, decoding to prove it is usable: the first, middle and last
    frame by default, every frame with `full`. Raises CorruptVideoError."""
    vr = open_video(data)
    n = len(vr)
    if full:
        for start in range(0, n, 32):
            read_frames(vr, list(range(start, min(n, start + 32))))
        frame = read_frames(vr, [0])
    else:
        frame = read_frames(vr, sorted({0, n // 2, n - 1}))
    fps = float(vr.get_avg_fps() or 0.0)
    return {"frames": n, "fps": fps, "height": int(frame.shape[1]), "width": int(frame.shape[2]),
            "codec": _codec_name(data)}


def _codec_name(data: bytes) -> str:
    try:
        import av  # LAZY: PyAV only to name a codec; decord decodes

        with av.open(io.BytesIO(data)) as c:
            return c.streams.video[0].codec_context.name
    except Exception:  # metadata only; decord already proved the video decodes
        return "unknown"


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started by forkserver, not fork: a fork taken after torch/decord started
    their thread pools can deadlock in the child."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def probe_source(data: bytes, full: bool) -> dict:
    """`probe_video` of an untrusted source video in a guarded child process: a decoder that hangs
    (decord issue #373) or crashes rejects the video instead of stalling the packing."""
    return guard_for(FULL_PROBE_TIMEOUT_S if full else PROBE_TIMEOUT_S).call(probe_video, data, full)


def read_and_probe(path: str, full: bool) -> tuple[bytes | None, dict | None, str | None]:
    """(bytes, probed metadata, None) of a source video, or (None, None, why it is rejected)."""
    try:
        data = read_bytes(path)
    except OSError as e:
        return None, None, f"cannot read file: {e}"
    if not data:
        return None, None, "empty file"
    try:
        return data, probe_source(data, full), None
    except CorruptVideoError as e:
        return None, None, str(e)


def probe_file(args: tuple[str, bool]) -> tuple[dict | None, str | None]:
    data, meta, reason = read_and_probe(*args)
    return (None, reason) if meta is None else ({**meta, "num_bytes": len(data)}, None)


def prepare_video(args: tuple[str, bool, Encoding | None]) -> tuple[dict | None, str | None]:
    """(row fields: the stored video's bytes and metadata plus the source's, None) or (None, why
    the video is rejected). The source is probed first, the re-encoded bytes again after."""
    path, full, encoding = args
    data, source, reason = read_and_probe(path, full)
    if source is None:
        return None, reason
    source_fields = {"source_" + k: v for k, v in source.items()} | {"source_bytes": len(data)}
    if encoding is None:
        return {"video": data, **source, "num_bytes": len(data), **source_fields}, None
    try:
        stored = transcode(data, encoding)
    except TranscodeError as e:
        return None, str(e)
    if stored.psnr_mean < encoding.min_psnr:
        return None, (f"re-encode too lossy: PSNR {stored.psnr_mean:.1f} dB against the source, below the floor "
                      f"of {encoding.min_psnr:g} dB (--min-psnr; --keep-original stores the source)")
    try:
        meta = probe_video(stored.data)
    except CorruptVideoError as e:
        return None, f"re-encoded video does not decode: {e}"
    return {"video": stored.data, **meta, "num_bytes": len(stored.data), **source_fields,
            "psnr": stored.psnr_mean, "psnr_min": stored.psnr_min, "colour_kept": stored.colour_kept}, None


# ---------------------------------------------------------------- writing


@dataclass
class ShardReport:
    out: str
    shards: list[str] = field(default_factory=list)
    written: int = 0  # shards written in this run
    skipped: int = 0  # shards already complete
    videos: int = 0  # videos in all shards
    rejected: list[tuple[str, int, int, str]] = field(default_factory=list)  # path, label, line, reason
    seconds: float = 0.0
    nodes: list[str] = field(default_factory=list)  # Ray node ids that wrote shards (empty when local)

    def summary(self) -> str:
        where = f" on {len(self.nodes)} Ray nodes" if self.nodes else ""
        return (f"{len(self.shards)} shards in {self.out} ({self.written} written{where}, {self.skipped} already "
                f"done), {self.videos} videos, {len(self.rejected)} rejected, {self.seconds:.1f}s")


@dataclass(frozen=True)
class ShardJob:
    """Everything needed to write one shard, on any machine (plain data: it travels to Ray tasks)."""

    number: int
    out_dir: str
    rows: list[tuple[int, str, int, int, str]]  # manifest index, path, label, line, full path
    full_probe: bool
    encoding: Encoding | None

    @property
    def name(self) -> str:
        return f"shard-{self.number:05d}.parquet"

    @property
    def rejected_file(self) -> str:
        return join(self.out_dir, f"shard-{self.number:05d}.rejected.csv")


def _file_size(path: str) -> int:
    if "://" in path:
        fs, p = filesystem_and_path(path)
        return fs.get_file_info(p).size or 0
    return os.path.getsize(path)


def plan_shards(records: list[VideoRecord], max_shard_bytes: int) -> list[list[int]]:
    """Consecutive manifest rows packed greedily into shards of at most max_shard_bytes
    (a single larger video gets a shard of its own). Sizes are the source files' sizes."""
    plan: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, r in enumerate(records):
        s = _file_size(r.full_path)
        if current and size + s > max_shard_bytes:
            plan.append(current)
            current, size = [], 0
        current.append(i)
        size += s
    if current:
        plan.append(current)
    return plan


def plan_digest(records: list[VideoRecord], plan: list[list[int]], max_shard_bytes: int,
                encoding: Encoding | None) -> str:
    payload: list = [[records[i].path, records[i].label] for shard in plan for i in shard] + [max_shard_bytes]
    if encoding is not None:  # without: the digest of shards written before re-encoding existed
        payload.append(encoding.settings())
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def check_or_write_plan(out_dir: str, plan: list[list[int]], digest: str, encoding: Encoding | None,
                        num_videos: int, max_shard_bytes: int) -> None:
    """Record the plan, or make sure the directory's plan is this one (same manifest, shard size
    and encoding): only then may finished shards be skipped."""
    plan_file = join(out_dir, "_plan.json")
    settings = encoding.settings() if encoding else None
    if (text := read_text(plan_file)) is not None:
        existing = json.loads(text)
        if existing.get("digest") != digest:
            raise ValueError(
                f"{out_dir} holds shards of a different manifest, shard size or encoding (there: "
                f"{existing.get('encoding', 'original bytes')}, max {existing.get('max_shard_bytes')} bytes; this run: "
                f"{settings or 'original bytes'}, max {max_shard_bytes} bytes); use an empty output directory")
        return
    write_text(plan_file, json.dumps({"digest": digest, "num_shards": len(plan), "num_videos": num_videos,
                                      "max_shard_bytes": max_shard_bytes, "encoding": settings, "shards": plan}))


def write_shards(records: list[VideoRecord] | str, out_dir: str, root: str | None = None,
                 max_shard_bytes: int = DEFAULT_SHARD_BYTES, full_probe: bool = False,
                 num_workers: int | None = None, num_classes: int | None = None,
                 shuffle_seed: int | None = 0, progress: bool = True,
                 encoding: Encoding | None = DEFAULT_ENCODING, address: str | None = None) -> ShardReport:
    """Pack the videos of `records` (or of a manifest file) into Parquet shards under `out_dir`,
    re-encoded with `encoding` (None: the source bytes unchanged).

    Videos are shuffled (deterministically, `shuffle_seed`; None keeps manifest order) before
    packing: manifests are often sorted by class, and shards of one class each would make the
    per-epoch file shuffle of training useless. Re-running with the same manifest and settings
    skips finished shards; other ones in the same directory are an error (start a fresh directory).
    With `address` (a Ray cluster), each shard is written by a Ray task somewhere in the cluster;
    without, by this machine's process pool (`num_workers` processes)."""
    t0 = time.time()
    if isinstance(records, (str, os.PathLike)):
        records = read_manifest(records, root=root, num_classes=num_classes)
    if not records:
        raise ValueError("no videos to shard")
    out_dir = str(out_dir)
    fs, base = filesystem_and_path(out_dir)
    fs.create_dir(base, recursive=True)
    order = list(range(len(records)))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(records)).tolist()
    plan = [[order[j] for j in shard] for shard in plan_shards([records[i] for i in order], max_shard_bytes)]
    check_or_write_plan(out_dir, plan, plan_digest(records, plan, max_shard_bytes, encoding), encoding,
                        len(records), max_shard_bytes)
    report = ShardReport(out=out_dir, shards=[join(out_dir, f"shard-{k:05d}.parquet") for k in range(len(plan))])
    rejected_by_shard: dict[int, list] = {}
    jobs = []
    for job in shard_jobs(records, plan, out_dir, full_probe, encoding):
        if fs.get_file_info(posixpath.join(base, job.name)).type == pafs.FileType.File:
            report.skipped += 1
            report.videos += pq.ParquetFile(fs.open_input_file(posixpath.join(base, job.name))).metadata.num_rows
            rejected_by_shard[job.number] = _read_rejected(job.rejected_file)
        else:
            jobs.append(job)
    packed = pack_on_ray(jobs, address) if address else pack_locally(jobs, num_workers)
    for job, videos, rejected, node in packed:
        report.written += 1
        report.videos += videos
        rejected_by_shard[job.number] = rejected
        report.nodes = sorted(set(report.nodes) | ({node} if node else set()))
        if progress:
            print(f"  {job.name}: {videos} videos, {len(rejected)} rejected "
                  f"({len(rejected_by_shard)}/{len(plan)})", file=sys.stderr, flush=True)
    report.rejected = [r for k in sorted(rejected_by_shard) for r in rejected_by_shard[k]]
    write_text(join(out_dir, "rejected.csv"), _rejected_csv(report.rejected))
    report.seconds = time.time() - t0
    return report
def shard_jobs(records: list[VideoRecord], plan: list[list[int]], out_dir: str, full_probe: bool,
               encoding: Encoding | None) -> list[ShardJob]:
    return [ShardJob(k, out_dir, [(i, records[i].path, records[i].label, records[i].line, records[i].full_path)
                                  for i in rows], full_probe, encoding) for k, rows in enumerate(plan)]


Mapper = Callable[[Callable, list], Iterable]
Packed = tuple[ShardJob, int, list[tuple[str, int, int, str]], str | None]  # job, videos, rejected, Ray node


def pack_shard(job: ShardJob, mapper: Mapper = map) -> tuple[int, list[tuple[str, int, int, str]]]:
    """Prepare the shard's videos (`mapper` runs `prepare_video` over them: in order, maybe in
    parallel) and write the shard and its rejects. Returns (videos written, rejected rows).
    Atomic: the shard appears under its name only once complete, its rejects recorded first."""
    fs, base = filesystem_and_path(job.out_dir)
    shard_path = posixpath.join(base, job.name)
    tmp = posixpath.join(base, "." + job.name + ".tmp")
    results = mapper(prepare_video, [(row[4], job.full_probe, job.encoding) for row in job.rows])
    schema = SCHEMA.with_metadata({ENCODING_KEY: encoding_json(job.encoding)})
    rejected, videos = [], 0
    # video bytes are already compressed and unique: no codec, no dictionary (which would also
    # silently deduplicate repeated files)
    dictionary = ["path", "codec", "source_codec"]
    with fs.open_output_stream(tmp) as sink, pq.ParquetWriter(sink, schema, compression="none",
                                                              use_dictionary=dictionary) as writer:
        batch: list[dict] = []
        size = 0
        for (index, path, label, line, _), (fields, reason) in zip(job.rows, results):
            if fields is None:
                rejected.append((path, label, line, reason))
                continue
            batch.append({"index": index, "path": path, "label": label, **fields})
            videos += 1
            size += len(fields["video"])
            if size >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch, size = [], 0
        if batch or not videos:  # an all-rejected shard is still a valid (empty) shard
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    write_text(job.rejected_file, _rejected_csv(rejected))
    fs.move(tmp, shard_path)
    return videos, rejected


def pack_locally(jobs: list[ShardJob], num_workers: int | None) -> Iterator[Packed]:
    """Shards one after the other, the videos of each spread over a local process pool."""
    if not jobs:
        return
    workers = num_workers or min(8, os.cpu_count() or 1)
    pool = process_pool(workers) if workers > 1 else None
    try:
        for job in jobs:
            # re-encoding takes ~0.5 s a video: hand them out one by one to keep every process busy
            mapper = functools.partial(pool.map, chunksize=1 if job.encoding else 4) if pool else map
            videos, rejected = pack_shard(job, mapper)
            yield job, videos, rejected, None
    finally:
        if pool:
            pool.shutdown()


def pack_shard_on_node(job: ShardJob) -> tuple[int, list[tuple[str, int, int, str]], str]:
    """The body of a Ray task: one shard, its videos one after the other (a task holds one CPU)."""
    import ray  # LAZY: Ray only when packing on a cluster

    videos, rejected = pack_shard(job)
    return videos, rejected, ray.get_runtime_context().get_node_id()


def pack_on_ray(jobs: list[ShardJob], address: str) -> Iterator[Packed]:
    """One Ray task per shard across the cluster at `address` (or the Ray this process is already
    connected to), yielded as they finish. Ray is imported here only: local packing never starts it."""
    if not jobs:
        return
    import ray  # LAZY: Ray only when packing on a cluster

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as e:
            raise ValueError(f"cannot connect to the Ray cluster at {address}: {e}") from None
    try:
        task = ray.remote(num_cpus=1)(pack_shard_on_node)
        pending = {task.remote(job): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            videos, rejected, node = ray.get(done[0])
            yield job, videos, rejected, node
    finally:
        if started:
            ray.shutdown()


def _rejected_csv(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "line", "reason"])
    w.writerows(rows)
    return buf.getvalue()


def _read_rejected(location: str) -> list[tuple[str, int, int, str]]:
    text = read_text(location)
    if text is None:
        return []
    rows = list(csv.reader(io.StringIO(text)))
    return [(p, int(lab), int(line), reason) for p, lab, line, reason in rows[1:]]
