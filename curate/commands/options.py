"""Options shared by several commands, so they mean the same thing everywhere (sqlite-utils' output_options).

A trainer's or a sampler's own knobs come from its config dataclass (curate.settings.click_options); these are
the ones every command shares: the workspace, quiet, the output format and file, --force.
"""

from __future__ import annotations

import functools

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
    """--format/-f, --output/-o, and --json (short for --format json), for commands that print rows."""

    command = f

    @functools.wraps(command)
    def with_json(*args, as_json: bool = False, **kwargs):
        if as_json:
            kwargs["fmt"] = "json"
        return command(*args, **kwargs)

    g = click.option("--json", "as_json", is_flag=True, help="The rows as JSON (the same as --format json).")(with_json)
    g = click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
                     help="Write to FILE instead of stdout.")(g)
    return click.option("--format", "-f", "fmt", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True,
                        help="Output format.")(g)


def json_option(f):
    """--json: the command's result as JSON on stdout (its human summary, if any, still goes to stderr)."""
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(f)


def param_option(help: str):
    """-p/--param NAME VALUE (repeatable): one form for every command that binds values; typed by parse_value."""

    def to_dict(ctx, param, value):
        from ..query import parse_value

        for name, v in value:
            if "=" in name:  # NAME=VALUE, another tool's habit: it would swallow the next option as the value
                raise click.BadParameter(f"write -p NAME VALUE (two words, e.g. -p {name.replace('=', ' ', 1)}), "
                                         f"not {name}.", ctx, param)
        return {name: parse_value(v) for name, v in value}

    return click.option("--param", "-p", "params", nargs=2, multiple=True, metavar="NAME VALUE", callback=to_dict,
                        help=help + " Repeatable; numbers, true/false and null are typed.")


def force_option(f):
    return click.option("--force", is_flag=True,
                        help="Replace an existing --output folder (only once the new model is complete).")(f)


def reward_mode_option(f):
    """--reward-mode final|dense: how an AVA reward model's per-token rewards become rewards (curate.train.reward)."""
    from ..train.reward import MODE_HELP, REWARD_MODES

    return click.option("--reward-mode", type=click.Choice(REWARD_MODES), default=None, help=MODE_HELP)(f)


def err(msg: str = "") -> None:
    """A line for people: stderr (stdout carries only data)."""
    click.echo(msg, err=True)


def emit(res, fmt: str, output: str | None, max_rows: int, width: int, quiet: bool = False) -> int:
    """Write a query result to --output FILE or stdout in --format; says where it went when it is a file."""
    import sys
    from pathlib import Path

    from ..query import write_result

    if not res.columns:
        return 0
    n = write_result(res, fmt, None if output else sys.stdout, Path(output) if output else None, max_rows, width,
                     quiet=quiet)
    if output and not quiet:
        err(f"wrote {n:,} rows to {output}")
    return n


def emit_frame(df, fmt: str, output: str | None, max_rows: int = 10_000, width: int = 40,
               quiet: bool = False) -> int:
    """emit() for a computed polars frame (reports, neighbours)."""
    from ..query import frame_result

    con, res = frame_result(df)
    try:
        return emit(res, fmt, output, max_rows, width, quiet)
    finally:
        con.close()
