"""Manifest formats and their error messages (file and line, all problems at once)."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support import LABELS, VIDEOS
from vfn.data.manifest import ManifestError, read_label_names, read_manifest, write_manifest


@pytest.fixture()
def root(tmp_path, shared_dir):
    d = tmp_path / "root"
    (d / "clips").mkdir(parents=True)
    for name in ("one_second.mp4", "short_test.avi", "my clip.mkv"):
        src = VIDEOS / ("flipping_a_pancake.mkv" if name == "my clip.mkv" else name)
        shutil.copy(src, d / "clips" / name)
    return d


def test_csv_space_header_and_parquet_formats(root, tmp_path):
    (tmp_path / "plain.csv").write_text("clips/one_second.mp4,3\nclips/short_test.avi,1\n")
    (tmp_path / "header.csv").write_text("label,path,split\n3,clips/one_second.mp4,train\n1,clips/short_test.avi,x\n")
    (tmp_path / "videomae.txt").write_text("# comment\nclips/one_second.mp4 3\n\nclips/my clip.mkv 1\n")
    pq.write_table(pa.table({"path": ["clips/one_second.mp4", "clips/short_test.avi"], "label": [3, 1]}),
                   tmp_path / "m.parquet")
    for name, expect in [("plain.csv", ["clips/one_second.mp4", "clips/short_test.avi"]),
                         ("header.csv", ["clips/one_second.mp4", "clips/short_test.avi"]),
                         ("videomae.txt", ["clips/one_second.mp4", "clips/my clip.mkv"]),
                         ("m.parquet", ["clips/one_second.mp4", "clips/short_test.avi"])]:
        recs = read_manifest(tmp_path / name, root=root, num_classes=4)
        assert [r.path for r in recs] == expect, name
        assert [r.label for r in recs] == [3, 1], name
        assert all((root / r.path).is_file() and r.full_path == str(root / r.path) for r in recs)
    assert [r.line for r in read_manifest(tmp_path / "videomae.txt", root=root)] == [2, 4]


def test_errors_name_file_and_line_and_are_collected(root, tmp_path):
    m = tmp_path / "bad.csv"
    m.write_text("clips/one_second.mp4,0\nclips/short_test.avi\nclips/one_second.mp4,seven\nclips/short_test.avi,9\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(m, root=root, num_classes=5)
    msg = str(e.value)
    assert "3 problem(s)" in msg
    assert f"{m}:2: unreadable row" in msg
    assert f"{m}:3: label 'seven' is not an integer" in msg
    assert f"{m}:4: label 9 out of range [0, 5)" in msg


def test_missing_videos_are_reported_as_a_list(root, tmp_path):
    m = tmp_path / "missing.csv"
    m.write_text("clips/one_second.mp4,0\nclips/nope1.mp4,1\nclips/short_test.avi,1\nclips/nope2.mp4,0\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(m, root=root)
    msg = str(e.value)
    assert "2 of 4 video files missing" in msg
    assert f"{m}:2: missing video file {root}/clips/nope1.mp4" in msg and f"{m}:4:" in msg
    assert len(read_manifest(m, root=root, check_files=False)) == 4


def test_missing_manifest_and_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("\n# nothing\n")
    with pytest.raises(ManifestError, match="no videos"):
        read_manifest(tmp_path / "empty.csv", check_files=False)


def test_write_manifest_round_trip(tmp_path, root):
    recs = read_manifest(_write(tmp_path / "a.txt", "clips/my clip.mkv 2\nclips/one_second.mp4 0\n"), root=root)
    write_manifest(recs, tmp_path / "b.csv")
    again = read_manifest(tmp_path / "b.csv", root=root)
    assert [(r.path, r.label) for r in again] == [(r.path, r.label) for r in recs]


def _write(path, text):
    path.write_text(text)
    return path


def test_label_name_lists(shared_dir, tmp_path):
    k400 = read_label_names(LABELS / "kinetics_400_labels.csv")
    assert len(k400) == 400 and k400[0] == "abseiling" and k400[6] == "arm wrestling"
    assert len(read_label_names(LABELS / "ssv2_174_labels.csv")) == 174
    assert read_label_names(_write(tmp_path / "plain.txt", "cat\ndog\n")) == ["cat", "dog"]
    with pytest.raises(ManifestError, match="ids are not 0..1"):
        read_label_names(_write(tmp_path / "gap.csv", "id,name\n0,a\n2,b\n"))


def test_row_problems_and_missing_files_are_listed_together_in_line_order(root, tmp_path):
    m = _write(tmp_path / "mixed.csv", "clips/gone.mp4,1\nclips/one_second.mp4,-1\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(m, root=root, num_classes=3)
    lines = str(e.value).splitlines()
    assert "2 problem(s)" in lines[0]
    assert lines[1].strip().startswith(f"{m}:1: missing video file")
    assert lines[2].strip() == f"{m}:2: label -1 out of range [0, 3)"
