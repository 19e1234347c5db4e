"""Run a video decode in a persistent child process with a per-call time limit.

Why: decord is unmaintained, and its open issue #373 (dmlc/decord) shows `VideoReader.get_batch`
looping forever in native code, holding the GIL, on a container that over-reports its frame
count. Nothing in the same process can stop that: signal handlers and watchdog threads need the
GIL. Inside a Ray Data decode task such a hang would stall a whole training run, so the decode
runs in a child process that the caller kills when it overruns:

    guard = guard_for(30.0)  # one child per process, reused across calls
    clip = guard.call(decode_train_clip, data, spec, aug, rng)  # DecodeTimeout after 30 s
    clip = guard.call("vfn.data.clips:decode_train_clip", ...)  # the caller never imports clips

A timeout or a crashed decoder (e.g. a segfault in ffmpeg) surfaces as a `CorruptVideoError`
subclass, which the decode tasks already count and skip; the child is restarted on the next call.
The child is started by forkserver, not fork (a fork taken after torch/decord started their
thread pools can deadlock) and imports the decoders once. It does not outlive its parent: idle, it
exits when the pipe closes; busy, a SIGALRM with its default action (which needs no GIL) ends it a
little after the limit, whether or not the parent is still there to kill it.

`fn` and its arguments travel by pickle, so `fn` must be importable by name in the child, and
arguments are copies: a `numpy.random.Generator` passed in is advanced in the child only.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import signal
import struct
import threading
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np

from vfn.data.video import CorruptVideoError

T = TypeVar("T")

WARM_MODULES = ("decord", "vfn.data.clips")  # imported once at child start, not per call
STARTUP_TIMEOUT_S = 120.0  # child start-up (importing torch) is not counted against the call limit
SELF_KILL_MARGIN_S = 5.0  # the child's own alarm fires this long after the limit (the parent kills first)
_READY = "ready"


class DecodeTimeout(CorruptVideoError):
    """The decode ran past the guard's time limit; its process was killed."""


class DecodeGuardError(RuntimeError):
    """The guard's child process could not be started (an environment fault, not a bad video)."""


class RemoteTraceback(Exception):
    """The child's traceback text, chained as the cause of an exception re-raised in the parent."""


