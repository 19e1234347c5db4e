"""Ray Data pipeline end to end on the shared local Ray (2 CPUs): shards -> decoded clips -> Train workers."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support import VIDEOS, created_actors
from vfn.data.ingest import write_shards
from vfn.data.pipeline import (
    TooManyCorruptVideos,
    build_dataset,
    check_corrupt_budget,
    drop_invalid,
)
from vfn.data.shards import SCHEMA
from vfn.data.synth import make_synthetic_dataset
from vfn.data.video import AugmentSpec, ClipSpec

CLIP = ClipSpec(num_frames=8, input_size=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_dir):
    d = tmp_path_factory.mktemp("pipe")
    ds = make_synthetic_dataset(d / "synth", 40, seed=0)
    train = write_shards(ds.train_manifest, str(d / "train"), root=ds.root, max_shard_bytes=40_000,
                         num_workers=1, progress=False)
    # a corrupt video that got into a shard anyway (e.g. written by another tool): met at training time
    corrupt = {"index": 10_000, "path": "corrupted.mp4", "label": 0, "video": (VIDEOS / "corrupted.mp4").read_bytes(),
               "frames": 50, "fps": 10.0, "height": 720, "width": 1280, "codec": "h264", "num_bytes": 1}
    pq.write_table(pa.Table.from_pylist([corrupt], schema=SCHEMA), d / "train" / "shard-99999.parquet")
    # validation manifest with a corrupt file: rejected while sharding, leaving a gap in `index`
    val_manifest = d / "val.csv"
    lines = open(ds.val_manifest).read().splitlines()
    val_manifest.write_text("\n".join([lines[0], f"{VIDEOS / 'corrupted.mp4'},1", *lines[1:]]) + "\n")
    val = write_shards(str(val_manifest), str(d / "val"), root=ds.root, num_workers=1, progress=False)
    assert len(val.rejected) == 1 and len(train.shards) > 1
    labels = sorted(int(x.split(",")[1]) for x in open(ds.train_manifest).read().split())
    val_labels = [int(x.split(",")[1]) for x in lines]
    return d, labels, val_labels


@pytest.mark.ray
@pytest.mark.slow
def test_train_and_val_datasets(ray_session, data):
    d, labels, val_labels = data
    ds = build_dataset(str(d / "train"), "train", CLIP, AugmentSpec(flip_prob=0.0), seed=0)
    epochs = []
    for _ in range(2):
        seen, corrupt, clips = [], 0, {}
        for batch in ds.iter_torch_batches(batch_size=8):
            assert batch["video"].dtype.is_floating_point is False
            assert tuple(batch["video"].shape[1:]) == (8, 3, 32, 32)
            bad = (~batch["valid"]).sum().item()
            if bad:
                assert batch["video"][~batch["valid"]].sum() == 0  # zero clip of the right shape
            good, n_bad = drop_invalid(batch)
            corrupt += n_bad
            seen += good["label"].tolist()
            for v, y in zip(good["video"], good["label"]):
                clips.setdefault(int(y), []).append(v.float().mean().item())
        assert corrupt == 1  # counted, not fatal
        assert sorted(seen) == labels  # every good video once per epoch
        epochs.append((seen, clips))
    # a new order and new augmentation every epoch
    assert epochs[0][0] != epochs[1][0]
    assert sorted(sum(epochs[0][1].values(), [])) != sorted(sum(epochs[1][1].values(), []))
    check_corrupt_budget(1, len(labels) + 1, max_share=0.05)
    with pytest.raises(TooManyCorruptVideos, match="1 of 10 videos"):
        check_corrupt_budget(1, 10, max_share=0.05)

    val = build_dataset(str(d / "val"), "val", ClipSpec(num_frames=8, input_size=32, num_clips=2, num_crops=3))
    rows = {}
    for _ in range(2):  # deterministic views
        for batch in val.iter_batches(batch_size=4, batch_format="numpy"):
            assert batch["video"].shape[1:] == (6, 8, 3, 32, 32) and batch["valid"].all()
            for i, y, v in zip(batch["index"], batch["label"], batch["video"]):
                rows.setdefault(int(i), []).append((int(y), v.astype(np.float32).mean()))
    assert sorted(rows) == list(range(len(val_labels)))  # dense 0..N-1 despite the rejected row
    assert [rows[i][0][0] for i in range(len(val_labels))] == val_labels
    assert all(a == b for a, b in rows.values())


@pytest.mark.ray
def test_split_between_two_train_workers(ray_session, data):
    """What Ray Train does for `datasets={"train": ds}`: a streaming split, one iterator per worker,
    consumed concurrently (`get_dataset_shard(...).iter_torch_batches()` in each worker)."""
    d, labels, _ = data
    ds = build_dataset(str(d / "train"), "train", CLIP, AugmentSpec(flip_prob=0.0))
    shards = ds.streaming_split(2, equal=True)
    shares = [None, None]

    def consume(rank):
        seen, corrupt = [], 0
        for batch in shards[rank].iter_torch_batches(batch_size=4):
            good, n_bad = drop_invalid(batch)
            seen += good["label"].tolist()
            corrupt += n_bad
        shares[rank] = (seen, corrupt)

    threads = [threading.Thread(target=consume, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(s is not None for s in shares), "a split iterator did not finish"
    (a, bad_a), (b, bad_b) = shares
    assert len(a) + bad_a == len(b) + bad_b  # equal shares
    assert 0 < len(a) < len(labels) and 0 < len(b) < len(labels)
    # together every video once (an equal split may drop one row of the 33)
    assert not (Counter(a) + Counter(b)) - Counter(labels)
    assert len(a) + len(b) + bad_a + bad_b >= len(labels)


@pytest.mark.ray
def test_on_device_rows_are_windows_with_parameters(ray_session, data):
    """`augment_on_device`: windows that hold the crop box plus the drawn parameters; a corrupt video
    gives a blank window whose parameters still resize cleanly on the device."""
    import torch

    from vfn.data.device_augment import DeviceAugment
    from vfn.data.video import PARAMS_SIZE, train_window_shape

    d, labels, _ = data
    shape = train_window_shape(CLIP, AugmentSpec())
    ds = build_dataset(str(d / "train"), "train", CLIP, AugmentSpec(), seed=0, augment_on_device=True)
    seen, corrupt = 0, 0
    for batch in ds.iter_torch_batches(batch_size=8):
        assert tuple(batch["video"].shape[1:]) == (8, *shape, 3) and batch["video"].dtype == torch.uint8
        assert tuple(batch["aug_params"].shape[1:]) == (PARAMS_SIZE,)
        clips = DeviceAugment(CLIP.input_size)(batch["video"], batch["aug_params"])
        assert tuple(clips.shape[1:]) == (8, 3, 32, 32) and torch.isfinite(clips).all()
        assert clips[~batch["valid"]].sum() == 0
        corrupt += int((~batch["valid"]).sum())
        seen += len(batch["valid"])
    assert corrupt == 1 and seen == len(labels) + 1


@pytest.mark.ray
def test_a_decode_over_the_time_limit_counts_as_corrupt_and_the_epoch_goes_on(ray_session, tmp_path):
    """Decode tasks run every video under the decode guard: with an absurdly short limit every decode
    is cut off (as a hung decoder would be) and arrives as a counted corrupt row, not a stalled epoch.
    Real Kinetics clips as they are (~100 ms to decode 8 frames): a tiny synthetic clip decodes in
    ~2 ms, which a loaded machine can fit between the guard's request and its poll, and pass."""
    from vfn.data.guard import DecodeTimeout
    from vfn.data.manifest import VideoRecord, write_manifest
    from vfn.data.pipeline import DEFAULT_DECODE_TIMEOUT_S

    assert DEFAULT_DECODE_TIMEOUT_S > 0 and issubclass(DecodeTimeout, Exception)
    clips = [VideoRecord(str(VIDEOS / name), i, i) for i, name in enumerate(("kinetics_yoga.mp4",
                                                                            "kinetics_arm_wrestling.mp4"))]
    write_manifest(clips, tmp_path / "train.csv")
    write_shards(str(tmp_path / "train.csv"), str(tmp_path / "train"), encoding=None, num_workers=1, progress=False)
    for timeout_s, valid in ((1e-4, False), (DEFAULT_DECODE_TIMEOUT_S, True)):
        ds = build_dataset(str(tmp_path / "train"), "train", CLIP, AugmentSpec(), seed=0, decode_timeout_s=timeout_s,
                           num_cpus=0.5)
        rows = ds.take_all()
        assert rows and all(bool(r["valid"]) is valid for r in rows), (timeout_s, [r["valid"] for r in rows])


@pytest.mark.ray
def test_each_epoch_lists_its_shards_on_one_footer_reader(ray_session, data):
    """Ray's Parquet reader would start 32 FooterReader actors (processes) per epoch of each dataset;
    a few shards need one (`pipeline.footer_readers`)."""
    d, _, _ = data
    before = created_actors("FooterReader")
    ds = build_dataset(str(d / "train"), "train", CLIP, AugmentSpec(flip_prob=0.0), seed=0)
    for _ in range(2):
        assert sum(len(b["label"]) for b in ds.iter_batches(batch_size=8)) > 0
    assert created_actors("FooterReader") - before == 2
