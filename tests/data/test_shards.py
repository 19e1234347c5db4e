"""Parquet video shards: bytes round-trip, probing and rejects, bounded size, resumable writes,
re-encoding while packing, packing across a Ray cluster."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support import VIDEOS
from vfn.data.ingest import write_shards
from vfn.data.shards import (
    SCHEMA,
    SOURCE_COLUMNS,
    count_videos,
    list_shards,
    read_encodings,
    read_metadata,
    shard_quality,
)
from vfn.data.transcode import Encoding

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
                          progress=False, encoding=None)
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
    assert arm["source_frames"] == 280 and arm["source_bytes"] == arm["num_bytes"] == len(arm["video"])
    meta = read_metadata(str(out))
    assert "video" not in meta.column_names and meta.num_rows == 6
    assert read_encodings(str(out)) == [{"transcoded": False}] * len(shards)
    # a file:// URI reads the same shards (any pyarrow filesystem URI works the same way)
    assert count_videos(f"file://{out}") == 6 and len(list_shards(f"file://{out}")) == len(shards)


def test_rerun_skips_finished_shards_and_rejects_other_manifests(manifest, tmp_path):
    out = tmp_path / "shards"
    first = write_shards(str(manifest), str(out), root=str(VIDEOS), max_shard_bytes=700_000, num_workers=1,
                         progress=False, encoding=None)
    victim = out / "shard-00001.parquet"
    victim.unlink()  # as if the run died while writing it
    (out / ".shard-00001.parquet.tmp").write_bytes(b"partial")
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    again = write_shards(str(manifest), str(out), root=str(VIDEOS), max_shard_bytes=700_000, num_workers=1,
                         progress=False, encoding=None)
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


def small_manifest(tmp_path, names=("one_second.mp4", "rotated_90.mov", "short_test.avi", "corrupted.mp4")):
    m = tmp_path / "small.csv"
    m.write_text("".join(f"{name},{i}\n" for i, name in enumerate(names)))
    return m


def test_default_packing_re_encodes_and_keeps_the_source_metadata(tmp_path, shared_dir):
    out = tmp_path / "seekable"
    report = write_shards(str(small_manifest(tmp_path)), str(out), root=str(VIDEOS), num_workers=2, progress=False)
    assert report.videos == 3 and [r[0] for r in report.rejected] == ["corrupted.mp4"]
    rows = {r["path"]: r for r in pq.read_table(list_shards(str(out))[0]).to_pylist()}
    rotated, avi = rows["rotated_90.mov"], rows["short_test.avi"]
    # stored: upright, short side 256, every frame kept, H.264; source_*: the original as it was
    assert (rotated["frames"], rotated["height"], rotated["width"], rotated["codec"]) == (3, 454, 256, "h264")
    assert (rotated["source_frames"], rotated["source_height"], rotated["source_width"]) == (3, 568, 320)
    assert (avi["frames"], avi["height"], avi["width"], avi["codec"], avi["source_codec"]) == (164, 240, 320,
                                                                                             "h264", "mpeg4")
    assert avi["num_bytes"] == len(avi["video"]) != avi["source_bytes"] == (VIDEOS / "short_test.avi").stat().st_size
    assert abs(avi["fps"] - 25) < 0.1 and abs(avi["source_fps"] - 25) < 0.1
    for row in rows.values():  # what the re-encode lost, measured against the source
        assert 30 < row["psnr_min"] <= row["psnr"] < 60 and 0.1 < row["colour_kept"] <= 1.5, row["path"]
    quality = shard_quality(read_metadata(str(out)))
    assert quality["videos"] == 3
    assert quality["psnr_worst_video"] == pytest.approx(min(r["psnr"] for r in rows.values()))
    (encoding,) = read_encodings(str(out))
    assert encoding["transcoded"] and encoding["short_side"] == 256 and encoding["keyframe_interval"] == 8
    assert encoding["codec"] == "h264" and encoding["pix_fmt"] == "yuv420p" and encoding["pyav"] and encoding["ffmpeg"]
    plan = json.loads((out / "_plan.json").read_text())
    assert plan["encoding"]["short_side"] == 256
    # the same settings resume; other settings in the same directory are a clear error
    again = write_shards(str(small_manifest(tmp_path)), str(out), root=str(VIDEOS), progress=False)
    assert again.skipped == 1 and again.written == 0 and len(again.rejected) == 1
    for other in (Encoding(short_side=0), Encoding(keyframe_interval=16), None):
        with pytest.raises(ValueError, match="different manifest, shard size or encoding"):
            write_shards(str(small_manifest(tmp_path)), str(out), root=str(VIDEOS), progress=False, encoding=other)


def test_a_re_encode_below_the_psnr_floor_is_rejected_with_its_figure(tmp_path, shared_dir):
    manifest = small_manifest(tmp_path, names=("one_second.mp4", "short_test.avi"))
    report = write_shards(str(manifest), str(tmp_path / "strict"), root=str(VIDEOS), num_workers=1, progress=False,
                          encoding=Encoding(crf=40, min_psnr=36))
    reasons = {path: reason for path, _, _, reason in report.rejected}
    assert report.videos + len(reasons) == 2 and reasons, "crf 40 keeps these clips above 36 dB?"
    assert all("re-encode too lossy: PSNR" in r and "below the floor of 36 dB" in r for r in reasons.values())
    original = write_shards(str(manifest), str(tmp_path / "orig"), root=str(VIDEOS), num_workers=1, progress=False,
                            encoding=None)
    assert read_metadata(original.out).column("psnr").to_pylist() == [None, None]  # nothing was re-encoded
    assert shard_quality(read_metadata(original.out)) is None


def test_metadata_of_shards_without_source_columns(tmp_path):
    """Shards written before source_* columns existed still read: those columns come back as nulls."""
    old_schema = pa.schema([f for f in SCHEMA if f.name not in SOURCE_COLUMNS])
    row = {"index": 0, "path": "a.mp4", "label": 1, "video": b"x", "frames": 8, "fps": 10.0, "height": 32,
           "width": 32, "codec": "h264", "num_bytes": 1}
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), tmp_path / "shard-00000.parquet")
    meta = read_metadata(str(tmp_path))
    assert meta.num_rows == 1 and meta.column("source_frames").to_pylist() == [None]
    assert meta.column("frames").to_pylist() == [8] and read_encodings(str(tmp_path)) == [None]
    assert read_metadata(str(tmp_path), ["index", "path", "label"]).column_names == ["index", "path", "label"]


CLUSTER_SCRIPT = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from vfn.data.ingest import write_shards

manifest, root, out, shard_bytes = sys.argv[1:5]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
try:
    report = write_shards(manifest, out, root=root, max_shard_bytes=int(shard_bytes), progress=False,
                          address=cluster.address)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
finally:
    ray.shutdown()
    cluster.shutdown()
print("RESULT " + json.dumps({"task_nodes": report.nodes, "cluster_nodes": nodes, "written": report.written,
                              "rejected": [r[0] for r in report.rejected]}))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_packing_across_a_two_node_ray_cluster_matches_a_local_run(tmp_path, shared_dir):
    """One Ray task per shard on a 2-node cluster (in its own process: it must not meet the test
    session's Ray) writes the same rows as the local process pool."""
    manifest = small_manifest(tmp_path)
    shard_bytes = 160_000  # 4 small videos: at least 2 shards, so both nodes get one
    proc = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, str(manifest), str(VIDEOS), str(tmp_path / "ray"),
                           str(shard_bytes)], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    local = write_shards(str(manifest), str(tmp_path / "local"), root=str(VIDEOS), max_shard_bytes=shard_bytes,
                         num_workers=1, progress=False)
    assert local.nodes == [] and result["written"] == len(local.shards) >= 2
    assert sorted(result["task_nodes"]) == sorted(result["cluster_nodes"])  # both nodes wrote shards
    assert result["rejected"] == [r[0] for r in local.rejected] == ["corrupted.mp4"]
    columns = ["index", "path", "label", "frames", "height", "width"]
    assert read_metadata(str(tmp_path / "ray"), columns).to_pylist() == \
        read_metadata(str(tmp_path / "local"), columns).to_pylist()


