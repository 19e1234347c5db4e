"""DecodeGuard: a decode that hangs (holding the GIL, as in decord issue #373) or crashes is bounded.

The helpers under "run in the guard's child" are sent by name: the child imports this module (the
repository is on its sys.path, copied from pytest's) to run them.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time

import av
import numpy as np
import pytest

from tests.support import REPO, VIDEOS
from vfn.data.clips import decode_test_views, decode_train_clip
from vfn.data.guard import SELF_KILL_MARGIN_S, DecodeGuard, DecodeTimeout, guard_for
from vfn.data.video import AugmentSpec, ClipSpec, CorruptVideoError, open_video

# ---------------------------------------------------------------- run in the guard's child


def hold_gil_sleep(seconds: int) -> None:
    """libc sleep() called through PyDLL keeps the GIL, like decord's native loop in issue #373."""
    ctypes.PyDLL(None).sleep(seconds)


def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a crashing decoder would


def child_pid() -> int:
    return os.getpid()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def decoder_guard():
    """One guard with warm decoders for the decoding tests (its child start costs ~2 s: torch)."""
    with DecodeGuard(20.0) as guard:
        yield guard


@pytest.fixture
def light_guard():
    """A 2 s guard whose child imports only this module (for the helpers above) before the clock starts."""
    with DecodeGuard(2.0, warm=(__name__,)) as guard:
        yield guard


def overreporting_mp4(num_frames: int = 60) -> bytes:
    """An H.264 mp4 whose index (moov, written first) lists `num_frames` frames, cut after about a
    third of its media data: the container claims ~40 frames more than it holds (an interrupted copy)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.mp4")
        with av.open(path, "w", options={"movflags": "faststart"}) as out:  # faststart: moov before mdat
            stream = out.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for i in range(num_frames):
                img = np.full((240, 320, 3), (i * 4) % 256, np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(stream.encode())
        data = open(path, "rb").read()
    mdat = data.index(b"mdat")
    assert data.index(b"moov") < mdat  # the index survives the cut
    return data[:mdat + (len(data) - mdat) // 3]


# ---------------------------------------------------------------- tests


def test_overreporting_container_ends_within_the_limit_as_corrupt(decoder_guard):
    data = overreporting_mp4()
    decoder_guard.start()  # the child's start-up is not part of the limit
    t0 = time.monotonic()
    with pytest.raises(CorruptVideoError):
        decoder_guard.call(decode_train_clip, data, ClipSpec(input_size=112), None, np.random.default_rng(0))
    assert time.monotonic() - t0 < decoder_guard.timeout_s
    # What decord 0.6 does on it here: it raises (its open scans every packet and fails with
    # "av_read_frame failed"), it does not hang; the guard bounds the hang of issue #373 either way.
    with pytest.raises(CorruptVideoError, match="cannot open video"):
        open_video(data)


def test_gil_holding_hang_is_cut_off_and_the_next_call_works(light_guard):
    first = light_guard.call(child_pid)
    t0 = time.monotonic()
    with pytest.raises(DecodeTimeout, match="2 s limit") as info:
        light_guard.call(hold_gil_sleep, 60)
    assert time.monotonic() - t0 < 5
    assert isinstance(info.value, CorruptVideoError)  # the decode tasks count and skip it
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # the hung child is gone, not left sleeping
    assert light_guard.call(child_pid) not in (first, os.getpid())
    assert light_guard.restarts == 1


@pytest.mark.parametrize("crash, how", [(segfault, "SIGSEGV"), (os._exit, "exit code 3")])
def test_crashed_decoder_is_a_corrupt_video_and_the_guard_recovers(light_guard, crash, how):
    args = (3,) if crash is os._exit else ()
    with pytest.raises(CorruptVideoError, match=f"decoder crashed .*{how}"):
        light_guard.call(crash, *args)
    assert light_guard.call(child_pid) != os.getpid()
    assert light_guard.restarts == 1


def test_results_and_corrupt_errors_pass_through_unchanged(decoder_guard):
    data = (VIDEOS / "kinetics_yoga.mp4").read_bytes()
    spec, views = ClipSpec(input_size=112), ClipSpec(input_size=112, num_clips=2, num_crops=3)
    got = decoder_guard.call(decode_train_clip, data, spec, AugmentSpec(), np.random.default_rng(7))
    want = decode_train_clip(data, spec, AugmentSpec(), np.random.default_rng(7))
    assert got.dtype == want.dtype and got.flags.writeable
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(decoder_guard.call(decode_test_views, data, views), decode_test_views(data, views))

    bad = (VIDEOS / "corrupted.mp4").read_bytes()
    with pytest.raises(CorruptVideoError) as direct:
        decode_test_views(bad, views)
    with pytest.raises(CorruptVideoError) as guarded:
        decoder_guard.call(decode_test_views, bad, views)
    def untimed(e):  # decord stamps its messages with the wall-clock second
        return re.sub(r"\[\d\d:\d\d:\d\d\] ", "", str(e.value))

    assert type(guarded.value) is CorruptVideoError and untimed(guarded) == untimed(direct)
    with pytest.raises(ValueError, match="invalid ClipSpec"):  # other exception types keep theirs too
        decoder_guard.call(ClipSpec, 0)
    assert decoder_guard.restarts == 0  # errors raised by fn do not cost a restart


def test_zero_timeout_runs_in_process():
    with DecodeGuard(0) as guard:
        assert guard.call(child_pid) == os.getpid()
        assert guard.pid is None


def test_guard_for_keeps_one_guard_per_limit():
    assert guard_for(5) is guard_for(5.0) and guard_for(5) is not guard_for(6)


_ORPHAN_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
from vfn.data.guard import DecodeGuard
from tests.data.test_guard import hold_gil_sleep
g = DecodeGuard({limit}, warm=())
g.start()
print(g.pid, flush=True)
g.call(hold_gil_sleep, 120)
"""


def test_hung_child_does_not_outlive_a_killed_parent():
    """Nobody is left to kill the hung child: its own alarm ends it soon after the limit."""
    limit = 1.0
    script = _ORPHAN_SCRIPT.format(repo=str(REPO), limit=limit)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        time.sleep(0.5)  # the child is now stuck in sleep() holding its GIL
        parent.kill()
        parent.wait()
        assert _alive(child)
        deadline = time.monotonic() + limit + SELF_KILL_MARGIN_S + 3
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z")  # a zombie is dead


def test_a_guarded_decode_task_leaves_torch_to_its_child():
    """The decode tasks name the decoders ("module:function"): the guard's child imports torch, the
    Ray worker process that runs the task does not (~470 MB and ~2 s of CPU less per process)."""
    probe = f"""
import sys
import numpy as np
from vfn.data.pipeline import decode_train_batch, decode_val_batch
from vfn.data.video import AugmentSpec, ClipSpec

data = open({str(VIDEOS / "kinetics_yoga.mp4")!r}, "rb").read()
rows = {{"video": np.array([data], object), "label": np.array([3]), "index": np.array([0]),
        "path": np.array(["yoga.mp4"])}}
clip = ClipSpec(num_frames=4, input_size=64)
train = decode_train_batch(rows, clip, AugmentSpec(), 0, 1, on_device=True, timeout_s=60)
val = decode_val_batch(rows, clip, None, 1, timeout_s=60)
assert train["valid"].all() and val["valid"].all() and train["video"].any() and val["video"].any()
print("torch" in sys.modules, train["video"].shape, val["video"].shape)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "False", f"the decode task's process imported torch: {out.stdout}"
