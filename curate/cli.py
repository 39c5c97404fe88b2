"""The `curate` command line: each command parses options, calls one library function, prints.

Heavy libraries (polars, torch, sentence-transformers) are imported inside the commands that need
them, so `curate sql`, `info` and `tables` start in a fraction of a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import CurateError
from .options import output_options, quiet_option, workspace_option


def err(msg: str = "", **kw) -> None:
    click.echo(msg, err=True, **kw)


class CurateGroup(click.Group):
    """Turns library errors into one clear line, with no traceback for a user's mistake."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CurateError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            err("\ninterrupted: the workspace keeps its last committed state; rerun the command to finish.")
            sys.exit(130)


@click.group(cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
def main():
    """Data-centric filtering and curation of RLHF preference data (FRFT)."""


# -- ingest ---------------------------------------------------------------------------------
@main.command()
@click.argument("inputs", nargs=-1, required=True)
@workspace_option
@click.option("--format", "fmt", type=click.Choice(["hh", "explicit", "conversational"]), default=None,
              help="Input format (default: detected from the first row).")
@click.option("--field", "fields", multiple=True, metavar="NAME=KEY",
              help="Read NAME (prompt, chosen, rejected) from the input field KEY. Repeatable.")
@click.option("--sft-fraction", type=float, default=0.0, show_default=True,
              help="Share of pairs given role 'sft' (the paper uses 0.5); the rest are 'pref'.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sft/pref assignment.")
@click.option("--skip-invalid", is_flag=True, help="Ingest the good rows; record bad ones in `rejects`.")
@click.option("--subset", default=None, help="Subset name (hf: the data_dir, e.g. helpful-base). "
              "Default for files: the parent folder's name.")
@click.option("--split", default=None, help="Split name (hf: default train). Default for files: the file's stem.")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit) for hf:ID.")
@quiet_option
def ingest(inputs, workspace, fmt, fields, sft_fraction, seed, skip_invalid, subset, split, revision, quiet):
    """Ingest preference pairs from files, folders, globs or hf:ID.

    \b
    Examples:
      curate ingest ../shared/data/hh-rlhf/harmless-base/test.jsonl.gz --sft-fraction 0.5
      curate ingest hf:Anthropic/hh-rlhf --subset helpful-base --split train
      curate ingest data/ --format explicit --field chosen=response_a --skip-invalid
    """
    from .ingest import ingest as run_ingest, parse_fields
    from .progress import byte_progress
    from .workspace import Workspace

    ws = Workspace(workspace)
    with byte_progress(quiet) as progress:
        res = run_ingest(
            ws, list(inputs), fmt=fmt, fields=parse_fields(fields), sft_fraction=sft_fraction, seed=seed,
            skip_invalid=skip_invalid, subset=subset, split=split, revision=revision, progress=progress,
        )
    if not quiet:
        rejected = sum(res.rejected.values())
        err(f"read {res.read:,} rows: {res.added:,} new pairs, {res.already_present:,} already in the workspace, "
            f"{rejected:,} rejected")
        if res.rejected:
            err("  rejects: " + ", ".join(f"{k} {v:,}" for k, v in sorted(res.rejected.items()))
                + "  (see: curate sql \"select * from rejects\")")
        if res.flags:
            err("  flagged: " + ", ".join(f"{k} {v:,}" for k, v in sorted(res.flags.items())))
        if res.roles:
            err("  roles: " + ", ".join(f"{k} {v:,}" for k, v in sorted(res.roles.items())))
        err(f"  workspace: {ws.root}  manifest: {Path(res.manifest).name}")


# -- info, tables ---------------------------------------------------------------------------
@main.command()
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(workspace, as_json):
    """Counts by source, subset, split and role; flags; rejects; table sizes."""
    from .info import summary
    from .workspace import Workspace

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


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the contract as JSON.")
def tables(name, as_json):
    """The documented tables and their columns (the contract users' SQL can rely on)."""
    from .tables import TABLES

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


# -- sql ------------------------------------------------------------------------------------
@main.command()
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
    from .query import parse_value, run
    from .workspace import Workspace

    if (query is None) == (sql_file is None):
        raise click.UsageError("give a QUERY or --file FILE (one of them).")
    text = Path(sql_file).read_text(encoding="utf-8") if sql_file else query
    ws = Workspace(workspace).require()  # before the lock, which would create a mistyped --workspace
    bound = {k: parse_value(v) for k, v in params}
    if write:
        with ws.lock("curate sql --write"):
            con, res = run(ws, text, bound, write=True)
            _emit(res, fmt, output, max_rows, width)
            con.close()
    else:
        con, res = run(ws, text, bound)
        _emit(res, fmt, output, max_rows, width)
        con.close()


def _emit(res, fmt, output, max_rows, width):
    from .query import write_result

    if not res.columns:
        return
    n = write_result(res, fmt, None if output else sys.stdout, Path(output) if output else None, max_rows, width)
    if output:
        err(f"wrote {n:,} rows to {output}")


def _register() -> None:
    """Commands that live in curate/commands/ (each imports only click at module level)."""
    from .commands.embed import embed, score
    from .commands.export import export
    from .commands.filter import explain, filter_, subsets
    from .commands.generate import generate
    from .commands.generations import generations
    from .commands.neighbors import neighbors
    from .commands.report import report
    from .commands.run import run, runs
    from .commands.train import eval_, train

    for cmd in (generations, generate, embed, score, neighbors, filter_, subsets, explain, report, export, train,
                eval_, run, runs):
        main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
