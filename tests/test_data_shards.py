"""Parquet video shards: bytes round-trip, probing and rejects, bounded size, resumable writes."""

from __future__ import annotations

import csv

import pyarrow.parquet as pq
import pytest

from conftest import VIDEOS
from vfn.platform.data.shards import count_videos, list_shards, read_metadata, write_shards

ALL = ["kinetics_arm_wrestling.mp4", "kinetics_yoga.mp4", "flipping_a_pancake.mkv", "short_test.avi",
       "one_second.mp4", "rotated_90.mov", "corrupted.mp4"]


@pytest.fixture()
def manifest(tmp_path, shared_dir):
    m = tmp_path / "all.csv"
    m.write_text("".join(f"{name},{i}\n" for i, name in enumerate(ALL)))
    return m


def test_round_trip_metadata_and_rejects(manifest, tmp_path):
    out = tmp_path / "shards"
    report = write_shards(str(manifest), str(out), root=str(VIDEOS), max_shard_bytes=700_000, num_workers=2,
                          progress=False)
    assert report.videos == 6 and len(report.rejected) == 1
    assert report.rejected[0][0] == "corrupted.mp4" and "decode" in report.rejected[0][3]
    with open(out / "rejected.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["corrupted.mp4"] and rows[0]["line"] == "7"
    shards = list_shards(str(out))
    assert len(shards) == len(report.shards) > 1  # bounded size: several shards
    for s in shards:  # no shard over the bound unless it holds one larger video
        t = pq.read_table(s)
        col = pq.ParquetFile(s).metadata.row_group(0).column(t.column_names.index("video"))
        assert "DICTIONARY" not in str(col.encodings)  # stored as is: repeated files are not deduplicated
        assert t.num_rows == 1 or sum(t.column("num_bytes").to_pylist()) <= 700_000
    assert count_videos(str(out)) == 6
    rows = {}
    for s in shards:
        for r in pq.read_table(s).to_pylist():
            rows[r["path"]] = r
    for i, name in enumerate(ALL[:-1]):
        assert rows[name]["video"] == (VIDEOS / name).read_bytes()  # bytes in = bytes out
        assert rows[name]["label"] == i and rows[name]["index"] == i
    arm = rows["kinetics_arm_wrestling.mp4"]
    assert (arm["frames"], arm["height"], arm["width"], arm["codec"]) == (280, 256, 340, "h264")
    assert abs(arm["fps"] - 28) < 0.5
    assert (rows["rotated_90.mov"]["frames"], rows["rotated_90.mov"]["height"]) == (3, 568)
    meta = read_metadata(str(out))
    assert "video" not in meta.column_names and meta.num_rows == 6
    # a file:// URI reads the same shards (any pyarrow filesystem URI works the same way)
    assert count_videos(f"file://{out}") == 6 and len(list_shards(f"file://{out}")) == len(shards)


def test_rerun_skips_finished_shards_and_rejects_other_manifests(manifest, tmp_path):
    out = tmp_path / "shards"
    first = write_shards(str(manifest), str(out), root=str(VIDEOS), max_shard_bytes=700_000, num_workers=1,
                         progress=False)
    victim = out / "shard-00001.parquet"
    victim.unlink()  # as if the run died while writing it
    (out / ".shard-00001.parquet.tmp").write_bytes(b"partial")
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    again = write_shards(str(manifest), str(out), root=str(VIDEOS), max_shard_bytes=700_000, num_workers=1,
                         progress=False)
    assert again.written == 1 and again.skipped == len(first.shards) - 1
    assert again.videos == first.videos and len(again.rejected) == 1
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in mtimes.items())
    assert victim.exists() and count_videos(str(out)) == 6
    other = tmp_path / "other.csv"
    other.write_text("one_second.mp4,0\n")
    with pytest.raises(ValueError, match="different manifest"):
        write_shards(str(other), str(out), root=str(VIDEOS), progress=False)


def test_list_shards_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such shard"):
        list_shards(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="vfn data shard"):
        list_shards(str(tmp_path))


def test_fsspec_filesystem_uri(shared_dir, tmp_path):
    """Any fsspec protocol works like s3:// or gs:// (memory:// here: no network in tests)."""
    m = tmp_path / "m.csv"
    m.write_text("one_second.mp4,2\nrotated_90.mov,1\n")
    uri = f"memory://vfn-test-{tmp_path.name}/shards"
    report = write_shards(str(m), uri, root=str(VIDEOS), num_workers=1, progress=False)
    assert report.shards == [f"{uri}/shard-00000.parquet"]
    assert list_shards(uri) == report.shards and count_videos(uri) == 2
    assert sorted(read_metadata(uri).column("path").to_pylist()) == ["one_second.mp4", "rotated_90.mov"]
    again = write_shards(str(m), uri, root=str(VIDEOS), num_workers=1, progress=False)
    assert again.skipped == 1 and again.written == 0


def test_class_sorted_manifest_is_mixed_across_shards(tmp_path, shared_dir):
    """Manifests sorted by class must not give one-class shards (file shuffling would be useless)."""
    m = tmp_path / "sorted.csv"
    m.write_text("".join(f"rotated_90.mov,{i // 10}\n" for i in range(20)))  # 10 x class 0, then 10 x class 1
    out = tmp_path / "mixed"
    write_shards(str(m), str(out), root=str(VIDEOS), max_shard_bytes=5 * 15_442, num_workers=1, progress=False)
    shards = list_shards(str(out))
    assert len(shards) == 4
    assert sum(len(set(pq.read_table(s, columns=["label"]).column("label").to_pylist())) == 2 for s in shards) >= 3
    kept = tmp_path / "kept"
    write_shards(str(m), str(kept), root=str(VIDEOS), max_shard_bytes=5 * 15_442, num_workers=1,
                 shuffle_seed=None, progress=False)
    assert [pq.read_table(s, columns=["index"]).column("index").to_pylist() for s in list_shards(str(kept))][0] \
        == [0, 1, 2, 3, 4]
