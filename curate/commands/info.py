"""`curate info` (what a workspace holds) and `curate tables` (the table contract)."""

from __future__ import annotations

import json

import click

from .options import json_option, quiet_option, workspace_option


@click.command()
@workspace_option
@json_option
@quiet_option
def info(workspace, as_json, quiet):
    """Counts by source, subset, split and role; flags; rejects; table sizes."""
    from ..info import summary
    from ..workspace import Workspace

    s = summary(Workspace(workspace))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    from ..display import line, print_table

    line(f"workspace {s['workspace']}  ({s['ingests']} ingests)")
    print_table(["table", "rows"], [(name, f"{n:,}") for name, n in s["tables"].items()], title="tables")
    if s["pairs_by_source"]:
        print_table(["source", "subset", "split", "role", "pairs"],
                    [(r["source"], r["subset"], r["split"], r["role"], f"{r['pairs']:,}") for r in s["pairs_by_source"]],
                    title="pairs")
    if s["flags"]:
        print_table(["flag", "pairs"], [(k, f"{v:,}") for k, v in s["flags"].items()], title="flags")
    if s["rejects"]:
        print_table(["source", "reason", "rows"], [(r["source"], r["reason"], f"{r['rows']:,}") for r in s["rejects"]],
                    title="rejects")


@click.command()
@click.argument("name", required=False)
@workspace_option
@json_option
@quiet_option
def tables(name, workspace, as_json, quiet):
    """The documented tables and their columns (the contract users' SQL can rely on).

    The contract is the same in every workspace; with -w, that workspace's own tables (made with
    `curate sql --write`) are listed after it.
    """
    from ..tables import TABLES

    if name is not None and name not in TABLES:
        raise click.ClickException(f"unknown table {name!r}; the tables are {', '.join(TABLES)}.")
    chosen = [TABLES[name]] if name else list(TABLES.values())
    if as_json:
        click.echo(json.dumps({t.name: {"grain": t.grain, "filled_by": t.issue,
                                        "columns": [{"name": c.name, "type": c.type, "doc": c.doc} for c in t.columns]}
                               for t in chosen}, indent=2))
        return
    from ..display import line, print_table

    for t in chosen:
        print_table(["column", "type", "meaning"], [(c.name, c.type, c.doc) for c in t.columns],
                    title=f"{t.name}  (one row per {t.grain}; filled by {t.issue})", fold=("meaning",))
    own = _own_tables(workspace) if name is None and workspace is not None else []  # only for an explicit -w
    if own and not quiet:
        line(f"this workspace's own tables: {', '.join(own)}")


def _own_tables(workspace) -> list[str]:
    """Tables users made in the workspace's catalog (`curate sql --write`); none where there is no workspace."""
    from ..tables import TABLES
    from ..workspace import Workspace

    ws = Workspace(workspace)
    if not ws.exists:
        return []
    with ws.connect() as con:
        names = [r[0] for r in con.execute("select table_name from duckdb_tables() where not internal "
                                           "and table_name not like '\\_%' escape '\\' order by 1").fetchall()]
    return [n for n in names if n not in TABLES]
