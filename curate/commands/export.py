"""`curate export`: a subset as a dataset (folder, Parquet or JSONL) with its provenance, and/or on the Hub."""

from __future__ import annotations

import dataclasses
import json

import click

from ..export import FORMATS
from .options import err, json_option, quiet_option, workspace_option


@click.command("export")
@click.argument("subset")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="folder (default): a Hub dataset folder with a dataset card; parquet: one file with the "
                   "provenance in its metadata; jsonl: one file plus <file>.provenance.json.")
@click.option("--output", "-o", "to", type=click.Path(), default=None,
              help="Where to write (default: datasets_out/<subset>, or datasets_out/<subset>.<format>).")
@click.option("--to", "to_old", type=click.Path(), default=None, hidden=True,
              help="The old spelling of --output, still accepted.")
@click.option("--hub", "repo_id", default=None, metavar="REPO_ID",
              help="Push the dataset folder to this Hub dataset repo (token from HF_TOKEN or `hf auth login`). "
                   "Alone it writes no local copy; with --output or --format it does both.")
@click.option("--private", is_flag=True, help="With --hub: make the Hub repo private.")
@click.option("--force", is_flag=True, help="Replace an existing target (only once the new one is complete).")
@click.option("--margin", type=click.Choice(["strength"]), default=None,
              help="Add TRL's `margin` column: max(mean strength, 0) (Secrets of RLHF II, eq. 6), in each row's "
                   "orientation (a flipped row's mean is -mean).")
@click.option("--margin-scale", type=float, default=None, metavar="S",
              help="With --margin strength: the margin is max(mean, 0) times S.  [default: 1]")
@click.option("--strength", default=None, metavar="ID",
              help="With --margin strength: the strength identity (or a unique prefix; default: the latest).")
@workspace_option
@json_option
@quiet_option
def export(subset, fmt, to, to_old, repo_id, private, force, margin, margin_scale, strength, workspace, as_json,
           quiet):
    """Export a subset as a dataset for TRL's RewardTrainer, locally or to the Hub.

    One row per row of the subset, in rank order: prompt, chosen, rejected, pair_id, rank, score,
    picked_by, pos_sim, neg_sim, flipped (chosen and rejected are written swapped where it is true), and
    with --margin strength a margin; with the subset's provenance (dataset card, JSON, Parquet metadata).
    stdout gets the path written and/or the Hub URL (with --json, one JSON object); the summary goes to stderr.

    \b
    Examples:
      curate export frft-split-even-it1                          # datasets_out/frft-split-even-it1/
      curate export frft-split-even-it1 --format parquet --output rm.parquet
      curate export frft-split-even-it1 --hub me/frft-split-even --private
      curate export flip --margin strength --margin-scale 0.5    # TRL's margin from the mean strength
    """
    import tempfile
    from pathlib import Path

    from ..export import export_subset, push_to_hub
    from ..workspace import Workspace

    if private and not repo_id:
        raise click.UsageError("--private applies to --hub REPO_ID.")
    if margin is None and (margin_scale is not None or strength is not None):
        raise click.UsageError("--margin-scale and --strength apply to --margin strength.")
    margin_args = {"margin": margin, "margin_scale": 1.0 if margin_scale is None else margin_scale,
                   "strength": strength}
    to = to or to_old
    ws = Workspace(workspace)
    local = repo_id is None or fmt is not None or to is not None
    result = url = None
    if local:
        result = export_subset(ws, subset, fmt or "folder", to, force, repo_id=repo_id, **margin_args)
        if not quiet:
            _summary(result)
        if not as_json:
            click.echo(str(result.path))
    if repo_id:
        if result is not None and result.format == "folder":
            url = _push(push_to_hub, result.path, repo_id, private, result, quiet)
        else:
            with tempfile.TemporaryDirectory(prefix="curate-export-") as tmp:
                built = export_subset(ws, subset, "folder", Path(tmp) / "dataset", repo_id=repo_id, **margin_args)
                url = _push(push_to_hub, built.path, repo_id, private, built, quiet)
        if not as_json:
            click.echo(url)
    if as_json:
        out = {"url": url} | ({k: v for k, v in dataclasses.asdict(result).items() if k != "provenance"}
                             if result is not None else {})
        click.echo(json.dumps(out, indent=2, default=str))


def _push(push_to_hub, folder, repo_id, private, result, quiet) -> str:
    if not quiet:
        err(f"pushing {result.name} ({result.rows:,} rows) to the Hub dataset repo {repo_id}"
            + (" (private)" if private else "") + "...")
    url = push_to_hub(folder, repo_id, private, commit_message=f"curate export {result.name} ({result.subset_id})")
    if not quiet:
        err(f"pushed to {url}")
    return url


def _summary(r) -> None:
    twice = f", {r.picked_twice:,} picked by both halves (kept twice)" if r.picked_twice else ""
    err(f"exported {r.name}: {r.rows:,} rows ({r.distinct_pairs:,} distinct pairs{twice}) to {r.path} "
        f"({r.format}, {r.seconds:.2f} s)")
    flipped = r.provenance.get("flipped_rows", 0)
    if flipped:
        err(f"  {flipped:,} rows flipped: chosen and rejected are swapped in them")
    m = r.provenance.get("margin")
    if m and m.get("source") == "strength":
        err(f"  margin: max(mean, 0) * {m['scale']:g} from strength identity {m['identity']}")
    if r.replaced:
        err(f"  replaced the earlier {r.path}")
