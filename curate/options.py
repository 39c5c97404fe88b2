"""Options shared by several commands, so they mean the same thing everywhere."""

from __future__ import annotations

import click

from .query import OUTPUT_FORMATS


def workspace_option(f):
    return click.option(
        "--workspace",
        "-w",
        envvar="CURATE_WORKSPACE",
        default="workspace",
        show_default=True,
        type=click.Path(file_okay=False),
        help="Workspace folder (env CURATE_WORKSPACE).",
    )(f)


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries on stderr.")(f)


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
