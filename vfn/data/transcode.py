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
  * the colour planes quantised finer than luma (`chroma_qp_offset`, see below);
  * one encoder thread: packing already runs one video per core. (Output bytes may still differ
    slightly between runs; nothing relies on them being identical, resuming skips by file.)

What a re-encode may lose, and how it is measured. libx264 makes its per-block decisions mostly on
luma. Where a moving object differs from its background mostly in colour, a P- or B-block whose luma
residual quantises to nothing is skipped, and the object's colour stays where it was: on the
synthetic `simple-any` clips, 14 of 80 re-encodes at crf 23 kept less than 80% of the source's
frame-to-frame colour change (the worst 17%), while their PSNR (44-50 dB) was above the median,
because a faint colour difference costs little squared error. A temporal model trained on such shards
learns the order of frames from fewer clips, and from scratch it may never find the cue (`vfn bench
encoding`, docs/data-encoding.md). A chroma QP offset of -6 leaves 1 of the 80 below 80% (70%) for
18% more bytes and no measurable decode time (crf 18 would cost 68% more bytes and 8% more decode
time). Every re-encode's PSNR and colour motion kept against the frames
the encoder was given (`Transcoded`) is stored per video; videos below `min_psnr` are rejected.
"""

from __future__ import annotations

import collections
import io
import json
import math
from dataclasses import asdict, dataclass, fields
from fractions import Fraction

import numpy as np

from vfn.errors import last_line

DEFAULT_SHORT_SIDE = 256
DEFAULT_KEYFRAME_INTERVAL = 8
FALLBACK_FPS = Fraction(25)  # containers that state no frame rate at all
DEFAULT_MIN_PSNR = 30.0
DEFAULT_CHROMA_QP_OFFSET = -6  # keeps the colour of moving objects moving (module docstring)
PSNR_CAP = 100.0  # dB for a frame stored without loss (PSNR is infinite there)
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
TUNES = (None, "fastdecode", "film", "animation", "grain", "stillimage", "zerolatency")


class TranscodeError(RuntimeError):
    """The video could not be decoded or re-encoded."""


@dataclass(frozen=True)
class Encoding:
    """How `transcode` re-encodes. preset, crf and tune were chosen for segment-sampled decode time
    on Kinetics clips, the chroma QP offset for what a temporal model learns from the result
    (module docstring); `vfn bench encoding` measures the accuracy of any other choice."""

    short_side: int = DEFAULT_SHORT_SIDE  # 0: keep the resolution
    keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL
    crf: int = 23
    preset: str = "veryfast"
    tune: str | None = "fastdecode"
    codec: str = "h264"
    pix_fmt: str = "yuv420p"
    chroma_qp_offset: int = DEFAULT_CHROMA_QP_OFFSET  # x264: < 0 quantises the colour planes finer than luma
    min_psnr: float = DEFAULT_MIN_PSNR  # dB: a video whose re-encode is below this is rejected, not stored

    def __post_init__(self):
        if self.short_side < 0 or self.short_side % 2:
            raise ValueError(f"short side must be 0 (keep) or a positive even number, got {self.short_side}")
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe interval must be >= 1, got {self.keyframe_interval}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if not -12 <= self.chroma_qp_offset <= 12:
            raise ValueError(f"chroma QP offset must be in [-12, 12], got {self.chroma_qp_offset}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.tune not in TUNES:
            raise ValueError(f"tune must be one of {', '.join(t for t in TUNES if t)} or none, got {self.tune!r}")
        if not 0 <= self.min_psnr < PSNR_CAP:
            raise ValueError(f"min PSNR must be in [0, {PSNR_CAP:g}) dB, got {self.min_psnr}")

    def settings(self) -> dict:
        """What determines the output bytes (library versions aside)."""
        return asdict(self)

    def describe(self) -> dict:
        """`settings` plus the library versions: recorded in every shard's footer."""
        return {"transcoded": True, **self.settings(), **library_versions()}


def library_versions() -> dict:
    import av  # LAZY: PyAV only to encode; the pipeline imports this module through shards

    return {"pyav": av.__version__, "ffmpeg": str(getattr(av, "ffmpeg_version_info", "unknown"))}


