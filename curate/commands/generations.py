"""`curate generations import|list`: bring a policy's samples into the workspace and see what is there."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import emit, err, json_option, output_options, param_option, quiet_option, workspace_option


@click.group()
def generations():
    """Policy generations per branch and iteration (the `generations` table)."""


@generations.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--iteration", "-i", type=int, required=True, help="FRFT iteration the samples belong to (from 1).")
@click.option("--policy", required=True, help="Policy name or checkpoint id that wrote the samples.")
@click.option("--branch", default="main", show_default=True, help="FRFT branch (one per strategy in FRFT(alpha)).")
@click.option("--match", type=click.Choice(["auto", "pair_id", "prompt"]), default="auto", show_default=True,
              help="Match rows to pairs by pair_id or by the exact prompt text (auto: pair_id if the rows "
                   "have it, else prompt).")
@click.option("--text-field", default=None, metavar="KEY",
              help="Read the generation from KEY (default: 'generation', else 'text').")
@param_option("Sampling parameter stored with every row (e.g. -p temperature 0.7); a row's own fields "
              "(temperature, top_k, ...) take precedence.")
@click.option("--overwrite", is_flag=True,
              help="Replace the generations (branch, iteration) already has, whatever their policy.")
@workspace_option
@json_option
@quiet_option
def import_(path, iteration, policy, branch, match, text_field, params, overwrite, workspace, as_json, quiet):
    """Import generations from a JSONL(.gz) or Parquet file, one per row.

    Rows carry `pair_id` or `prompt`, the text in `generation` or `text` (a list for several samples),
    and optionally `sample` and sampling parameters. Rows that match no pair, have no text or do not
    parse go to the `rejects` table with a reason.

    \b
    Examples:
      curate generations import ../shared/data/hh-rlhf/harmless-base/test.generations.smollm2-135m.jsonl \\
          --iteration 1 --policy smollm2-135m
      curate generations import out.parquet -i 2 --branch rm2 --policy ckpt-ab12 -p temperature 0.7
    """
    import dataclasses

    from ..generations import import_generations
    from ..workspace import Workspace

    ws = Workspace(workspace)
    res = import_generations(ws, path, iteration=iteration, policy=policy, branch=branch, match=match,
                             text_field=text_field, params=params, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(res) | {"unmatched": res.unmatched}, indent=2, default=str))
    if quiet:
        return
    if not res.imported and not res.already_present:
        why = f"{Path(res.source).name} has no rows" if not res.read else "no row could be imported (see the rejects)"
        err(f"warning: nothing was imported: {why}")
    line = (f"imported {res.imported:,} generations for {res.pairs:,} pairs "
            f"(branch {res.branch}, iteration {res.iteration}, policy {res.policy}, matched by {res.match})")
    if res.unmatched:
        line += f"; {res.unmatched:,} row{'s' if res.unmatched != 1 else ''} unmatched -> rejects"
    err(line)
    if res.already_present:
        err(f"  {res.already_present:,} already in the workspace (not imported again)")
    if res.shared_prompts:
        err(f"  {res.shared_prompts:,} prompts are shared by several pairs: their {res.shared_rows:,} generations "
            f"went to each of those pairs (+{res.shared_extra:,} rows)")
    if res.replaced:
        err(f"  replaced {res.replaced:,} earlier generations (policy {', '.join(res.replaced_policies)})")
    if res.rejected:
        err("  rejects: " + ", ".join(f"{k} {v:,}" for k, v in sorted(res.rejected.items()))
            + f"  (see: curate sql \"select * from rejects where source = '{_sql_str(res.source)}'\")")
    err(f"  workspace: {ws.root}  manifest: {Path(res.manifest).name}")


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


@generations.command("list")
@workspace_option
@output_options
@quiet_option
def list_(workspace, fmt, output, quiet):
    """Count generations per branch, iteration and policy.

    Columns: generations (rows), pairs (distinct pairs), max_samples (most samples of one pair).
    """
    from ..generations import LIST_SQL
    from ..query import run
    from ..workspace import Workspace

    ws = Workspace(workspace).require()
    con, res = run(ws, LIST_SQL)
    with con:
        emit(res, fmt, output, 1000, 60, quiet)
