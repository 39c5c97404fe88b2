"""`curate embed` and `curate score`."""

from __future__ import annotations

import dataclasses
import json

import click

from ..embedding import EmbedSettings
from ..engine import EngineSettings
from ..settings import click_options
from .options import json_option, quiet_option, workspace_option


@click.command()
@workspace_option
@click_options(EmbedSettings)
@click.option("--revision", default=None, help="Hub revision of --model.")
@click.option("--device", default=None, help="torch device, e.g. cuda or cpu (default: what torch picks).")
@click.option("--shard-size", type=int, default=2048, show_default=True, help="Texts per committed shard.")
@click.option("--limit", type=int, default=None, help="Embed at most N new texts (for a quick try).")
@click.option("--recalibrate", is_flag=True, help="With --backend auto: measure the backends again, even if this "
              "machine's choice is cached.")
@click_options(EngineSettings)
@json_option
@quiet_option
def embed(workspace, model, revision, backend, device, batch_size, shard_size, limit, recalibrate, as_json,
          quiet, **engine):
    """Embed pref responses and generations that have no vector yet for the model."""
    from ..embedding import embed as run
    from ..progress import count_progress, quiet_libraries
    from ..settings import build
    from ..workspace import Workspace

    quiet_libraries(quiet)  # transformers' own bars (loading the model for the one-time ONNX export)
    with count_progress(quiet, "embedding", "texts") as progress:
        r = run(Workspace(workspace), model, revision=revision, backend=backend, device=device,
                batch_size=batch_size, shard_size=shard_size, limit=limit, recalibrate=recalibrate,
                progress=progress, engine=build(EngineSettings, engine))
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(r), indent=2))
    if not quiet:
        how = r.backend
        source = (r.backend_choice or {}).get("source")
        if source == "measured":
            how += f", calibrated now in {r.backend_choice['calibration_seconds']:.1f} s"
        elif source == "cached":
            how += ", calibrated before"
        rate = f" in {r.seconds:.1f} s ({r.embedded / r.seconds:,.0f} texts/s, {how})" if r.embedded else ""
        click.echo(f"{r.model_id}: {r.distinct_texts:,} distinct texts, {r.cached:,} already embedded, "
                   f"{r.embedded:,} embedded now{rate}", err=True)
        if r.recovered:
            click.echo(f"  committed {r.recovered:,} vectors an interrupted --engine ray run had staged", err=True)
        if r.empty_skipped:
            click.echo(f"  skipped {r.empty_skipped:,} empty texts (see flags = 'empty_response')", err=True)


@click.command()
@workspace_option
@click.option("--iteration", "-i", type=int, required=True, help="FRFT iteration whose generations to score.")
@click.option("--branch", default="main", show_default=True, help="FRFT branch whose generations to score.")
@click.option("--model", "-m", default=None, help="Embedding model (default: the only one in the workspace).")
@json_option
@quiet_option
def score(workspace, iteration, branch, model, as_json, quiet):
    """Fill `similarities`: cos to the chosen and rejected response per pair."""
    from ..score import score as run
    from ..workspace import Workspace

    r = run(Workspace(workspace), iteration, branch, model)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(r), indent=2))
    if not quiet:
        click.echo(f"scored {r.pairs:,} pairs ({r.samples:,} samples) of branch {r.branch}, iteration "
                   f"{r.iteration} with {r.model_id}", err=True)
        skipped = [(r.empty_response_pairs, "pairs with an empty response"),
                   (r.no_generation, "pref pairs with no generation in this iteration"),
                   (r.empty_generations, "empty generations"), (r.not_pref, "generations for sft pairs")]
        for n, what in skipped:
            if n:
                click.echo(f"  not scored: {n:,} {what}", err=True)
