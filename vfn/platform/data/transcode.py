"""Re-encode videos so that training can seek in them cheaply.

Datasets such as Kinetics ship H.264 with a keyframe every few seconds. A segment-sampled clip
reads frames spread over the whole video, and every one of them costs a decode from the previous
keyframe: about 100 ms per 8-frame clip on the shared Kinetics clips. Re-encoded with a keyframe
every 8 frames and a short side of 256 (what training resizes to anyway), the same clip decodes in
about a third of that time and the shards are smaller.

What a stored video looks like after `transcode` (defaults of `Encoding`):
  * H.264 (libx264), yuv420p, in MP4; audio and all other streams dropped;
  * constant frame rate: every decoded frame is kept and re-timed at the source's average fps,
    so frame indices mean the same as in the source;
  * upright: the container's rotation (display matrix) is applied to the pixels and no rotation
    metadata is left;
  * short side scaled down to `short_side` (never up; 0 keeps the size), even width and height;
  * a keyframe exactly every `keyframe_interval` frames (no scene-cut keyframes);
  * one encoder thread: packing already runs one video per core. (Output bytes may still differ
    slightly between runs; nothing relies on them being identical, resuming skips by file.)
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from vfn.errors import last_line

DEFAULT_SHORT_SIDE = 256
DEFAULT_KEYFRAME_INTERVAL = 8
FALLBACK_FPS = Fraction(25)  # containers that state no frame rate at all


class TranscodeError(RuntimeError):
    """The video could not be decoded or re-encoded."""


@dataclass(frozen=True)
class Encoding:
    """How `transcode` re-encodes. The preset/crf/tune defaults were chosen by measuring encode
    time and segment-sampled decode time on Kinetics clips (see `vfn data shard --help`)."""

    short_side: int = DEFAULT_SHORT_SIDE  # 0: keep the resolution
    keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL
    crf: int = 23
    preset: str = "veryfast"
    tune: str | None = "fastdecode"
    codec: str = "h264"
    pix_fmt: str = "yuv420p"

    def __post_init__(self):
        if self.short_side < 0 or self.short_side % 2:
            raise ValueError(f"short side must be 0 (keep) or a positive even number, got {self.short_side}")
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe interval must be >= 1, got {self.keyframe_interval}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")

    def settings(self) -> dict:
        """What determines the output bytes (library versions aside)."""
        return asdict(self)

    def describe(self) -> dict:
        """`settings` plus the library versions: recorded in every shard's footer."""
        return {"transcoded": True, **self.settings(), **library_versions()}


def library_versions() -> dict:
    import av

    return {"pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "unknown"))}


def describe_encoding(encoding: dict | None) -> str:
    """One readable line for `vfn data info`."""
    if encoding is None:
        return "not recorded (shards written before encodings were recorded: original bytes)"
    if not encoding.get("transcoded"):
        return "original bytes (not re-encoded)"
    size = f"short side {encoding['short_side']}" if encoding.get("short_side") else "original size"
    tune = f", tune {encoding['tune']}" if encoding.get("tune") else ""
    return (f"re-encoded {encoding['codec']} {encoding['pix_fmt']}, {size}, keyframe every "
            f"{encoding['keyframe_interval']} frames, crf {encoding['crf']}, preset {encoding['preset']}{tune} "
            f"(PyAV {encoding.get('pyav')}, FFmpeg {encoding.get('ffmpeg')})")


def encoding_json(encoding: Encoding | None) -> str:
    return json.dumps(encoding.describe() if encoding else {"transcoded": False}, sort_keys=True)


# ---------------------------------------------------------------- geometry


def even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side scaled down to `short_side` (never up; 0 keeps the size),
    both even as yuv420p needs."""
    short = min(width, height)
    if not short_side or short <= short_side:
        return max(2, width - width % 2), max(2, height - height % 2)  # odd: one line less
    scale = short_side / short
    if width <= height:
        return short_side, even(height * scale)
    return even(width * scale), short_side


def quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that make the frame upright (from its display matrix)."""
    rotation = getattr(frame, "rotation", 0) or 0
    return int(round(rotation / 90)) % 4


def upright(frame, turns: int):
    """The frame rotated by `turns` counter-clockwise quarter turns (a new frame; pixels moved)."""
    import av

    if not turns:
        return frame
    pixels = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), turns))
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


# ---------------------------------------------------------------- encoding


def open_encoder(container, rate: Fraction, width: int, height: int, encoding: Encoding):
    options = {"crf": str(encoding.crf), "preset": encoding.preset, "threads": "1",
               # a keyframe exactly every N frames: scene cuts would make the spacing irregular
               "x264-params": f"keyint={encoding.keyframe_interval}:min-keyint={encoding.keyframe_interval}"
                              ":scenecut=0"}
    if encoding.tune:
        options["tune"] = encoding.tune
    stream = container.add_stream("libx264", rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, encoding.pix_fmt
    stream.codec_context.time_base = 1 / rate
    stream.codec_context.thread_count = 1
    return stream


def encoder_frame(frame, width: int, height: int, encoding: Encoding, index: int, time_base: Fraction):
    """The frame scaled for the encoder and re-timed at `index` (constant frame rate)."""
    from av.video.frame import PictureType

    scaled = frame.reformat(width=width, height=height, format=encoding.pix_fmt, interpolation="AREA")
    scaled.pts, scaled.time_base = index, time_base
    scaled.pict_type = PictureType.NONE  # else the source's keyframes are forced into the output too
    return scaled


def source_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate and rate > 0 else FALLBACK_FPS


def transcode(data: bytes, encoding: Encoding) -> bytes:
    """Re-encode the first video stream of `data` (see the module docstring). Raises TranscodeError."""
    import av

    try:
        return encode_frames(data, encoding)
    except TranscodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError) as e:  # av raises many kinds for bad input
        raise TranscodeError(f"re-encode failed: {last_line(e)}") from None


def encode_frames(data: bytes, encoding: Encoding) -> bytes:
    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(data), metadata_errors="ignore") as src:
        if not src.streams.video:
            raise TranscodeError("re-encode failed: no video stream")
        stream = src.streams.video[0]
        stream.codec_context.thread_count = 1  # packing runs one video per core
        rate = source_rate(stream)
        with av.open(out, "w", format="mp4") as dst:
            encoder, turns, count = None, 0, 0
            for frame in src.decode(stream):
                if encoder is None:
                    turns = quarter_turns(frame)
                    image = upright(frame, turns)
                    width, height = output_size(image.width, image.height, encoding.short_side)
                    encoder = open_encoder(dst, rate, width, height, encoding)
                dst.mux(encoder.encode(encoder_frame(upright(frame, turns), width, height, encoding, count,
                                                         encoder.codec_context.time_base)))
                count += 1
            if encoder is None:
                raise TranscodeError("re-encode failed: no decodable frames")
            dst.mux(encoder.encode(None))
    return out.getvalue()
