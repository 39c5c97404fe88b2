"""Progress bars on stderr (stdout is for data), silenced by --quiet."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


@contextlib.contextmanager
def byte_progress(quiet: bool) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """Yields start(name, total_bytes) -> advance(n_bytes)."""
    if quiet:
        yield lambda name, total: (lambda n: None)
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:

        def start(name: str, total: int | None):
            task = bar.add_task(name, total=total)
            return lambda n: bar.advance(task, n)

        yield start
