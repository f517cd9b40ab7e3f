"""Writing outputs safely. Atomic file writes: a file is written beside its destination under a
temporary name, then renamed onto it, so neither a reader nor a process killed mid-write ever finds
half a file. And a check, made before any work, that an output's folder can be written.

The temporary name carries the process id: two processes writing one file (two evaluations sharing
a cache directory, say) would otherwise write into, and rename away, each other's temporary file.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the temporary path to write ``path``'s new contents to. When the block ends normally it
    replaces ``path``; when it raises, ``path`` is left as it was and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def why_unwritable(folder: str | os.PathLike) -> str | None:
    """Why files cannot be made in ``folder``, naming the nearest of it and its parents that exists ("'/data'
    is a read-only folder", "'/data/x.jpg' is a file, not a folder"), or None when they can: a folder that does
    not exist yet is made where it can be."""
    existing = next(p for p in (Path(folder).absolute(), *Path(folder).absolute().parents) if p.exists())
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    return None if os.access(existing, os.W_OK | os.X_OK) else f"{str(existing)!r} is a read-only folder"
