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
    assert "encoding: re-encoded h264 yuv420p, short side 256, keyframe every 8 frames" in text  # the default
    assert "sources: " in text
    assert "quality (PSNR of the re-encode against the source, 16 videos): mean " in text
    assert "shard-00000.parquet: mean " in text and "colour motion kept" in text


def test_shard_encoding_flags(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--videos", "6", "--classes", "2", "--workers", "1",
                 "--size", "32", "--frames", "8"]) == 0
    shard = ["data", "shard", str(out / "val.csv"), "--root", str(out), "--workers", "1"]
    assert main([*shard, "--out", str(tmp_path / "orig"), "--keep-original"]) == 0
    assert main([*shard, "--out", str(tmp_path / "k4"), "--short-side", "0", "--keyframe-interval", "4", "--crf", "30",
                 "--preset", "medium", "--tune", "none", "--chroma-qp-offset", "-2", "--min-psnr", "20"]) == 0
    assert main(["data", "info", str(tmp_path / "orig")]) == 0
    text = capsys.readouterr().out
    assert "encoding: original bytes (not re-encoded)" in text and "quality" not in text  # nothing was lost
    assert main(["data", "info", str(tmp_path / "k4")]) == 0
    text = capsys.readouterr().out
    assert ("encoding: re-encoded h264 yuv420p, original size, keyframe every 4 frames, crf 30, preset medium, "
            "chroma QP offset -2, PSNR floor 20 dB") in text
    assert "quality (PSNR of the re-encode against the source" in text
    # other settings into the same directory: a one-line error, nothing overwritten
    assert main([*shard, "--out", str(tmp_path / "k4")]) == 2
    assert "different manifest, shard size or encoding" in capsys.readouterr().err
    assert main([*shard, "--out", str(tmp_path / "x"), "--keep-original", "--short-side", "128", "--crf", "18"]) == 2
    assert "--keep-original stores the source bytes: --short-side, --crf do not apply" in capsys.readouterr().err
    assert main([*shard, "--out", str(tmp_path / "x"), "--short-side", "255"]) == 2
    assert "even" in capsys.readouterr().err


def test_bad_manifest_is_a_one_line_error_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a.mp4,1\nb.mp4,x\n")
    assert main(["data", "shard", str(bad), "--root", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vfn data shard: error:") and f"{bad}:2: label 'x' is not an integer" in err
    assert f"{bad}:1: missing video file" in err
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 2
