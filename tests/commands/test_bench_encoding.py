"""The default encoding keeps what a temporal model learns: trained the same way from shards of
the original bytes and from default re-encoded shards of an order-sensitive synthetic set, through
the decode functions `vfn train` calls, the held-out top-1 agrees (`vfn bench encoding` in
miniature). Fails if the default encoding, or the path re-encoded shards take, loses the motion cue."""

from __future__ import annotations

import pytest

from vfn.commands.bench import encoding as bench_encoding
from vfn.data.transcode import Encoding, encoding_label, parse_encoding


def test_encodings_are_parsed_and_labelled():
    assert parse_encoding("") == Encoding()
    assert parse_encoding("crf=18,tune=none,min_psnr=25") == Encoding(crf=18, tune=None, min_psnr=25.0)
    assert encoding_label(Encoding(crf=18, tune=None)) == "crf=18,tune=None"
    assert encoding_label(Encoding()) == "default"
    with pytest.raises(ValueError, match="KEY one of short_side"):
        parse_encoding("crff=18")
    with pytest.raises(ValueError, match="crf must be a number"):
        parse_encoding("crf=high")


def test_within_one_std_compares_the_gap_with_the_larger_spread():
    runs = [{"label": label, "seed": s, "top1": v} for label, values in
            (("original", [0.9, 1.0, 0.8]), ("default", [0.8, 0.9, 0.7]), ("crf=40", [0.3, 0.3, 0.3]))
            for s, v in enumerate(values)]
    summary = bench_encoding.summarise(runs, ["original", "default", "crf=40"])
    assert summary["original"]["std"] == pytest.approx(0.1)
    assert summary["default"]["gap"] == pytest.approx(-0.1) and summary["default"]["within_one_std"]
    assert not summary["crf=40"]["within_one_std"]


@pytest.mark.slow
def test_default_shards_train_as_well_as_the_original_bytes(tmp_path, capsys):
    """The `simple` style (the quickstart's), 300 steps, seed 0, the two runs in two processes: both
    reach the same top-1 (100% here); a re-encode that shuffled each video's frames reached 44%."""
    args = bench_encoding_args(tmp_path, "--style", "simple", "--videos", "560", "--seeds", "0")
    assert bench_encoding.run(args) == 0
    import json

    summary = json.loads((tmp_path / "out.json").read_text())["summary"]
    assert summary["original"]["mean"] > 0.9, summary
    assert summary["default"]["mean"] > summary["original"]["mean"] - 0.05, summary
    assert summary["default"]["quality"]["psnr_mean"] > 35, summary


def bench_encoding_args(tmp_path, *argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    bench_encoding.add_arguments(parser)
    return parser.parse_args([*argv, "--workdir", str(tmp_path / "work"), "--json", str(tmp_path / "out.json")])
