"""The `vfn` command line: parsing only (no command runs, no Ray starts)."""

from __future__ import annotations

import re

import pytest

from vfn import cli

# command -> (arguments with the overrides right after the positional, the same with them elsewhere)
OVERRIDES_ANYWHERE = {
    "train": (["exp.yaml", "optim.lr=0.05", "seed=1", "--address", "auto", "--verbose"],
              ["exp.yaml", "--address", "auto", "optim.lr=0.05", "--verbose", "seed=1"]),
    "eval": (["RUN", "eval.num_clips=4", "--data", "SHARDS", "--ema"],
             ["RUN", "--data", "SHARDS", "eval.num_clips=4", "--ema"]),
    "quickstart": (["optim.epochs=4", "--workdir", "w", "--videos", "100"],
                   ["--workdir", "w", "optim.epochs=4", "--videos", "100"]),
    "sweep": (["s.yaml", "optim.epochs=2", "output.root=/r", "--address", "auto"],
              ["s.yaml", "optim.epochs=2", "--address", "auto", "output.root=/r"]),
    "ablate": (["a.yaml", "optim.epochs=2", "--address", "auto"],
               ["a.yaml", "--address", "auto", "optim.epochs=2"]),
}


@pytest.mark.parametrize("command", sorted(OVERRIDES_ANYWHERE))
def test_overrides_are_accepted_after_options(command):
    right_after, elsewhere = OVERRIDES_ANYWHERE[command]
    expected, _ = cli.parse_args([command, *right_after])
    got, _ = cli.parse_args([command, *elsewhere])
    assert got == expected
    assert expected.command == command and expected.overrides == [a for a in right_after if "=" in a]


def test_the_issue_example():
    args, module = cli.parse_args(["eval", "RUN", "--data", "SHARDS", "eval.num_clips=4"])
    assert (args.checkpoint, args.data, args.overrides) == ("RUN", "SHARDS", ["eval.num_clips=4"])
    assert module.__name__ == "vfn.commands.evaluate"


def test_released_weights_are_described_by_an_experiment_file_or_a_model_name():
    args, _ = cli.parse_args(["eval", "k400_t.pth", "data.num_classes=400", "--data", "S", "--config", "k400.yaml",
                              "--model", "videofocalnet_tiny", "eval.num_clips=4"])
    assert (args.checkpoint, args.config, args.model) == ("k400_t.pth", "k400.yaml", "videofocalnet_tiny")
    assert args.overrides == ["data.num_classes=400", "eval.num_clips=4"]


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["nope"], ["eval", "RUN", "--data", "S", "--bogus"]):
        with pytest.raises(SystemExit) as e:
            cli.parse_args(argv)
        assert e.value.code == 2, argv
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_commands_with_subcommands_or_pass_through_options_still_parse(capsys):
    args, _ = cli.parse_args(["data", "info", "shards/", "--labels", "l.csv"])
    assert (args.data_command, args.shards, args.labels) == ("info", "shards/", "l.csv")
    args, bench = cli.parse_args(["bench", "model", "--batch", "2", "--frames", "4"])
    assert (args.benchmark, args.options) == ("model", ["--batch", "2", "--frames", "4"])

    args, bench = cli.parse_args(["bench", "model", "--help"])  # the benchmark's own help
    assert args.options == ["--help"]
    with pytest.raises(SystemExit) as e:
        bench.run(args)
    assert e.value.code == 0 and "usage: vfn bench model" in capsys.readouterr().out


def test_one_spelling_per_flag_and_the_former_ones_still_parse(capsys):
    """`--input-size` and `--batch-size` everywhere; `--size` and `--batch` parse for a release,
    hidden from --help."""
    for flag in ("--input-size", "--size"):
        args, _ = cli.parse_args(["flops", "videofocalnet_tiny", flag, "64"])
        assert args.input_size == 64
    args, _ = cli.parse_args(["flops", "videofocalnet_tiny"])
    assert args.input_size == 224  # the hidden spelling does not blank the default
    args, _ = cli.parse_args(["predict", "clip.mp4", "--size", "112"])
    assert args.input_size == 112
    parser, _ = cli.command_parser("flops")
    assert "--input-size" in parser.format_help() and "--size" not in parser.format_help()
    import argparse

    from vfn.commands.bench import model as bench_model

    parser = argparse.ArgumentParser()
    bench_model.add_arguments(parser)
    assert parser.parse_args(["--batch", "3", "--size", "32"]).batch_size == 3
    assert parser.parse_args(["--batch-size", "2"]).input_size == 224


def test_predict_takes_the_checkpoint_first_as_eval_does(capsys):
    """`vfn predict CHECKPOINT VIDEO`, like `vfn eval CHECKPOINT`; VIDEO alone is the random-weights smoke
    test; the former `VIDEO --checkpoint CHECKPOINT` parses to the same, hidden from --help."""
    from vfn.commands.predict import checkpoint_and_video

    for argv in (["predict", "run_dir", "clip.mp4"], ["predict", "clip.mp4", "--checkpoint", "run_dir"],
                 ["predict", "--checkpoint", "run_dir", "clip.mp4", "--top", "3"]):
        args, _ = cli.parse_args(argv)
        assert checkpoint_and_video(args) == ("run_dir", "clip.mp4"), argv
    assert checkpoint_and_video(cli.parse_args(["predict", "clip.mp4"])[0]) == (None, "clip.mp4")
    assert cli.main(["predict", "a.pth", "clip.mp4", "--checkpoint", "b.pth"]) == 2
    assert capsys.readouterr().err.strip() == "vfn predict: two checkpoints: a.pth and --checkpoint b.pth"
    assert cli.main(["predict"]) == 2
    assert "vfn predict CHECKPOINT VIDEO" in capsys.readouterr().err
    parser, _ = cli.command_parser("predict")
    assert "--checkpoint" not in parser.format_help() and "[CHECKPOINT] VIDEO" in parser.format_help()


@pytest.mark.parametrize("argv", [["data", "synth"], ["data", "shard"], ["eval"], ["bench", "encoding"]])
def test_workers_means_one_thing_in_every_command(argv, capsys):
    """`--workers N`: how many processes the command runs its work on side by side, in every command."""
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"--workers \S+ processes [\w -]+ side by side", help_text), help_text
