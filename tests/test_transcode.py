"""Re-encoding for fast seeking: size rules, upright pixels, constant frame rate, keyframe spacing, bad input."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from conftest import VIDEOS
from vfn.platform.data.transcode import Encoding, TranscodeError, describe_encoding, output_size, transcode
from vfn.platform.data.video import open_video, read_frames


def test_output_size_scales_the_short_side_down_never_up_and_keeps_it_even():
    assert output_size(426, 320, 256) == (340, 256)  # landscape: height is the short side
    assert output_size(320, 568, 256) == (256, 454)  # portrait
    assert output_size(340, 256, 256) == (340, 256)  # already there
    assert output_size(64, 48, 256) == (64, 48)  # smaller: never upscaled
    assert output_size(1921, 1081, 0) == (1920, 1080)  # 0 keeps the size, made even for yuv420p
    with pytest.raises(ValueError, match="even"):
        Encoding(short_side=255)
    with pytest.raises(ValueError, match="keyframe interval"):
        Encoding(keyframe_interval=0)


def test_rotation_is_applied_to_the_pixels(shared_dir):
    source = (VIDEOS / "rotated_90.mov").read_bytes()
    stored = transcode(source, Encoding(short_side=0))
    with av.open(io.BytesIO(stored)) as c:
        frame = next(c.decode(video=0))
        assert (frame.height, frame.width, frame.rotation) == (568, 320, 0)  # upright, no rotation metadata left
    before = read_frames(open_video(source), [0, 1, 2]).astype(np.int16)
    after = read_frames(open_video(stored), [0, 1, 2]).astype(np.int16)
    assert after.shape == before.shape == (3, 568, 320, 3)
    assert np.abs(after - before).mean() < 6  # the same picture (decord rotates the source on reading)
    assert np.abs(after - before[:, ::-1, ::-1]).mean() > 20  # and not the other way up


def test_constant_frame_rate_keyframe_every_n_frames_and_no_audio(shared_dir):
    source = (VIDEOS / "flipping_a_pancake.mkv").read_bytes()  # Matroska with an audio stream
    stored = transcode(source, Encoding(keyframe_interval=8))
    with av.open(io.BytesIO(stored)) as c:
        assert [s.type for s in c.streams] == ["video"]
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.format.name) == ("h264", "yuv420p")
        assert (stream.height, stream.width, stream.average_rate) == (240, 426, 30)  # under 256: kept
        packets = [p for p in c.demux(stream) if p.size]
    positions = sorted(round(p.pts * p.time_base * 30) for p in packets)
    assert positions == list(range(310))  # every source frame, one every 1/30 s
    assert sorted(round(p.pts * p.time_base * 30) for p in packets if p.is_keyframe) == list(range(0, 310, 8))
    assert len(open_video(stored)) == len(open_video(source)) == 310


def test_bad_input_is_a_transcode_error(shared_dir):
    with pytest.raises(TranscodeError, match="re-encode failed"):
        transcode((VIDEOS / "corrupted.mp4").read_bytes(), Encoding())
    with pytest.raises(TranscodeError, match="re-encode failed"):
        transcode(b"not a video" * 100, Encoding())


def test_describe_encoding_is_one_readable_line():
    line = describe_encoding(Encoding().describe())
    assert "short side 256" in line and "keyframe every 8 frames" in line and "PyAV" in line and "\n" not in line
    assert describe_encoding({"transcoded": False}) == "original bytes (not re-encoded)"
    assert "not recorded" in describe_encoding(None)