def describe_encoding(encoding: dict | None) -> str:
    """One readable line for `vfn data info`."""
    if encoding is None:
        return "not recorded (shards written before encodings were recorded: original bytes)"
    if not encoding.get("transcoded"):
        return "original bytes (not re-encoded)"
    size = f"short side {encoding['short_side']}" if encoding.get("short_side") else "original size"
    tune = f", tune {encoding['tune']}" if encoding.get("tune") else ""
    tune += f", chroma QP offset {encoding['chroma_qp_offset']}" if encoding.get("chroma_qp_offset") else ""
    floor = f", PSNR floor {encoding['min_psnr']:g} dB" if "min_psnr" in encoding else ""
    return (f"re-encoded {encoding['codec']} {encoding['pix_fmt']}, {size}, keyframe every "
            f"{encoding['keyframe_interval']} frames, crf {encoding['crf']}, preset {encoding['preset']}{tune}"
            f"{floor} (PyAV {encoding.get('pyav')}, FFmpeg {encoding.get('ffmpeg')})")


def parse_encoding(text: str) -> Encoding:
    """`crf=18,tune=none` -> Encoding(crf=18, tune=None), the other fields at their defaults (the
    benchmarks' `--encoding`); a field that does not exist or a bad value is a ValueError."""
    kinds = {f.name: f.type for f in fields(Encoding)}
    given: dict = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in kinds:
            raise ValueError(f"encoding {text!r}: expected KEY=VALUE with KEY one of {', '.join(kinds)}")
        kind = str(kinds[key])
        try:
            given[key] = None if value.lower() == "none" else int(value) if kind.startswith("int") else \
                float(value) if kind.startswith("float") else value
        except ValueError:
            raise ValueError(f"encoding {text!r}: {key} must be a number, got {value!r}") from None
    return Encoding(**given)


def encoding_label(encoding: Encoding) -> str:
    """The fields that differ from the default encoding (`crf=18,tune=None`), or `default`."""
    default = Encoding()
    changed = [f"{f.name}={getattr(encoding, f.name)}" for f in fields(Encoding)
               if getattr(encoding, f.name) != getattr(default, f.name)]
    return ",".join(changed) or "default"


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
    import av  # LAZY: PyAV only to encode; the pipeline imports this module through shards

    if not turns:
        return frame
    pixels = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), turns))
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


# ---------------------------------------------------------------- encoding