class DecodeGuard:
    """Calls functions in one persistent child process, each bounded by `timeout_s` seconds.

    `timeout_s <= 0` calls in-process (no guard). Calls from several threads are serialised.
    """

    def __init__(self, timeout_s: float, context: str = "forkserver", warm: Sequence[str] = WARM_MODULES):
        self.timeout_s = float(timeout_s)
        self._ctx = multiprocessing.get_context(context)
        self._warm = tuple(warm)
        self._lock = threading.Lock()
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._owner = os.getpid()
        self.restarts = 0  # children killed after a timeout or found dead (for logs and tests)

    def __enter__(self) -> DecodeGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None before the first call and after a kill."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child now (it otherwise starts on the first call), e.g. in a worker's setup."""
        if self.timeout_s > 0:
            with self._lock:
                self._ensure_child()

    def call(self, fn: Callable[..., T] | str, *args: Any) -> T:
        """`fn(*args)` in the child; DecodeTimeout past the limit, CorruptVideoError if it crashes.

        `fn` may be named as "module:function" (see `resolve`). An exception raised by `fn` is
        re-raised here with its own type when it pickles."""
        if self.timeout_s <= 0:
            return function_named(fn)(*args)
        request = _encode((fn, tuple(_Blob(a) if _is_big_bytes(a) else a for a in args)))  # may not pickle
        with self._lock:
            conn = self._ensure_child()
            try:
                status, value, remote_tb = self._round_trip(conn, request)
            except (CorruptVideoError, DecodeGuardError):
                raise
            except BaseException:  # interrupted mid-call (KeyboardInterrupt...): a reply may be pending
                self._kill()
                raise
        if status == "ok":
            return value
        raise value from RemoteTraceback(remote_tb)

    def close(self) -> None:
        """Stop the child: closing the pipe ends its loop; kill it if it does not exit promptly."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._proc is not None:
                self._proc.join(timeout=2.0)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join()
                self._proc = None

    # ------------------------------------------------------------ internals

    def _round_trip(self, conn: Connection, request: Message) -> tuple[str, Any, str | None]:
        """Send one request and wait for its reply: (status, result or exception, child traceback)."""
        try:
            send_message(conn, request)
            ready = conn.poll(self.timeout_s)  # True on a reply and on EOF (the child died)
        except OSError:  # broken pipe: the child died before or while reading the request
            ready = True
        if not ready:
            self._kill()
            raise DecodeTimeout(f"decode exceeded the {self.timeout_s:g} s limit; its process was killed")
        try:
            head, buffers = recv_message(conn)
        except (EOFError, OSError):
            how = self._reap()
            if how == _describe_exit(-signal.SIGALRM):  # its own alarm: the parent was late to check
                raise DecodeTimeout(f"decode exceeded the {self.timeout_s:g} s limit ({how})") from None
            raise CorruptVideoError(f"decoder crashed ({how})") from None
        return pickle.loads(head, buffers=buffers)

    def _ensure_child(self) -> Connection:
        if self._owner != os.getpid():  # this object was inherited by a fork: the child is not ours
            self._proc, self._conn, self._owner = None, None, os.getpid()
        if self._proc is not None and not self._proc.is_alive():  # died between calls (e.g. OOM killer)
            self._reap()
        if self._conn is None:
            self._conn = self._spawn()
        return self._conn

    def _spawn(self) -> Connection:
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_child_main, args=(child_end, self._warm, self.timeout_s), daemon=True,
                                 name="vfn-decode-guard")
        proc.start()
        child_end.close()  # only the child holds it now, so its death reads as EOF here
        self._proc = proc
        try:
            if parent_end.poll(STARTUP_TIMEOUT_S) and parent_end.recv() == _READY:
                return parent_end
        except (EOFError, OSError):
            pass
        self._conn = parent_end
        how = self._reap()
        raise DecodeGuardError(f"decode guard child did not start within {STARTUP_TIMEOUT_S:g} s ({how})")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
        self._reap()

    def _reap(self) -> str:
        """Forget the child (killed or dead) so the next call starts a new one; how it ended, in words."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn = None, None
        if conn is not None:
            conn.close()
        if proc is None:
            return "no process"
        self.restarts += 1
        proc.join(timeout=5.0)
        if proc.is_alive():  # not even SIGTERM-able in time: make sure
            proc.kill()
            proc.join()
        return _describe_exit(proc.exitcode)


def function_named(fn: Callable[..., T] | str) -> Callable[..., T]:
    """`fn`, or the function a "module:function" string names. Naming it keeps its module (and
    what that imports: torch, for the decoders) out of a parent that only forwards calls."""
    if not isinstance(fn, str):
        return fn
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------- the child


