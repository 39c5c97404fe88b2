"""Showing data to people: every table and line curate prints goes through here, and shows values literally.

Preference data is full of text that looks like markup to rich (`[image]`, `[a human person]`,
`<s>[INST] hi [/INST]`): rich would drop it or fail on it. Values become `rich.text.Text` objects, which rich
never parses, and the plain lines are printed with markup off. Colour comes only from `style=` arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

WIDE = 200  # the table width off a terminal (files, pipes, tests): wide enough that columns do not wrap


def console(file: IO[str] | None = None, stderr: bool = False, width: int | None = None):
    """A rich Console that never interprets markup or highlights numbers in what it prints."""
    from rich.console import Console

    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    tty = getattr(stream, "isatty", lambda: False)()
    return Console(file=stream, width=width or (None if tty else WIDE), markup=False, highlight=False,
                   emoji=False, soft_wrap=False)


def literal(value: Any, style: str | None = None):
    """A cell shown exactly as it is (rich.text.Text is never parsed for markup)."""
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value), style=style or "")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
          header: bool = True, max_width: int | None = None, styles: dict[int, str] | None = None,
          fold: Sequence[str] = ()):
    """A rich Table of literal cells. max_width cuts long cells with an ellipsis; fold wraps the named columns."""
    from rich import box
    from rich.table import Table

    t = Table(show_header=header, header_style="bold", title=literal(title) if title else None,
              title_justify="left", box=box.HEAVY_HEAD if header else None, pad_edge=header)
    for c in columns:
        t.add_column(literal(c), overflow="fold" if c in fold else "ellipsis", max_width=max_width)
    for row in rows:
        t.add_row(*(literal(v, (styles or {}).get(i)) for i, v in enumerate(row)))
    return t


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, file: IO[str] | None = None,
                stderr: bool = False, width: int | None = None, **kw) -> None:
    console(file, stderr, width).print(table(columns, rows, **kw))


def line(text: str, *, file: IO[str] | None = None, stderr: bool = False, style: str | None = None) -> None:
    """One line, literally (a verdict, a summary)."""
    console(file, stderr).print(literal(text, style))
