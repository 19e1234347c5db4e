"""Locations on a local disk or on object storage (s3://, gs://, any fsspec protocol), one API.

Shards, run directories and checkpoints are named by strings: a local path, or a URI such as
`s3://bucket/vfn/runs/NAME`. Everything goes through pyarrow filesystems, which Ray Train and Ray
Data use too, so a run written on S3 by a cluster can be resumed, evaluated or compared from any
machine that can read the bucket. Credentials and custom endpoints come from the environment
(`AWS_*`, including `AWS_ENDPOINT_URL` for MinIO and other S3-compatible stores), never from here.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs


def is_remote(location: str | Path) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def filesystem_and_path(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path within it) for a local path or a URI: pyarrow's own filesystems first
    (s3://, gs://, hdfs://, file://), then any fsspec protocol (az://, memory://, ...)."""
    location = str(location)
    if "://" not in location:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))
    try:
        return pafs.FileSystem.from_uri(location)
    except pa.ArrowInvalid:  # a scheme pyarrow does not know: wrap the fsspec filesystem
        import fsspec  # LAZY: fsspec only for schemes Arrow lacks

        fs, path = fsspec.core.url_to_fs(location)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def is_arrow_native(location: str | Path) -> bool:
    """Whether Ray/pyarrow can open this location from the URI alone (no filesystem object)."""
    return "://" not in str(location) or not isinstance(filesystem_and_path(location)[0], pafs.PyFileSystem)


def absolute(location: str | Path) -> str:
    """A location that means the same from any working directory: URIs as given, paths made absolute."""
    return str(location).rstrip("/") if is_remote(location) else filesystem_and_path(location)[1]


def join(location: str | Path, *names: str) -> str:
    location = str(location)
    if "://" in location:
        return "/".join([location.rstrip("/"), *names])
    return os.path.join(location, *names)


def with_path(location: str | Path, fs_path: str) -> str:
    """The location of `fs_path` (a path inside `location`'s filesystem, as Ray returns them)."""
    location = str(location)
    if "://" not in location:
        return fs_path
    scheme = location.split("://", 1)[0]
    return f"{scheme}://{fs_path.lstrip('/')}" if scheme != "file" else fs_path


def exists(location: str | Path) -> bool:
    fs, path = filesystem_and_path(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(location: str | Path) -> bool:
    fs, path = filesystem_and_path(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def is_dir(location: str | Path) -> bool:
    fs, path = filesystem_and_path(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def make_dirs(location: str | Path) -> None:
    fs, path = filesystem_and_path(location)
    fs.create_dir(path, recursive=True)


def read_bytes(location: str | Path) -> bytes:
    if "://" not in str(location):
        return Path(location).read_bytes()
    fs, path = filesystem_and_path(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(location: str | Path) -> str | None:
    """The file's text, or None when there is no such file (one request on object storage)."""
    fs, path = filesystem_and_path(location)
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode()
    except FileNotFoundError:
        return None


def write_text(location: str | Path, text: str) -> None:
    """Write through a temporary name and a move: a reader never sees half a file (atomic on a
    local disk; on object storage the final PUT is what readers see either way)."""
    fs, path = filesystem_and_path(location)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    tmp = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode())
    fs.move(tmp, path)


def pop_text(location: str | Path) -> str | None:
    """Read a file and delete it (None when there is none): a one-shot message between processes."""
    text = read_text(location)
    if text is not None:
        fs, path = filesystem_and_path(location)
        fs.delete_file(path)
    return text


def upload(local: str | Path, location: str | Path) -> None:
    """Copy a local file to `location`."""
    fs, path = filesystem_and_path(location)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def list_dir(location: str | Path) -> list[pafs.FileInfo]:
    fs, path = filesystem_and_path(location)
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def local_copy(location: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local path holding the file at `location`: the file itself when local, else a copy
    downloaded once into `cache_dir` (default `~/.cache/vfn/remote`), keyed by its URI and size."""
    if not is_remote(location):
        return Path(filesystem_and_path(location)[1])
    fs, path = filesystem_and_path(location)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{location}: no such file")
    cache = Path(cache_dir or Path.home() / ".cache" / "vfn" / "remote")
    key = hashlib.sha256(f"{location}|{info.size}|{info.mtime_ns}".encode()).hexdigest()[:16]
    target = cache / key / posixpath.basename(path)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.part")  # workers on one node may race
        pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        tmp.replace(target)
    return target
