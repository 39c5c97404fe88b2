"""`curate ingest`: preference pairs from files, folders, globs or hf:ID into the `pairs` table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from .options import err, json_option, quiet_option, workspace_option


@click.command()
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
@json_option
@quiet_option
def ingest(inputs, workspace, fmt, fields, sft_fraction, seed, skip_invalid, subset, split, revision, as_json, quiet):
    """Ingest preference pairs from files, folders, globs or hf:ID.

    \b
    Examples:
      curate ingest ../shared/data/hh-rlhf/harmless-base/test.jsonl.gz --sft-fraction 0.5
      curate ingest hf:Anthropic/hh-rlhf --subset helpful-base --split train
      curate ingest data/ --format explicit --field chosen=response_a --skip-invalid
    """
    from ..ingest import ingest as run_ingest
    from ..ingest import parse_fields
    from ..progress import byte_progress
    from ..workspace import Workspace

    ws = Workspace(workspace)
    with byte_progress(quiet) as progress:
        res = run_ingest(
            ws, list(inputs), fmt=fmt, fields=parse_fields(fields), sft_fraction=sft_fraction, seed=seed,
            skip_invalid=skip_invalid, subset=subset, split=split, revision=revision, progress=progress,
        )
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(res), indent=2, default=str))
    if not quiet:
        if not res.added and not res.already_present:
            why = "no row could be ingested (see the rejects)" if res.read else \
                f"{', '.join(Path(s['source']).name for s in res.sources)} has no rows"
            err(f"warning: nothing was ingested: {why}")
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
