"""Writes that are never half-done: a file or folder is written under a temporary name beside its target and
renamed into place only when complete, so a reader sees the old version or the new one, never a torn one.

    write_text(path, text)               one text file
    write_bytes(path, data)              one binary file
    with staged_file(path) as tmp: ...   a file some other library writes (Parquet, FAISS, CSV)
    with staged_dir(folder, replace=True) as tmp: ...   a folder (checkpoints, exported datasets)
    install_dir(folder, build)           a folder built once, shared by processes (the first rename wins)

Every other module writes through these: one implementation, one set of temporary names (`.<name>.<pid>-<id>.tmp`:
the writer's process id lets the next writer of the same path remove what a killed one left, clear_stale),
and one place where a full disk or read-only storage becomes a one-line StorageError (curate.faults.guard).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from .faults import folder_bytes, guard


def temp_name(path: Path, suffix: str = "tmp") -> Path:
    """A hidden sibling of `path` no other writer will pick: `.<name>.<pid>-<8 hex>.<suffix>`."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{suffix}")


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?P<suffix>tmp|old)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Temporary files and folders in `folder` (of target `name`, or any) whose writer is no longer running: what a
    killed or crashed write left. A live writer's (this process's, or another's still running) are never listed."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        m = _TEMP.match(p.name)
        if m and (name is None or m["name"] == name) and not _alive(int(m["pid"])):
            out.append(p)
    return out


def clear_stale(path: Path) -> None:
    """Before writing `path`: remove what killed writes of it left beside it. An `.old` copy of a target that is
    gone (killed between move_into_place's two renames) is the previous version: it is put back, not removed."""
    for p in sorted(stale_temps(path.parent, path.name), key=lambda q: not q.name.endswith(".old")):
        if p.name.endswith(".old") and not exists(path):
            with contextlib.suppress(OSError):
                os.rename(p, path)
                continue
        remove(p)


def remove(path: Path) -> None:
    """Remove a file, link or folder; nothing if it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_file(path: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` (os.replace), on failure it is removed.
    needed: the bytes it will take, where the caller knows, for the message of a full disk."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with guard(path, needed=needed, written=lambda: folder_bytes(tmp)):
            path.parent.mkdir(parents=True, exist_ok=True)
            clear_stale(path)
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with staged_file(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike, replace: bool = False,
               refuse: Callable[[Path], Exception] | None = None) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; when the block succeeds it becomes `target`.

    An existing target is kept unless `replace`: then it is moved aside, the new folder renamed in, and the
    old one removed (put back if the rename fails). Without `replace` an existing target raises refuse(target)
    (default FileExistsError). On failure the temporary folder is removed and the target is untouched.
    """
    target = Path(target)
    tmp = temp_name(target)
    try:
        with guard(target, written=lambda: folder_bytes(tmp)):
            target.parent.mkdir(parents=True, exist_ok=True)
            clear_stale(target)
            tmp.mkdir()
            yield tmp
            move_into_place(tmp, target, replace, refuse)
    except BaseException:
        remove(tmp)
        raise


def move_into_place(tmp: Path, final: Path, replace: bool,
                    refuse: Callable[[Path], Exception] | None = None) -> None:
    """Rename the complete `tmp` to `final`; an old `final` (with replace) is moved aside first, removed after."""
    if not exists(final):
        os.rename(tmp, final)
        return
    if not replace:
        raise (refuse or (lambda p: FileExistsError(f"{p} already exists")))(final)
    old = temp_name(final, "old")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    remove(old)


def install_dir(target: Path, build: Callable[[Path], None]) -> Path:
    """Run build(tmp) on a fresh folder beside `target`, then rename it into place; returns `target`.

    For caches several processes may fill at once (the converted default policy): the first rename wins,
    and a process that loses drops its own copy and uses the winner's.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    tmp.mkdir()
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            remove(tmp)  # another process got there first
    except BaseException:
        remove(tmp)
        raise
    return target
