"""The synthetic temporal-order dataset: real MP4s, balanced pairs that are exact time reverses."""

from __future__ import annotations

import numpy as np
import pytest

from vfn.data.clips import decode_test_views
from vfn.data.manifest import read_label_names, read_manifest
from vfn.data.synth import (
    IMAGE_CLASSES,
    SHAPES,
    class_names,
    encode_mp4,
    make_synthetic_dataset,
    render_image,
    render_video,
)
from vfn.data.video import ClipSpec, open_video, read_frames


@pytest.mark.parametrize("style", ["cluttered", "simple"])
def test_pairs_are_exact_time_reverses(style):
    # the same appearance draw played backwards is the partner class: order is the only difference
    for label in range(0, 10, 2):
        a = render_video(label, np.random.default_rng([5, label]), style=style)
        b = render_video(label + 1, np.random.default_rng([5, label]), style=style)
        assert np.array_equal(a[::-1], b), class_names(10)[label]
        assert not np.array_equal(a, b)  # and there is motion to see
        assert np.abs(a[0].astype(int) - a[-1].astype(int)).mean() > 0.5


def test_pair_members_have_the_same_frame_statistics():
    # an order-blind statistic (mean over time and space) has the same distribution in both members
    means = {0: [], 1: []}
    for s in range(40):
        for label in (0, 1):
            means[label].append(render_video(label, np.random.default_rng([s, 99])).mean())
    assert np.allclose(sorted(means[0]), sorted(means[1]))


def test_styles_differ_in_clutter_and_motion():
    def background_colours(frames):
        still = (frames == frames[:1]).all(axis=(0, 3))
        return len(np.unique(frames[0][still], axis=0))

    rng = lambda: np.random.default_rng(7)  # noqa: E731
    simple, cluttered = render_video(0, rng(), style="simple"), render_video(0, rng(), style="cluttered")
    assert background_colours(simple) == 1  # plain background, no distractors
    assert background_colours(cluttered) > 10  # gradient
    # simple: a bright object on a dark background, so the contrast has one sign in every clip
    for seed in range(8):
        clip = render_video(seed % 4, np.random.default_rng(seed), style="simple")
        still = (clip == clip[:1]).all(axis=(0, 3))
        assert (clip[0][still] < 90).all() and (clip.reshape(-1, 3).max(0) >= 170).all(), seed
    # simple: motion over the whole clip, so every pair of consecutive frames differs
    assert all(not np.array_equal(simple[i], simple[i + 1]) for i in range(len(simple) - 1))
    with pytest.raises(ValueError, match="unknown synthetic style"):
        render_video(0, rng(), style="busy")


def test_image_labels_name_the_shape_and_the_quadrant_of_the_object():
    """`render_image` (the frames `vfn pretrain` trains on): in the `simple` look (one bright object
    on a plain dark background) the object's pixels sit in the labelled quadrant, and every class
    occurs."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        frame, label = render_image(rng, 32, "simple")
        ys, xs = np.nonzero(frame.max(axis=2) >= 170)
        row, col = divmod(label % 4, 2)
        # the label goes by the polygon's centre, a little off its pixels' centroid
        for centroid, side in ((ys.mean(), row), (xs.mean(), col)):
            assert abs(centroid - 16) < 2 or (centroid >= 16) == bool(side), (label, centroid)
        seen.add(label)
    assert seen == set(range(len(IMAGE_CLASSES))) and len(IMAGE_CLASSES) == 4 * len(SHAPES)
    assert IMAGE_CLASSES[label].startswith(list(SHAPES)[label // 4])
    # the cluttered look: a gradient background with distractors, as the videos have
    frame, _ = render_image(np.random.default_rng(1), 32, "cluttered")
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 50


def test_dataset_files_manifests_and_decoding(tmp_path):
    ds = make_synthetic_dataset(tmp_path / "synth", 48, seed=3)
    assert ds.num_classes == 8
    names = read_label_names(ds.labels_csv)
    assert names == class_names(8) and names[:2] == ["moving right", "moving left"]
    train = read_manifest(ds.train_manifest, root=ds.root, num_classes=8)
    val = read_manifest(ds.val_manifest, root=ds.root, num_classes=8)
    assert len(train) + len(val) == 48 and len(val) == 8  # stratified 20%: one per class
    assert sorted(r.label for r in val) == list(range(8))
    assert np.bincount([r.label for r in train + val]).tolist() == [6] * 8
    data = open(train[0].full_path, "rb").read()
    vr = open_video(data)
    assert len(vr) == 16 and vr[0].shape == (64, 64, 3)
    assert decode_test_views(data, ClipSpec(num_frames=8, input_size=32)).shape == (1, 8, 3, 32, 32)
    # same seed, same bytes; a second run over the same directory keeps what is there
    again = make_synthetic_dataset(tmp_path / "synth2", 48, seed=3)
    assert open(train[0].full_path.replace("synth", "synth2"), "rb").read() == data
    assert make_synthetic_dataset(tmp_path / "synth", 48, seed=3) == ds
    with pytest.raises(ValueError, match="other settings"):
        make_synthetic_dataset(tmp_path / "synth", 48, seed=4)
    with pytest.raises(ValueError, match="other settings"):
        make_synthetic_dataset(tmp_path / "synth", 48, seed=3, style="simple")
    assert again.num_classes == 8


def test_encoded_video_decodes_close_to_rendered_frames():
    frames = render_video(4, np.random.default_rng(0), size=64, num_frames=8)
    decoded = read_frames(open_video(encode_mp4(frames)), np.arange(8))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6  # lossy H.264 yuv420p, close


def test_invalid_settings():
    with pytest.raises(ValueError, match="even number of classes"):
        class_names(7)
    with pytest.raises(ValueError, match="even"):
        encode_mp4(np.zeros((2, 63, 64, 3), np.uint8))
