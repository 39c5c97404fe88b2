"""Options shared by several commands, so they mean the same thing everywhere (sqlite-utils' output_options).

A trainer's or a sampler's own knobs come from its config dataclass (curate.settings.click_options); these are
the ones every command shares: the workspace, quiet, the output format and file, --force.
"""

from __future__ import annotations

import click

from ..query import OUTPUT_FORMATS
from ..settings import QUIET_HELP, WORKSPACE_HELP, group_workspace


def workspace_option(f):
    """-w/--workspace on a command; without it the group's `curate -w WS ...`, then CURATE_WORKSPACE, then
    ./workspace (resolved by curate.workspace.Workspace)."""
    return click.option("--workspace", "-w", default=None, type=click.Path(file_okay=False),
                        callback=group_workspace, help=WORKSPACE_HELP)(f)


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)(f)


def output_options(f):
    f = click.option(
        "--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write to FILE instead of stdout."
    )(f)
    f = click.option(
        "--format",
        "-f",
        "fmt",
        type=click.Choice(OUTPUT_FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)
    return f


def force_option(f):
    return click.option("--force", is_flag=True,
                        help="Replace an existing --output folder (only once the new model is complete).")(f)


def err(msg: str = "") -> None:
    """A line for people: stderr (stdout carries only data)."""
    click.echo(msg, err=True)


def emit(res, fmt: str, output: str | None, max_rows: int, width: int) -> int:
    """Write a query result to --output FILE or stdout in --format; says where it went when it is a file."""
    import sys
    from pathlib import Path

    from ..query import write_result

    if not res.columns:
        return 0
    n = write_result(res, fmt, None if output else sys.stdout, Path(output) if output else None, max_rows, width)
    if output:
        err(f"wrote {n:,} rows to {output}")
    return n
