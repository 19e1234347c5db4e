"""`vfn data prepare`: small annotation files in each dataset's real format -> manifests whose label
ids are the published ones (the order of ../shared/labels/, which the package ships), missing videos
listed with their reason, wrong names and wrong orders refused in one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.support import LABELS
from vfn.data.datasets import READERS, class_names, prepare
from vfn.data.manifest import read_label_names, read_manifest
from vfn.errors import ConfigError

SHIPPED = {"kinetics400": "kinetics_400_labels.csv", "kinetics600": "kinetics_600_labels.csv",
           "ssv2": "ssv2_174_labels.csv", "diving48": "diving_48_labels.csv",
           "activitynet": "activitynet_200_labels.csv"}


def touch(root: Path, *paths: str) -> None:
    for rel in paths:  # prepare finds videos by name; their bytes are `vfn data shard`'s business
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def manifest(out: Path, split: str) -> list[tuple[str, int]]:
    with open(out / f"{split}.csv", newline="") as f:
        return sorted((path, int(label)) for path, label in csv.reader(f))


def missing(out: Path) -> list[dict]:
    with open(out / "missing.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("dataset", sorted(READERS))
def test_the_shipped_class_lists_are_the_published_ones(dataset):
    assert class_names(dataset) == read_label_names(LABELS / SHIPPED[dataset])


def test_kinetics_csvs_in_every_usual_layout(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,aaa,10,20,train,0\n"                # per-class folder, <id>_<start>_<end>
        "zumba,bbb,0,10,train,0\n"                     # flat, id only, mkv
        '"passing American football (in game)",ccc,3,13,train,0\n'  # a name with spaces and parentheses
        "air drumming,ddd,5,15,train,0\n")             # no video
    (ann / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                      "air drumming,eee,1,11,validate\n")  # per-split, class with underscores
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\nfff,0,10,test\n")  # no labels
    videos = tmp_path / "videos"
    touch(videos, "abseiling/aaa_000010_000020.mp4", "bbb.mkv",
          "train/passing_American_football_(in_game)/ccc_000003_000013.webm", "val/air_drumming/eee_000001_000011.mp4")
    names = class_names("kinetics400")
    report = prepare("kinetics400", [ann / "train.csv", ann / "validate.csv", ann / "test.csv"], videos, tmp_path / "m")
    out = tmp_path / "m"
    assert manifest(out, "train") == sorted([
        ("abseiling/aaa_000010_000020.mp4", 0), ("bbb.mkv", 399),
        ("train/passing_American_football_(in_game)/ccc_000003_000013.webm",
         names.index("passing American football (in game)"))])
    assert manifest(out, "val") == [("val/air_drumming/eee_000001_000011.mp4", 1)]
    assert [(m["split"], m["video"], m["label"]) for m in missing(out)] == [("train", "ddd", "air drumming")]
    assert "no video named ddd_000005_000015 or ddd" in missing(out)[0]["reason"]
    assert read_label_names(out / "labels.csv") == names
    assert report.per_split == {"train": 3, "val": 1} and report.missing == 1 and report.unlabelled == 1
    # the manifests are ones `vfn data shard` and `vfn data check` read as they are
    assert len(read_manifest(out / "train.csv", root=videos, num_classes=400)) == 3


def test_kinetics600_numbers_by_its_own_list(tmp_path):
    (tmp_path / "k600_train.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                             "acting in play,aaa,0,10,train\n")
    touch(tmp_path / "v", "aaa_000000_000010.mp4")
    prepare("kinetics600", [tmp_path / "k600_train.csv"], tmp_path / "v", tmp_path / "m")
    assert manifest(tmp_path / "m", "train") == [("aaa_000000_000010.mp4", 1)]  # 1 in K600, not among K400's


def test_a_class_name_not_in_the_list_is_one_line_with_the_nearest(tmp_path):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseilling,aaa,0,10,train\n")
    touch(tmp_path / "v", "aaa.mp4")
    with pytest.raises(ConfigError) as e:
        prepare("kinetics400", [tmp_path / "train.csv"], tmp_path / "v", tmp_path / "m")
    assert str(e.value).startswith(f"{tmp_path / 'train.csv'}:2: class 'abseilling' is not among the 400 "
                                   "published kinetics400 classes; nearest: 'abseiling', ")
    assert not (tmp_path / "m").exists()  # nothing half-written


def test_ssv2_json_templates_to_published_ids(tmp_path):
    names = class_names("ssv2")
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text(json.dumps({names[0]: "0", names[173]: "173"}))
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps([
        {"id": "78687", "label": "approaching a cup with your camera",
         "template": "Approaching [something] with your camera", "placeholders": ["a cup"]},
        {"id": "42326", "label": "wiping dust off of a table", "template": "Wiping [something] off of [something]",
         "placeholders": ["dust", "a table"]}]))
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps([
        {"id": "1", "label": "x", "template": "Approaching [something] with your camera", "placeholders": ["x"]}]))
    (tmp_path / "something-something-v2-test.json").write_text(json.dumps([{"id": "5"}]))
    touch(tmp_path / "20bn", "78687.webm", "42326.webm", "1.webm", "5.webm")
    files = [tmp_path / f"something-something-v2-{s}.json" for s in ("train", "validation", "test")]
    report = prepare("ssv2", files, tmp_path / "20bn", tmp_path / "m", labels_file=labels)
    assert manifest(tmp_path / "m", "train") == [("42326.webm", 173), ("78687.webm", 0)]
    assert manifest(tmp_path / "m", "val") == [("1.webm", 0)]
    assert report.unlabelled == 1
    labels.write_text(json.dumps({names[0]: "5"}))  # a labels file numbering the classes its own way
    with pytest.raises(ConfigError, match="has id 5 here but 0 in the published list"):
        prepare("ssv2", files, tmp_path / "20bn", tmp_path / "m", labels_file=labels)


def test_diving48_integer_labels_checked_against_the_vocabulary(tmp_path):
    names = class_names("diving48")
    vocab = tmp_path / "Diving48_vocab.json"
    vocab.write_text(json.dumps([name.split("_") for name in names]))
    (tmp_path / "Diving48_V2_train.json").write_text(json.dumps([
        {"vid_name": "-mmq0PT-u8k_00155", "label": 47, "start_frame": 0, "end_frame": 60},
        {"vid_name": "-mmq0PT-u8k_00156", "label": 0, "start_frame": 0, "end_frame": 50}]))
    touch(tmp_path / "rgb", "-mmq0PT-u8k_00155.mp4")
    report = prepare("diving48", [tmp_path / "Diving48_V2_train.json"], tmp_path / "rgb", tmp_path / "m",
                     labels_file=vocab)
    assert manifest(tmp_path / "m", "train") == [("-mmq0PT-u8k_00155.mp4", 47)]
    assert report.missing == 1 and missing(tmp_path / "m")[0]["video"] == "-mmq0PT-u8k_00156"
    vocab.write_text(json.dumps([name.split("_") for name in reversed(names)]))
    with pytest.raises(ConfigError, match=r"class 0 is 'Reverse_Dive_NoTwis_TUCK' here but 'Back_15som_05Twis_FREE'"):
        prepare("diving48", [tmp_path / "Diving48_V2_train.json"], tmp_path / "rgb", tmp_path / "m", labels_file=vocab)
    (tmp_path / "Diving48_V2_test.json").write_text(json.dumps([{"vid_name": "a", "label": 48}]))
    with pytest.raises(ConfigError, match=r"label 48 is not a class id 0..47"):
        prepare("diving48", [tmp_path / "Diving48_V2_test.json"], tmp_path / "rgb", tmp_path / "m")


def test_activitynet_videos_take_the_class_of_most_of_their_segments(tmp_path):
    (tmp_path / "activity_net.v1-3.min.json").write_text(json.dumps({"version": "VERSION 1.3", "database": {
        "sJFgo9H6zNo": {"subset": "training", "duration": 140.0, "annotations": [
            {"segment": [0.0, 10.0], "label": "Arm wrestling"},
            {"segment": [20.0, 100.0], "label": "Playing badminton"}]},
        "V1zhqaGFY2A": {"subset": "validation",
                        "annotations": [{"segment": [1.0, 9.0], "label": "Applying sunscreen"}]},
        "JDg--pjY5gg": {"subset": "testing", "annotations": []}}}))
    touch(tmp_path / "v", "v_sJFgo9H6zNo.mp4", "V1zhqaGFY2A.mkv", "v_JDg--pjY5gg.mp4")
    report = prepare("activitynet", [tmp_path / "activity_net.v1-3.min.json"], tmp_path / "v", tmp_path / "m")
    assert manifest(tmp_path / "m", "train") == [("v_sJFgo9H6zNo.mp4", 199)]
    assert manifest(tmp_path / "m", "val") == [("V1zhqaGFY2A.mkv", 0)]
    assert report.unlabelled == 1


def test_vfn_data_prepare_on_the_command_line(tmp_path, capsys):
    from vfn.cli import main

    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaa,0,10,train\n")
    touch(tmp_path / "v", "aaa.mp4")
    args = ["data", "prepare", "kinetics400", str(tmp_path / "train.csv"), "--root", str(tmp_path / "v"),
            "--out", str(tmp_path / "m")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"kinetics400: train 1 videos -> {tmp_path / 'm'}/<split>.csv; 0 annotations without")
    assert f"next: vfn data shard {tmp_path / 'm' / 'train.csv'} --root" in out and "--num-classes 400" in out
    assert main(["data", "prepare", "kinetics400", str(tmp_path / "nope.csv"), "--root", "v", "--out", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vfn data prepare: error: {tmp_path / 'nope.csv'}: no such annotation file"


def test_every_dataset_has_a_recipe_that_reads_what_prepare_writes_under_data():
    """`vfn data prepare D ... --out data/D` plus shards in data/D/shards/{train,val}: the paper's recipe
    for D then runs without overrides, with as many classes as D's published list."""
    import yaml

    from tests.support import REPO

    recipes = {}
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
        if str(data.get("labels", "")).startswith("data/"):
            recipes.setdefault(data["labels"].split("/")[1], []).append((path.name, data))
    assert sorted(recipes) == sorted(READERS)
    for dataset, found in recipes.items():
        for name, data in found:
            assert data["labels"] == f"data/{dataset}/labels.csv", name
            assert (data["train"], data["val"]) == (f"data/{dataset}/shards/train", f"data/{dataset}/shards/val"), name
            assert data["num_classes"] == len(class_names(dataset)), name
