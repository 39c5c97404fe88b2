"""Checkpoint folders that are never half-written: a trainer writes into a temporary sibling folder and
renames it into place only when the model and its record are complete. An existing checkpoint is kept
unless the caller asked to replace it (`--force`), and then it is replaced only once the new one is done.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from curate.errors import CurateError


def check_output(output: str | os.PathLike, overwrite: bool) -> Path:
    """The output folder, refusing one that already holds something unless overwrite."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise CurateError(f"--output {out} is a file, not a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CurateError(f"--output {out} already exists and is not empty: give another folder, or --force to "
                          "replace it (the old one is kept until the new model is complete).")
    return out


@contextmanager
def staged_output(output: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder to write the checkpoint into; on success it replaces `output`."""
    out = check_output(output, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
