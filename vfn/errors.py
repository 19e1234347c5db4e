"""One-line error text for messages that name what failed and why, without a traceback."""

from __future__ import annotations


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text (its headline), or its type name."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]


def last_line(e: BaseException, limit: int = 300) -> str:
    """The last non-empty line: where decoders (decord, ffmpeg) put the actual reason after a trace."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:limit]


class ConfigError(ValueError):
    """A configuration mistake, as one line naming the dotted key: `vfn.cli.main` prints it and exits 2."""
