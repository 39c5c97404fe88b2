"""`curate train rm|sft|ppo`: the trainers' options come from their config dataclasses."""

from __future__ import annotations

import json

import click

from ..settings import build, click_options
from ..train.ppo import PPOConfig
from ..train.rm import RMConfig
from ..train.sft import SFTConfig
from .options import err, json_option


@click.group("train")
def train():
    """Train the SFT policy, the reward model and the PPO policy on workspace data."""


@train.command("rm")
@click_options(RMConfig)
@json_option
def rm(as_json, **values):
    """Train a reward model on a subset: Bradley-Terry, contrastive, MetaRM or AVA.

    The ranking loss (Bradley-Terry with margin and label smoothing, or AVA-p), plus an optional contrastive term
    (SimCSE or SwAV), with an optional MetaRM meta step; curate/train/rm_trainer.py composes them.

    \b
    Examples:
      curate train rm --base checkpoints/sft --subset frft-split-even-it1 --output checkpoints/rm-it1
      curate train rm --base checkpoints/rm-it1 --data datasets_out/frft-split-even-it2 -o checkpoints/rm-it2
      curate train rm --base smollm2-135m --subset frft-positive-it1 -o checkpoints/rm-smol
      curate train rm --base checkpoints/sft --subset flip --margin strength --smooth-incorrect 0.1 -o rm-flip
      curate train rm --base checkpoints/sft --subset S -o rm-cl --contrastive simcse --contrastive-weight 1.0
      curate train rm --base checkpoints/sft --subset S -o rm-meta --meta --shifted-generations it2
      curate train rm --base checkpoints/sft --subset S -o rm-ava --objective ava   # then --reward-mode final|dense
    """
    from ..train.rm import train_rm

    config = build(RMConfig, values)
    if (config.subset is None) == (config.data is None):
        raise click.UsageError("give --subset NAME or --data PATH (one of them).")
    r = train_rm(config)
    if not config.quiet:
        acc = f", accuracy {r.metrics['accuracy']:.3f}" if "accuracy" in r.metrics else ""
        err(f"trained on {r.trained_rows:,} of {r.rows:,} rows ({r.dropped_long:,} dropped as too long, "
            f"{r.truncated:,} truncated): loss {r.metrics['train_loss']:.4f}{acc}, {r.seconds:.1f} s")
    _result(r, as_json)


@train.command("sft")
@click_options(SFTConfig)
@json_option
def sft(as_json, **values):
    """Fine-tune a causal LM on the sft pairs (TRL SFTTrainer).

    Each row is the prompt and its chosen response, the loss on the response.

    \b
    Examples:
      curate train sft --model smollm2-135m --output checkpoints/sft --split train
      curate train sft --model HuggingFaceTB/SmolLM2-135M --output checkpoints/sft -w workspace
    """
    from ..train.sft import train_sft

    config = build(SFTConfig, values)
    r = train_sft(config)
    if not config.quiet:
        steps = r.metrics["steps"]
        err(f"fine-tuned for {steps:,} step{'s' * (steps != 1)} on {r.metrics['rows_seen']:,} rows (of {r.rows:,} "
            f"sft pairs, {r.truncated:,} truncated): loss {r.metrics['train_loss']:.4f}, {r.seconds:.1f} s")
    _result(r, as_json)


def _result(r, as_json: bool) -> None:
    """stdout: the checkpoint's folder, or with --json what the trainer recorded about it."""
    if as_json:
        click.echo(json.dumps({"output": str(r.output), "seconds": round(r.seconds, 3), **r.record}, indent=2,
                              default=str))
    else:
        click.echo(str(r.output))


@train.command("ppo")
@click_options(PPOConfig)
@json_option
def ppo(as_json, **values):
    """Train a policy with PPO against a reward model (curate/train/ppo.py).

    Every knob of PPOConfig is an option; one JSON line per step goes to stdout (with --json, one JSON object
    at the end instead: the checkpoint and the per-step log).

    \b
    Example:
      curate train ppo --policy checkpoints/sft --reward checkpoints/rm-it1 --output checkpoints/ppo-it1
    """
    from ..train.ppo import train_ppo

    config = build(PPOConfig, values)
    result = train_ppo(config, on_step=None if as_json else (lambda row: click.echo(json.dumps(row))))
    if as_json:
        click.echo(json.dumps({"output": str(result.output), "step": result.step, "history": result.history}, indent=2))
    if not config.quiet:
        err(f"trained to step {result.step}; checkpoint in {result.output}")
