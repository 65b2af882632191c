"""Where nanoemox keeps things on disk, and how it writes them (always atomically)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


def cache_dir() -> Path:
    """`$NANOEMOX_CACHE`, default `~/.cache/nanoemox`; created on first use."""
    root = Path(os.environ.get("NANOEMOX_CACHE") or Path.home() / ".cache" / "nanoemox")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock on `cache_dir()/.name.lock` (filelock), so that two
    processes that both find a cache entry missing build it only once."""
    from filelock import FileLock

    with FileLock(str(cache_dir() / f".{name}.lock")):
        yield


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds.

    Works for files and directories: readers see either the old `dest` or the complete new one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    target = tmp / dest.name
    try:
        yield target
        if dest.is_dir() and target.is_dir():
            old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
            os.replace(dest, old)
            os.replace(target, dest)
            _rmtree(old)
        else:
            os.replace(target, dest)
    finally:
        _rmtree(tmp)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike, obj, indent: int | None = 2) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one complete line with a single write + fsync, so a crash never leaves half a line
    (readers of append-only JSONL files also skip a trailing partial line)."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink(missing_ok=True)
