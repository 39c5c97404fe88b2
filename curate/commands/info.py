"""`curate info` (what a workspace holds) and `curate tables` (the table contract)."""

from __future__ import annotations

import json

import click

from .options import workspace_option


@click.command()
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(workspace, as_json):
    """Counts by source, subset, split and role; flags; rejects; table sizes."""
    from ..info import summary
    from ..workspace import Workspace

    s = summary(Workspace(workspace))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]workspace[/] {s['workspace']}  ({s['ingests']} ingests)")
    t = Table("table", "rows", title="tables", title_justify="left")
    for name, n in s["tables"].items():
        t.add_row(name, f"{n:,}")
    con.print(t)
    if s["pairs_by_source"]:
        t = Table("source", "subset", "split", "role", "pairs", title="pairs", title_justify="left")
        for r in s["pairs_by_source"]:
            t.add_row(r["source"], str(r["subset"]), str(r["split"]), r["role"], f"{r['pairs']:,}")
        con.print(t)
    if s["flags"]:
        t = Table("flag", "pairs", title="flags", title_justify="left")
        for k, v in s["flags"].items():
            t.add_row(k, f"{v:,}")
        con.print(t)
    if s["rejects"]:
        t = Table("source", "reason", "rows", title="rejects", title_justify="left")
        for r in s["rejects"]:
            t.add_row(r["source"], r["reason"], f"{r['rows']:,}")
        con.print(t)


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the contract as JSON.")
def tables(name, as_json):
    """The documented tables and their columns (the contract users' SQL can rely on)."""
    from ..tables import TABLES

    if name is not None and name not in TABLES:
        raise click.ClickException(f"unknown table {name!r}; the tables are {', '.join(TABLES)}.")
    chosen = [TABLES[name]] if name else list(TABLES.values())
    if as_json:
        click.echo(json.dumps({t.name: {"grain": t.grain, "filled_by": t.issue,
                                        "columns": [{"name": c.name, "type": c.type, "doc": c.doc} for c in t.columns]}
                               for t in chosen}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    for t in chosen:
        tab = Table("column", "type", "meaning", title=f"{t.name}  (one row per {t.grain}; filled by {t.issue})",
                    title_justify="left")
        for c in t.columns:
            tab.add_row(c.name, c.type, c.doc)
        con.print(tab)