def test_a_probe_over_its_time_limit_rejects_the_video(tmp_path, shared_dir, monkeypatch):
    """Source probes run under the decode guard (decord can hang on a bad container, #373): a probe
    that overruns the limit (here an absurdly short one) rejects the video with the reason."""
    from vfn.data import ingest

    monkeypatch.setattr(ingest, "PROBE_TIMEOUT_S", 1e-3)
    m = tmp_path / "one.csv"
    m.write_text("kinetics_yoga.mp4,0\n")
    report = write_shards(str(m), str(tmp_path / "out"), root=str(VIDEOS), num_workers=1, progress=False,
                          encoding=None)
    assert report.videos == 0 and len(report.rejected) == 1
    assert "limit" in report.rejected[0][3], report.rejected


def test_a_truncated_shard_is_named_before_ray_starts(tiny_shards, tmp_path):
    import re
    import shutil

    from vfn.config.load import load_config
    from vfn.errors import ConfigError
    from vfn.training.driver import make_plan

    shutil.copytree(tiny_shards / "train", tmp_path / "train")
    victim = sorted((tmp_path / "train").glob("*.parquet"))[-1]
    victim.write_bytes(victim.read_bytes()[:1000])  # a copy cut short
    cfg = load_config(None, [f"data.train={tmp_path / 'train'}", "data.num_classes=4"])
    with pytest.raises(ConfigError, match=rf"^data.train: cannot read shards at .* \({re.escape(str(victim))}: "):
        make_plan(cfg)