def open_encoder(container, rate: Fraction, width: int, height: int, encoding: Encoding):
    options = {"crf": str(encoding.crf), "preset": encoding.preset, "threads": "1",
               # a keyframe exactly every N frames: scene cuts would make the spacing irregular
               "x264-params": f"keyint={encoding.keyframe_interval}:min-keyint={encoding.keyframe_interval}"
                              f":scenecut=0:chroma-qp-offset={encoding.chroma_qp_offset}"}
    if encoding.tune:
        options["tune"] = encoding.tune
    stream = container.add_stream("libx264", rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = width, height, encoding.pix_fmt
    stream.codec_context.time_base = 1 / rate
    stream.codec_context.thread_count = 1
    return stream


def encoder_frame(frame, width: int, height: int, encoding: Encoding, index: int, time_base: Fraction):
    """The frame scaled for the encoder and re-timed at `index` (constant frame rate)."""
    from av.video.frame import PictureType  # LAZY: PyAV only to encode; the pipeline imports this module through shards

    scaled = frame.reformat(width=width, height=height, format=encoding.pix_fmt, interpolation="AREA")
    scaled.pts, scaled.time_base = index, time_base
    scaled.pict_type = PictureType.NONE  # else the source's keyframes are forced into the output too
    return scaled


def source_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate and rate > 0 else FALLBACK_FPS


@dataclass(frozen=True)
class Transcoded:
    """A re-encoded video and how close it stays to its source: PSNR of every stored frame against
    the frame the encoder was given (the source after rotation and scaling), Y, U and V pooled by
    sample count as FFmpeg's `psnr` filter averages them; `psnr_min` is the worst frame.
    `colour_kept` is what PSNR misses (module docstring): of the frame-to-frame change of the colour
    planes where the source's colour changes (by >= COLOUR_STEP levels), the share the stored video
    still has; 1 when no colour changes. Sensor noise the encoder smooths away counts as lost too,
    so camera footage scores 0.6-0.9 (0.2 on a 3-frame phone clip) without harm: compare encodings
    of the same videos with it, not videos with each other."""

    data: bytes
    frames: int
    psnr_mean: float
    psnr_min: float
    colour_kept: float = 1.0


COLOUR_STEP = 2  # levels of U or V between two frames that count as the source's colour changing



def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape, capped at PSNR_CAP."""
    mse = float(np.mean((a.astype(np.int16) - b.astype(np.int16)) ** 2, dtype=np.float64))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0 ** 2 / mse))


def transcode(data: bytes, encoding: Encoding) -> Transcoded:
    """Re-encode the first video stream of `data` (see the module docstring) and measure what the
    re-encode lost (`Transcoded`). Raises TranscodeError."""
    import av  # LAZY: PyAV only to encode; the pipeline imports this module through shards

    try:
        return encode_frames(data, encoding)
    except TranscodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError) as e:  # av raises many kinds for bad input
        raise TranscodeError(f"re-encode failed: {last_line(e)}") from None


class QualityMeter:
    """Decodes the encoder's packets as they come out and compares each decoded frame with the
    input it came from. The encoder holds back a few frames (look-ahead, B-frames), so only those
    wait here: memory stays a few frames, however long the video."""

    def __init__(self):
        self.pending: collections.deque[np.ndarray] = collections.deque()
        self.scores: list[float] = []
        self.decoder = None
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # the last frame pair's colour planes
        self.colour_change = np.zeros(2)  # summed |change| of the source's and the stored colour planes

    def sent(self, frame) -> None:
        self.pending.append(frame.to_ndarray())

    def received(self, packets, encoder) -> None:
        import av  # LAZY: PyAV only to encode; the pipeline imports this module through shards

        if self.decoder is None:
            self.decoder = av.CodecContext.create("h264", "r")  # FFmpeg's decoder, not libx264
            self.decoder.extradata = encoder.codec_context.extradata  # SPS/PPS live there in MP4
            self.decoder.thread_count = 1
        for packet in packets:
            self.compare(self.decoder.decode(packet))

    def flush(self) -> None:
        if self.decoder is not None:
            self.compare(self.decoder.decode(None))
        if self.pending:
            raise TranscodeError(f"re-encode failed: {len(self.pending)} frames never came back from the encoder")

    def compare(self, frames) -> None:
        for frame in frames:
            stored, source = frame.to_ndarray(), self.pending.popleft()
            self.scores.append(psnr(stored, source))
            self.follow_colour(source, stored)

    def follow_colour(self, source: np.ndarray, stored: np.ndarray) -> None:
        """Add this frame's change of the colour planes (yuv420p arrays: U and V below the luma's
        2/3 of the rows) since the last frame, where the source's colour changes."""
        rows = source.shape[0] * 2 // 3
        now = source[rows:].astype(np.int16), stored[rows:].astype(np.int16)
        if self.previous is not None:
            changed_source = np.abs(now[0] - self.previous[0])
            moving = changed_source >= COLOUR_STEP
            self.colour_change += (changed_source[moving].sum(), np.abs(now[1] - self.previous[1])[moving].sum())
        self.previous = now

    @property
    def colour_kept(self) -> float:
        source, stored = self.colour_change
        return float(stored / source) if source else 1.0


def encode_frames(data: bytes, encoding: Encoding) -> Transcoded:
    import av  # LAZY: PyAV only to encode; the pipeline imports this module through shards

    out = io.BytesIO()
    meter = QualityMeter()
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
                scaled = encoder_frame(upright(frame, turns), width, height, encoding, count,
                                       encoder.codec_context.time_base)
                meter.sent(scaled)
                packets = encoder.encode(scaled)
                meter.received(packets, encoder)  # before muxing, which re-times the packets
                dst.mux(packets)
                count += 1
            if encoder is None:
                raise TranscodeError("re-encode failed: no decodable frames")
            packets = encoder.encode(None)
            meter.received(packets, encoder)
            dst.mux(packets)
            meter.flush()
    return Transcoded(out.getvalue(), count, float(np.mean(meter.scores)), float(np.min(meter.scores)),
                      meter.colour_kept)