def _child_main(conn: Connection, warm: tuple[str, ...], timeout_s: float) -> None:
    """Serve (fn, args) requests until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    # default action (terminate) runs in the kernel: it ends a call stuck in native code holding the GIL
    # even when the parent that should kill it is gone (with forkserver, PR_SET_PDEATHSIG would not help:
    # our parent is the forkserver, which stays up as long as this child holds its client's alive-pipe)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    for name in warm:
        importlib.import_module(name)
    conn.send(_READY)
    while True:
        try:
            request = recv_message(conn)
        except (EOFError, OSError):  # the parent closed its end or died
            return
        signal.setitimer(signal.ITIMER_REAL, timeout_s + SELF_KILL_MARGIN_S)
        reply = _serve(*request)
        signal.setitimer(signal.ITIMER_REAL, 0)
        send_message(conn, reply)


def _serve(head: bytes, buffers: list[np.ndarray]) -> Message:
    try:
        fn, args = pickle.loads(head, buffers=buffers)  # in the try: an fn the child cannot import is an error
        reply: tuple = ("ok", function_named(fn)(*args), None)
    except BaseException as e:  # noqa: B036 -- everything goes back to the parent, which re-raises it
        reply = ("err", _portable(e), traceback.format_exc())
    try:
        return _encode(reply)
    except Exception as e:  # an unpicklable result
        return _encode(("err", RuntimeError(f"decode result cannot be sent back: {e}"), None))


def _portable(e: BaseException) -> BaseException:
    """`e` if it survives a pickle round trip (the parent re-raises the same type), else a stand-in."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        kind = CorruptVideoError if isinstance(e, CorruptVideoError) else RuntimeError
        return kind(f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------- transport
# pickle protocol 5 with large buffers (numpy arrays, video bytes) out of band: they are written to the
# socket straight from their memory and read straight into their final array, instead of being copied
# into and out of one pickle (and through Connection's BytesIO), which halves the cost for large results.

OUT_OF_BAND_MIN = 1 << 16  # bytes; smaller buffers stay inside the pickle
Message = tuple[bytes, list[memoryview]]


class _Blob:
    """Pickles large `bytes` (an encoded video) out of band; unpickles as plain `bytes` again."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce_ex__(self, protocol: object) -> tuple:
        return bytes, (pickle.PickleBuffer(self.data),)


def _is_big_bytes(x: object) -> bool:
    return type(x) is bytes and len(x) >= OUT_OF_BAND_MIN


def _encode(obj: object) -> Message:
    buffers: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:  # False: send it separately
        raw = buf.raw()
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True
        buffers.append(raw)
        return False

    return pickle.dumps(obj, protocol=5, buffer_callback=out_of_band), buffers


def send_message(conn: Connection, message: Message) -> None:
    """One pickle head (prefixed with its buffers' sizes), then each buffer as its own frame."""
    head, buffers = message
    sizes = [b.nbytes for b in buffers]
    conn.send_bytes(struct.pack(f"<{len(sizes) + 1}Q", len(sizes), *sizes) + head)
    for b in buffers:
        conn.send_bytes(b)  # no copy above 16 KiB (Connection writes header and payload separately)


def recv_message(conn: Connection) -> tuple[bytes, list[np.ndarray]]:
    """The pickle head and its out-of-band buffers, each read into a fresh writable array."""
    frame = conn.recv_bytes()
    (count,) = struct.unpack_from("<Q", frame)
    sizes = struct.unpack_from(f"<{count}Q", frame, 8)
    return frame[8 * (count + 1):], [_recv_frame_into(conn, size) for size in sizes]


def _recv_frame_into(conn: Connection, size: int) -> np.ndarray:
    """Read one Connection frame (its length header, then the payload) from the socket into an array."""
    fd = conn.fileno()
    (n,) = struct.unpack("!i", _read_exact(fd, 4))
    if n == -1:  # Connection's header for frames over 2 GiB
        (n,) = struct.unpack("!Q", _read_exact(fd, 8))
    if n != size:
        raise OSError(f"decode guard: frame of {n} bytes where {size} were announced")
    buf = np.empty(size, np.uint8)  # uninitialised: no cost to zero it before the read fills it
    _read_exact(fd, size, memoryview(buf))
    return buf


def _read_exact(fd: int, size: int, view: memoryview | None = None) -> memoryview:
    view = memoryview(bytearray(size)) if view is None else view
    pos = 0
    while pos < size:
        n = os.readv(fd, [view[pos:]])
        if n == 0:
            raise EOFError("decode guard: the other end closed the pipe")
        pos += n
    return view


# ---------------------------------------------------------------- one guard per process

_GUARDS: dict[float, DecodeGuard] = {}
_GUARDS_LOCK = threading.Lock()


def guard_for(timeout_s: float) -> DecodeGuard:
    """This process's guard for `timeout_s` (created on first use, its child started lazily): Ray
    worker processes are long-lived, so each keeps one warm decode child across tasks."""
    with _GUARDS_LOCK:
        guard = _GUARDS.get(float(timeout_s))
        if guard is None or guard._owner != os.getpid():
            guard = _GUARDS[float(timeout_s)] = DecodeGuard(timeout_s)
        return guard
