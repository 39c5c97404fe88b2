"""Storage that refuses a write (disk full, quota, read-only, no permission) as one line naming the path and step.

The writers underneath word such a failure each their own way: Python's OSError carries an errno, pyarrow's an
errno and no path, polars' a ComputeError ending in "(os error 28)", DuckDB's an IOException with the C library's
text. `storage_errno` reads all of them; `guard(path)` wraps the few places every write goes through (the
workspace's transaction, curate.atomic, export's staging) and re-raises a StorageError that says which file, which
step (the running command, set once by the CLI), what the step needed where that is known, and what is free.
The write itself was already staged under a temporary name, so the previous state stays as it was.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import CurateError

STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
}
_FIX = {
    errno.ENOSPC: "free space there (or point --workspace/--output at a larger disk) and rerun",
    errno.EDQUOT: "free some of your quota (or write to another disk) and rerun",
    errno.EROFS: "copy the workspace to writable storage (or choose another --workspace/--output) and rerun",
    errno.EACCES: "make it writable for you (or choose another --workspace/--output) and rerun",
}
_TEXTS = {
    "no space left on device": errno.ENOSPC, "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS, "permission denied": errno.EACCES,
}
_CODE = re.compile(r"(?:os error|errno)\s*(\d+)", re.IGNORECASE)

STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar("curate_step", default=None)


class StorageError(CurateError):
    """A write refused by the storage; .errno, .path and .step say which, for scripts and tests."""

    def __init__(self, message: str, *, code: int, path: str | None, step: str | None):
        super().__init__(message)
        self.errno, self.path, self.step = code, path, step


def storage_errno(exc: BaseException | None) -> int | None:
    """The storage errno (ENOSPC, EDQUOT, EROFS, EACCES) behind exc or what caused it, else None."""
    seen = 0
    while exc is not None and seen < 8:
        code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        if code in STORAGE_ERRNOS:
            return code
        text = str(exc).lower()
        for m in _CODE.finditer(text):
            if int(m.group(1)) in STORAGE_ERRNOS:
                return int(m.group(1))
        for words, found in _TEXTS.items():
            if words in text:
                return found
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes free to an unprivileged writer on the filesystem holding path (its nearest existing folder)."""
    p = Path(path)
    for folder in (p, *p.parents):
        if folder.exists():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(folder).free
            return None
    return None


def storage_error(exc: BaseException, path: str | os.PathLike | None, needed: int | None = None,
                  written: int | None = None, step: str | None = None) -> StorageError:
    """The one-line StorageError for exc (a storage failure) while writing path: needed is what the step's write
    needs in all (where it is known beforehand), written what it had written when it failed."""
    code = storage_errno(exc) or errno.EIO
    step = STEP.get() or step or "curate"
    path = str(path) if path is not None else (getattr(exc, "filename", None) or "its output")
    verb = "write" if code != errno.EACCES or path != "its output" else "use"
    msg = f"{step} could not {verb} {path}: {STORAGE_ERRNOS.get(code, os.strerror(code))}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path) if path != "its output" else None
        parts = ([f"the step needed about {human_bytes(needed)}"] if needed else []) + \
            ([f"it had written {human_bytes(written)} when the write failed"]
             if written and (not needed or written < needed) else []) + \
            ([f"{human_bytes(free)} is free there"] if free is not None else [])
        if parts:
            msg += f" ({'; '.join(parts)})"
    return StorageError(f"{msg}. The workspace keeps its last committed state: {_FIX[code]}.",
                        code=code, path=path, step=step)


def _value(v: int | Callable[[], int | None] | None) -> int | None:
    try:
        return v() if callable(v) else v
    except Exception:  # a size estimate must never hide the error it explains
        return None


@contextlib.contextmanager
def guard(path: str | os.PathLike | None, needed: int | Callable[[], int | None] | None = None,
          written: int | Callable[[], int | None] | None = None, step: str | None = None) -> Iterator[None]:
    """Around a write of path: a storage failure becomes a StorageError (needed and written may be functions, asked
    only then); every other exception passes unchanged."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:
        if storage_errno(e) is None:
            raise
        raise storage_error(e, path, _value(needed), _value(written), step) from None


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the running step (a command's path, e.g. `curate ingest`) for the messages of guard()."""
    token = STEP.set(name)
    try:
        yield
    finally:
        STEP.reset(token)


def folder_bytes(folder: Path) -> int:
    """Bytes in the files under folder so far (what a staged folder had written when the disk filled)."""
    total = 0
    with contextlib.suppress(OSError):
        for p in folder.rglob("*") if folder.is_dir() else [folder]:
            with contextlib.suppress(OSError):
                if p.is_file():
                    total += p.stat().st_size
    return total
