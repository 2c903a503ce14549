"""Outputs that appear whole or not at all: a temporary name in the same folder, then a rename.

`os.replace` within one folder is atomic on POSIX and Windows, so a reader (or a user after a
crash, a full disk or Ctrl-C) sees either the old file or the complete new one, never a
half-written file. Temporary names are hidden (`.name.tmp-PID`), so nothing that lists a
folder's images or checkpoints picks them up, and every failure removes its temporary.
Folders are built under a hidden sibling name and renamed into place the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` for this process and thread (two viewer tabs save from two
    threads); the suffix is kept (writers pick formats by it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any failure it is removed."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def fresh_folder(path: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a new empty hidden folder beside `path`; on success it becomes `path`.

    An existing `path` is moved aside only after the new folder is complete and deleted after
    the swap (`replace` must say so; without it an existing non-empty `path` is left alone and
    FileExistsError is raised before anything is written). On failure the new folder is removed
    and `path` is untouched.
    """
    path = Path(path)
    if path.exists() and not replace and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(17, "exists and is not empty", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{int(time.time())}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
