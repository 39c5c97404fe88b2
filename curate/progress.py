"""Progress bars on stderr (stdout is for data), silenced by --quiet."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator


@contextlib.contextmanager
def byte_progress(quiet: bool) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """Yields start(name, total_bytes) -> advance(n_bytes)."""
    if quiet:
        yield lambda name, total: (lambda n: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

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


@contextlib.contextmanager
def count_progress(quiet: bool, what: str, unit: str) -> Iterator[Callable[[int], Callable[[int], None]]]:
    """Yields start(total) -> advance(n), a bar with items/s and ETA."""
    if quiet:
        yield lambda total: (lambda n: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:

        def start(total: int):
            task = bar.add_task(what, total=total, rate="")
            t0 = time.perf_counter()
            done = [0]

            def advance(n: int):
                done[0] += n
                rate = done[0] / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=n, rate=f"{rate:,.0f} {unit}/s")

            return advance

        yield start


@contextlib.contextmanager
def generation_progress(quiet: bool) -> Iterator[Callable[[int, int], Callable[[int, int], None]]]:
    """Yields start(total_prompts, batches_done_before) -> advance(prompts, new_tokens): prompts/s, tokens/s, ETA."""
    if quiet:
        yield lambda total, before: (lambda n, tokens: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("prompts {task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:

        def start(total: int, before: int):
            task = bar.add_task("generating", total=total, rate="")
            t0 = time.perf_counter()
            done = [0, 0]

            def advance(n: int, tokens: int):
                done[0] += n
                done[1] += tokens
                dt = max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=n, rate=f"{done[0] / dt:,.1f}/s, {done[1] / dt:,.0f} tokens/s")

            return advance

        yield start
