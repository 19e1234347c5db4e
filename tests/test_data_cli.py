"""`vfn data synth|shard|check|info` through the real CLI entry point."""

from __future__ import annotations

from vfn.cli import main


def test_synth_shard_check_info(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--videos", "24", "--workers", "1"]) == 0
    assert main(["data", "check", str(out / "train.csv"), "--root", str(out), "--labels", str(out / "labels.csv"),
                 "--probe"]) == 0
    assert main(["data", "shard", str(out / "train.csv"), "--root", str(out), "--out", str(tmp_path / "shards"),
                 "--workers", "1"]) == 0
    assert main(["data", "info", str(tmp_path / "shards"), "--labels", str(out / "labels.csv")]) == 0
    text = capsys.readouterr().out
    assert "probed 16 videos: 0 undecodable" in text
    assert "1 shards" in text and "16 videos" in text and "moving left" in text and "h264 (16)" in text


def test_bad_manifest_is_a_one_line_error_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a.mp4,1\nb.mp4,x\n")
    assert main(["data", "shard", str(bad), "--root", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vfn data shard: error:") and f"{bad}:2: label 'x' is not an integer" in err
    assert f"{bad}:1: missing video file" in err
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 2
