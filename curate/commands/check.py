"""`curate check`: is every live table file what its commit recorded; --repair sets damaged ones aside."""

from __future__ import annotations

import json

import click

from .options import json_option, quiet_option, workspace_option


@click.command()
@click.option("--repair", is_flag=True, help="Move damaged files into <workspace>/quarantine, drop them from the live "
              "state, record unverified files; then say what rebuilds them.")
@click.option("--quick", is_flag=True, help="Skip the SHA-256 (sizes, Parquet footers and schemas only).")
@workspace_option
@json_option
@quiet_option
@click.pass_context
def check(ctx, repair, quick, workspace, as_json, quiet):
    """Verify every table file is sound; exit 1 if one is damaged or missing.

    \b
    Each live file must have the size and SHA-256 its commit recorded, open as Parquet and have its table's
    columns.

    \b
    Each damaged table is reported with what depends on it and how to rebuild it. With --repair the damaged
    files are moved into <workspace>/quarantine/ (never deleted) and dropped from the live state, so every
    command works again; the report says which command recomputes them, or which sources to ingest again.
    """
    from ..check import TableCheck
    from ..check import check as run_check
    from ..check import repair as run_repair
    from ..workspace import Workspace

    ws = Workspace(workspace)
    result = run_check(ws, deep=not quick)
    if repair:
        found = result
        result = run_repair(ws, found)
        after = run_check(ws, deep=not quick)  # what the workspace is now; the advice is the damage found before
        after.repaired, after.quarantine = found.repaired, found.quarantine
        for name, tc in found.tables.items():
            if tc.problems:
                now = after.tables.setdefault(name, TableCheck(name))
                now.advice, now.affects = tc.advice, tc.affects
        result = after
        found_problems = found.problems
    else:
        found_problems = result.problems
    if as_json:
        out = result.as_dict()
        if repair:
            out["found"] = [p.as_dict() for p in found_problems]
        click.echo(json.dumps(out, indent=2))
    elif not quiet:
        _print(result, found_problems if repair else None)
    if not result.ok:
        ctx.exit(1)


def _print(result, found) -> None:
    from ..display import line, print_table

    rows = []
    for name, tc in sorted(result.tables.items()):
        state = "damaged" if tc.problems else ("unverified" if tc.unverified else "ok")
        rows.append((name, tc.files, len(tc.problems), len(tc.unverified), state))
    print_table(["table", "files", "damaged", "unverified", "state"], rows, title=f"workspace {result.workspace}")
    for p in result.problems:
        line(f"{p.table}: tables/{p.path}: {p.kind}: {p.detail}")
    for name, tc in sorted(result.tables.items()):
        if tc.problems or (found and any(p.table == name for p in found)):
            if tc.affects:
                line(f"{name} affects: {'; '.join(tc.affects)}")
            if tc.advice:
                line(f"{name}: to rebuild, {tc.advice}" if found else
                     f"{name}: `curate check --repair` sets the damaged files aside; then {tc.advice}")
    for done in result.repaired:
        line(f"repaired: {done}")
    unverified = sum(len(tc.unverified) for tc in result.tables.values())
    if unverified:
        line(f"{unverified} file(s) are unverified (written before curate recorded checksums): `curate check "
             "--repair` records them after checking that they open with their table's schema.")
    line("sound: every live file is what its commit recorded." if result.ok else
         f"{len(result.problems)} damaged or missing file(s).")
