"""The `curate` command line: the group, its global options, and the commands of curate/commands/.

Each command parses options, calls one library function, and prints. Heavy libraries (polars, torch,
sentence-transformers) are imported inside the commands that need them, so `curate sql`, `info` and `tables`
start in a fraction of a second.
"""

from __future__ import annotations

import click

from . import __version__
from .settings import FriendlyErrors


class CurateGroup(FriendlyErrors, click.Group):
    """Library errors become one clear line, with no traceback for a user's mistake."""


@click.group(cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "-w", default=None, type=click.Path(file_okay=False),
              help="Workspace for the command (its own -w wins; default: env CURATE_WORKSPACE, else ./workspace).")
@click.version_option(__version__, prog_name="curate")
def main(workspace):
    """Data-centric filtering and curation of RLHF preference data (FRFT)."""


def _register() -> None:
    """Commands that live in curate/commands/ (each imports only click at module level)."""
    from .commands.embed import embed, score
    from .commands.export import export
    from .commands.filter import explain, filter_, subsets
    from .commands.generate import generate
    from .commands.generations import generations
    from .commands.info import info, tables
    from .commands.ingest import ingest
    from .commands.neighbors import neighbors
    from .commands.report import report
    from .commands.run import run, runs
    from .commands.sql import sql
    from .commands.train import eval_, train

    for cmd in (ingest, info, tables, sql, generations, generate, embed, score, neighbors, filter_, subsets, explain,
                report, export, train, eval_, run, runs):
        main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
