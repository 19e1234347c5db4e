"""Parquet video shards, the format and its reading: one row per video with its encoded bytes, label
and probed metadata. Writing them (probing, re-encoding, packing) is `vfn.data.ingest`; the Ray
Data pipeline reads them through this module, which is why it imports neither the encoder nor the
decode guard.

Layout of a shard directory (local path or any pyarrow filesystem URI, e.g. s3://, gs://):
  shard-00000.parquet ...   columns: index, path, label, video (bytes), frames, fps, height,
                            width, codec, num_bytes (the STORED video), source_frames, source_fps,
                            source_height, source_width, source_codec, source_bytes (the original),
                            psnr, psnr_min (dB, the re-encode against the source: mean and worst
                            frame), colour_kept (its share of the source's frame-to-frame colour
                            change; see `transcode.Transcoded`): null for original bytes;
                            footer key `vfn.encoding`: JSON of how the videos were encoded
  shard-00000.rejected.csv  videos of that shard that failed probing or re-encoding (path,label,line,reason)
  rejected.csv              all rejected videos, gathered at the end
  _plan.json                which manifest rows go to which shard, and the encoding settings
                            (lets a re-run skip finished shards; other settings are an error)

`index` is the video's position in the manifest (unique; gaps where videos were rejected).
"""

from __future__ import annotations

import json
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vfn.errors import first_line
from vfn.runtime.storage import filesystem_and_path, join

ENCODING_KEY = "vfn.encoding"  # Parquet key-value metadata: how the shard's videos were encoded

STORED_FIELDS = [("frames", pa.int32()), ("fps", pa.float32()), ("height", pa.int32()), ("width", pa.int32()),
                 ("codec", pa.string())]
SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("path", pa.string()),
    ("label", pa.int64()),
    ("video", pa.binary()),
    *STORED_FIELDS,
    ("num_bytes", pa.int64()),
    *[("source_" + name, kind) for name, kind in STORED_FIELDS],
    ("source_bytes", pa.int64()),
    ("psnr", pa.float32()),  # dB, mean over the stored frames against the source (null: original bytes)
    ("psnr_min", pa.float32()),  # dB, the worst stored frame
    ("colour_kept", pa.float32()),  # share of the source's frame-to-frame colour change still there
])
META_COLUMNS = [n for n in SCHEMA.names if n != "video"]
SOURCE_COLUMNS = [n for n in SCHEMA.names if n.startswith("source_")]


def list_shards(location: str | list[str]) -> list[str]:
    """Shard files (sorted) of a directory, a single .parquet file, or a list of either.
    URIs keep their scheme so Ray and pyarrow read them the same way on every node."""
    if isinstance(location, (list, tuple)):
        return [s for loc in location for s in list_shards(loc)]
    location = str(location)
    fs, path = filesystem_and_path(location)
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


class ShardReadError(OSError):
    """A shard file that cannot be read as Parquet; the message starts with its path."""


def _parquet_file(path: str) -> pq.ParquetFile:
    """A shard's Parquet file; one that cannot be read (truncated, not Parquet) is named in the error."""
    fs, p = filesystem_and_path(path)
    try:
        return pq.ParquetFile(fs.open_input_file(p))
    except (OSError, pa.ArrowException) as e:
        raise ShardReadError(f"{path}: {first_line(e)}") from None


def count_videos(shards: str | list[str]) -> int:
    """Number of videos, from Parquet footers only (no video bytes are read)."""
    return sum(_parquet_file(s).metadata.num_rows for s in list_shards(shards))


def read_metadata(shards: str | list[str], columns: list[str] | None = None) -> pa.Table:
    """Metadata columns (no video bytes) of all shards, in shard order. Columns that older shards
    lack (source_*) come back as nulls."""
    cols = columns or META_COLUMNS
    tables = [_read_columns(_parquet_file(s), cols) for s in list_shards(shards)]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table().select(cols)


def _read_columns(file: pq.ParquetFile, cols: list[str]) -> pa.Table:
    have = set(file.schema_arrow.names)
    missing = [c for c in cols if c not in have and c in SCHEMA.names]
    table = file.read(columns=[c for c in cols if c not in missing])
    for c in missing:
        table = table.append_column(SCHEMA.field(c), pa.nulls(table.num_rows, SCHEMA.field(c).type))
    return table.select(cols).replace_schema_metadata(None)


def shard_quality(table: pa.Table) -> dict | None:
    """What the re-encodes of a metadata table's videos (`read_metadata`) lost: PSNR mean over
    videos, the worst video's, the worst frame's; colour motion kept, mean and worst video (None
    for shards written before it was measured). None when no video was re-encoded."""
    def present(column: str) -> list[float]:
        return [v for v in table.column(column).to_pylist() if v is not None]

    psnr, colour = present("psnr"), present("colour_kept")
    if not psnr:
        return None
    return {"videos": len(psnr), "psnr_mean": float(np.mean(psnr)), "psnr_worst_video": float(min(psnr)),
            "psnr_min": float(min(present("psnr_min"))),
            "colour_kept_mean": float(np.mean(colour)) if colour else None,
            "colour_kept_worst_video": float(min(colour)) if colour else None}


def read_encodings(shards: str | list[str]) -> list[dict | None]:
    """How each shard's videos were encoded (its footer's `vfn.encoding`; None for shards written
    before it was recorded), from Parquet footers only."""
    out = []
    for s in list_shards(shards):
        value = (_parquet_file(s).metadata.metadata or {}).get(ENCODING_KEY.encode())
        out.append(json.loads(value) if value else None)
    return out
