"""`curate sql`: SQL over the workspace tables, read-only unless --write."""

from __future__ import annotations

from pathlib import Path

import click

from .options import emit, output_options, workspace_option


@click.command()
@click.argument("query", required=False)
@click.option("--file", "sql_file", type=click.Path(exists=True, dir_okay=False), help="Read the query from FILE.")
@click.option("--param", "-p", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Bind $NAME to VALUE (numbers, true/false and null are typed). Repeatable.")
@click.option("--write", is_flag=True, help="Allow statements that change things (CREATE, COPY, ATTACH...).")
@click.option("--max-rows", type=int, default=100, show_default=True, help="Rows shown by --format table.")
@click.option("--width", type=int, default=60, show_default=True, help="Cell width for --format table.")
@workspace_option
@output_options
def sql(query, sql_file, params, write, max_rows, width, workspace, fmt, output):
    """Run SQL over the workspace tables (read-only unless --write).

    \b
    Examples:
      curate sql "select role, count(*) from pairs group by role"
      curate sql --file q.sql -p min_len 20 --format csv > out.csv
    """
    from ..query import parse_value, run
    from ..workspace import Workspace

    if (query is None) == (sql_file is None):
        raise click.UsageError("give a QUERY or --file FILE (one of them).")
    text = Path(sql_file).read_text(encoding="utf-8") if sql_file else query
    ws = Workspace(workspace).require()  # before the lock, which would create a mistyped --workspace
    bound = {k: parse_value(v) for k, v in params}
    if write:
        with ws.lock("curate sql --write"):
            con, res = run(ws, text, bound, write=True)
            emit(res, fmt, output, max_rows, width)
            con.close()
    else:
        con, res = run(ws, text, bound)
        emit(res, fmt, output, max_rows, width)
        con.close()

