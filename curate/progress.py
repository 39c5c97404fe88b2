"""Progress on stderr (stdout is for data), in one style, for every long step.

Bars show on a terminal; off one (a pipe, a log file, CI) they would be garbled control codes, so they are off
unless asked for with CURATE_PROGRESS=1. --quiet turns them off everywhere. The libraries' own bars (transformers'
weight loading, the Trainer's tqdm, huggingface_hub downloads) follow the same rule, and the Trainer's metric
dictionaries become curate's bar (curate.train.checkpoint.TrainerProgress).

    with counter(quiet, "embedding", "texts") as start:
        advance = start(total)
        advance(32)           # 32 more done
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterator


def enabled(quiet: bool) -> bool:
    """Whether bars are shown: not --quiet, and stderr is a terminal (or CURATE_PROGRESS=1 asks for them)."""
    if quiet:
        return False
    forced = os.environ.get("CURATE_PROGRESS", "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty()


def quiet_libraries(quiet: bool) -> None:
    """Silence transformers', huggingface_hub's and datasets' own bars where curate's are off. The environment
    covers libraries not imported yet (transformers reads huggingface_hub's switch at import); those already
    imported are switched off directly. Nothing is imported here: a step that loads no model stays fast."""
    if enabled(quiet):
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"  # plain tqdm bars (transformers' GGUF conversion), where tqdm is imported later
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:  # the trainers' dataset maps ("Dropping fully masked examples ...")
        sys.modules["datasets"].disable_progress_bars()


@contextlib.contextmanager
def _bars(quiet: bool, columns: Callable[[], tuple]) -> Iterator[object | None]:
    """A rich Progress with columns() between the bar and the time left; None (and rich not imported: a tenth of a
    second of start-up) when bars are off."""
    if not enabled(quiet):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    # descriptions are file names and labels: shown literally (markup=False), never parsed as rich markup
    with Progress(TextColumn("{task.description}", markup=False, style="bold"), BarColumn(), *columns(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        yield bar


@contextlib.contextmanager
def byte_progress(quiet: bool) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """Yields start(name, total_bytes) -> advance(n_bytes): one bar per input file."""
    def columns():
        from rich.progress import DownloadColumn, TransferSpeedColumn

        return DownloadColumn(), TransferSpeedColumn()

    with _bars(quiet, columns) as bar:
        if bar is None:
            yield lambda name, total: (lambda n: None)
            return

        def start(name: str, total: int | None):
            task = bar.add_task(name, total=total)
            return lambda n: bar.advance(task, n)

        yield start


@contextlib.contextmanager
def stage_progress(quiet: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Yields start(label, total) -> advance(n): one counted bar per stage of a step (embedding, fitting)."""
    def columns():
        from rich.progress import MofNCompleteColumn

        return (MofNCompleteColumn(),)

    with _bars(quiet, columns) as bar:
        if bar is None:
            yield lambda label, total: (lambda n: None)
            return

        def start(label: str, total: int):
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield start


@contextlib.contextmanager
def counter(quiet: bool, what: str, unit: str,
            extra: Callable[[float, dict, dict], str] | None = None) -> Iterator[Callable[..., Callable[..., None]]]:
    """Yields start(total, done=0) -> advance(n, **measures): a bar with items/s and ETA; extra(seconds, sums of
    the measures, their last values) adds to the line (tokens/s, the latest reward)."""
    def columns():
        from rich.progress import MofNCompleteColumn

        return MofNCompleteColumn(), _rate_column()

    with _bars(quiet, columns) as bar:
        if bar is None:
            yield lambda total, done=0: (lambda n, **measures: None)
            return

        def start(total: int, done: int = 0):
            task = bar.add_task(what, total=total, completed=done, rate="")
            t0, count, sums, last = time.perf_counter(), [0], {}, {}

            def advance(n: int, **measures):
                count[0] += n
                for k, v in measures.items():
                    sums[k] = sums.get(k, 0) + v
                last.update(measures)
                dt = max(time.perf_counter() - t0, 1e-9)
                rate = f"{count[0] / dt:,.1f} {unit}/s" + (f", {extra(dt, sums, last)}" if extra else "")
                bar.update(task, advance=n, rate=rate)

            return advance

        yield start


def count_progress(quiet: bool, what: str, unit: str):
    """A counter whose start(total) -> advance(n) (embed: texts)."""
    return counter(quiet, what, unit)


@contextlib.contextmanager
def generation_progress(quiet: bool) -> Iterator[Callable[[int, int], Callable[[int, int], None]]]:
    """A counter of prompts that also shows new tokens/s: start(total, batches_done_before) -> advance(prompts,
    new_tokens)."""
    def tokens_per_s(seconds: float, sums: dict, last: dict) -> str:
        return f"{sums.get('tokens', 0) / seconds:,.0f} tokens/s"

    with counter(quiet, "generating", "prompts", tokens_per_s) as start:

        def begin(total: int, before: int):
            advance = start(total)
            return lambda n, tokens: advance(n, tokens=tokens)

        yield begin


def _rate_column():
    """The task's `rate` field (set by advance), as a rich column."""
    from rich.progress import TextColumn

    return TextColumn("{task.fields[rate]}", markup=False)
