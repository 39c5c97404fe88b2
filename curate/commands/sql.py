"""`curate sql`: SQL over the workspace tables, read-only unless --write."""

from __future__ import annotations

from pathlib import Path

import click

from .options import emit, output_options, param_option, quiet_option, workspace_option


@click.command()
@click.argument("query", required=False)
@click.option("--file", "sql_file", type=click.Path(exists=True, dir_okay=False), help="Read the query from FILE.")
@param_option("Bind $NAME to VALUE.")
@click.option("--write", is_flag=True, help="Allow statements that change things (CREATE, COPY, ATTACH...).")
@click.option("--max-rows", type=int, default=100, show_default=True, help="Rows shown by --format table.")
@click.option("--width", type=int, default=60, show_default=True, help="Cell width for --format table.")
@workspace_option
@output_options
@quiet_option
def sql(query, sql_file, params, write, max_rows, width, workspace, fmt, output, quiet):
    """Run SQL over the workspace tables (read-only unless --write).

    \b
    Examples:
      curate sql "select role, count(*) from pairs group by role"
      curate sql "select count(*) from pairs where len(chosen) > $n" -p n 200 --format csv > out.csv
    """
    from ..query import run
    from ..workspace import Workspace

    if (query is None) == (sql_file is None):
        raise click.UsageError("give a QUERY or --file FILE (one of them).")
    text = Path(sql_file).read_text(encoding="utf-8") if sql_file else query
    ws = Workspace(workspace).require()  # before the lock, which would create a mistyped --workspace
    if write:
        with ws.lock("curate sql --write"):
            con, res = run(ws, text, params, write=True)
            with con:
                emit(res, fmt, output, max_rows, width, quiet)
    else:
        con, res = run(ws, text, params)
        with con:
            emit(res, fmt, output, max_rows, width, quiet)

