"""Parquet video shards: one row per video with its encoded bytes, label and probed metadata.

Layout of a shard directory (local path or any pyarrow filesystem URI, e.g. s3://, gs://):
  shard-00000.parquet ...   columns: index, path, label, video (bytes), frames, fps, height,
                            width, codec, num_bytes
  shard-00000.rejected.csv  videos of that shard that failed probing (path,label,line,reason)
  rejected.csv              all rejected videos, gathered at the end
  _plan.json                which manifest rows go to which shard (lets a re-run skip finished shards)

Shards are planned from file sizes before any decoding, so the assignment is deterministic and a
re-run after a crash writes only the shards that are missing. Each shard is written to a hidden
temporary file and renamed into place, so a visible shard is always complete. `index` is the
video's position in the manifest (unique; gaps where videos were rejected).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import posixpath
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vfn.platform.data.clips import CorruptVideoError, open_video, read_frames
from vfn.platform.data.manifest import VideoRecord, read_manifest
from vfn.platform.storage import join, read_bytes, read_text, resolve, write_text

log = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 256 << 20
ROW_GROUP_BYTES = 64 << 20  # Parquet row groups: a reader never holds more than this per group

SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("path", pa.string()),
    ("label", pa.int64()),
    ("video", pa.binary()),
    ("frames", pa.int32()),
    ("fps", pa.float32()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("codec", pa.string()),
    ("num_bytes", pa.int64()),
])
META_COLUMNS = [n for n in SCHEMA.names if n != "video"]


# ---------------------------------------------------------------- probing


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
        import av

        with av.open(io.BytesIO(data)) as c:
            return c.streams.video[0].codec_context.name
    except Exception:  # metadata only; decord already proved the video decodes
        return "unknown"


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started by forkserver, not fork: a fork taken after torch/decord started
    their thread pools can deadlock in the child."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))


def probe_file(args: tuple[str, bool]) -> tuple[dict | None, str | None]:
    path, full = args
    try:
        data = read_bytes(path)
    except OSError as e:
        return None, f"cannot read file: {e}"
    if not data:
        return None, "empty file"
    try:
        meta = probe_video(data, full)
    except CorruptVideoError as e:
        return None, str(e)
    meta["num_bytes"] = len(data)
    return meta, None


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

    def summary(self) -> str:
        return (f"{len(self.shards)} shards in {self.out} ({self.written} written, {self.skipped} already done), "
                f"{self.videos} videos, {len(self.rejected)} rejected, {self.seconds:.1f}s")


def _file_size(path: str) -> int:
    if "://" in path:
        fs, p = resolve(path)
        return fs.get_file_info(p).size or 0
    return os.path.getsize(path)


def plan_shards(records: list[VideoRecord], max_shard_bytes: int) -> list[list[int]]:
    """Consecutive manifest rows packed greedily into shards of at most max_shard_bytes
    (a single larger video gets a shard of its own)."""
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


def write_shards(records: list[VideoRecord] | str, out_dir: str, root: str | None = None,
                 max_shard_bytes: int = DEFAULT_SHARD_BYTES, full_probe: bool = False,
                 num_workers: int | None = None, num_classes: int | None = None,
                 shuffle_seed: int | None = 0, progress: bool = True) -> ShardReport:
    """Pack the videos of `records` (or of a manifest file) into Parquet shards under `out_dir`.

    Videos are shuffled (deterministically, `shuffle_seed`; None keeps manifest order) before
    packing: manifests are often sorted by class, and shards of one class each would make the
    per-epoch file shuffle of training useless. Re-running with the same manifest skips finished
    shards; a different manifest in the same directory is an error (start a fresh directory)."""
    t0 = time.time()
    if isinstance(records, (str, os.PathLike)):
        records = read_manifest(records, root=root, num_classes=num_classes)
    if not records:
        raise ValueError("no videos to shard")
    fs, base = resolve(out_dir)
    fs.create_dir(base, recursive=True)
    order = list(range(len(records)))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(records)).tolist()
    plan = [[order[j] for j in shard] for shard in plan_shards([records[i] for i in order], max_shard_bytes)]
    digest = hashlib.sha256(json.dumps(
        [[records[i].path, records[i].label] for shard in plan for i in shard] + [max_shard_bytes]
    ).encode()).hexdigest()
    plan_file = join(str(out_dir), "_plan.json")
    if (text := read_text(plan_file)) is not None:
        if json.loads(text).get("digest") != digest:
            raise ValueError(f"{out_dir} holds shards of a different manifest or shard size; "
                             "use an empty output directory")
    else:
        write_text(plan_file, json.dumps({"digest": digest, "num_shards": len(plan), "num_videos": len(records),
                                          "max_shard_bytes": max_shard_bytes, "shards": plan}))
    report = ShardReport(out=str(out_dir))
    workers = num_workers or min(8, os.cpu_count() or 1)
    pool = process_pool(workers) if workers > 1 else None
    try:
        for k, rows in enumerate(plan):
            name = f"shard-{k:05d}.parquet"
            shard_path = posixpath.join(base, name)
            rejected_file = join(str(out_dir), f"shard-{k:05d}.rejected.csv")
            report.shards.append(join(str(out_dir), name))
            if fs.get_file_info(shard_path).type == pafs.FileType.File:
                report.skipped += 1
                report.videos += pq.ParquetFile(fs.open_input_file(shard_path)).metadata.num_rows
                report.rejected += _read_rejected(rejected_file)
                continue
            jobs = [(records[i].full_path, full_probe) for i in rows]
            results = list(pool.map(probe_file, jobs, chunksize=4)) if pool else [probe_file(j) for j in jobs]
            rejected = [(records[i].path, records[i].label, records[i].line, reason)
                        for i, (meta, reason) in zip(rows, results) if meta is None]
            good = [(i, meta) for i, (meta, _) in zip(rows, results) if meta is not None]
            # rejects first: a visible shard implies its rejects are recorded too
            write_text(rejected_file, _rejected_csv(rejected))
            _write_shard(fs, shard_path, records, good)
            report.written += 1
            report.videos += len(good)
            report.rejected += rejected
            if progress:
                print(f"  {name}: {len(good)} videos, {len(rejected)} rejected "
                      f"({k + 1}/{len(plan)})", file=sys.stderr, flush=True)
    finally:
        if pool:
            pool.shutdown()
    write_text(join(str(out_dir), "rejected.csv"), _rejected_csv(report.rejected))
    report.seconds = time.time() - t0
    return report


def _write_shard(fs, shard_path: str, records: list[VideoRecord], good: list[tuple[int, dict]]) -> None:
    tmp = posixpath.join(posixpath.dirname(shard_path), "." + posixpath.basename(shard_path) + ".tmp")
    # video bytes are already compressed and unique: no codec, no dictionary (which would also
    # silently deduplicate repeated files)
    with fs.open_output_stream(tmp) as sink, pq.ParquetWriter(sink, SCHEMA, compression="none",
                                                              use_dictionary=["path", "codec"]) as writer:
        batch: list[dict] = []
        size = 0
        for i, meta in good:
            r = records[i]
            data = read_bytes(r.full_path)
            batch.append({"index": i, "path": r.path, "label": r.label, "video": data, **meta})
            size += len(data)
            if size >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
                batch, size = [], 0
        if batch or not good:  # an all-rejected shard is still a valid (empty) shard
            writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
    fs.move(tmp, shard_path)


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


# ---------------------------------------------------------------- reading


def list_shards(location: str | list[str]) -> list[str]:
    """Shard files (sorted) of a directory, a single .parquet file, or a list of either.
    URIs keep their scheme so Ray and pyarrow read them the same way on every node."""
    if isinstance(location, (list, tuple)):
        return [s for loc in location for s in list_shards(loc)]
    location = str(location)
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [location]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{location}: no such shard file or directory")
    names = sorted(posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(path))
                   if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    names = [n for n in names if not n.startswith((".", "_"))]
    if not names:
        raise FileNotFoundError(f"{location}: no .parquet shards there (run `vfn data shard` first)")
    return [join(location, n) for n in names]


def _parquet_file(path: str) -> pq.ParquetFile:
    fs, p = resolve(path)
    return pq.ParquetFile(fs.open_input_file(p))


def count_videos(shards: str | list[str]) -> int:
    """Number of videos, from Parquet footers only (no video bytes are read)."""
    return sum(_parquet_file(s).metadata.num_rows for s in list_shards(shards))


def read_metadata(shards: str | list[str], columns: list[str] | None = None) -> pa.Table:
    """Metadata columns (no video bytes) of all shards, in shard order."""
    cols = columns or META_COLUMNS
    tables = [_parquet_file(s).read(columns=cols) for s in list_shards(shards)]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table().select(cols)
