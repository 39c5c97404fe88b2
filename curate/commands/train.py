"""`curate train rm|sft|ppo` and `curate eval rm`: thin wrappers over train.rm, train.sft and train.ppo."""

from __future__ import annotations

import functools
import json

import click

from ..errors import CurateError
from .options import err, force_option, quiet_option, workspace_option


def user_errors(f):
    """CurateError as a one-line message also when the command runs alone (`python -m train.rm`)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except CurateError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


@click.group("train")
def train():
    """Train the SFT policy, the reward model and the PPO policy on workspace data."""


@train.command("rm")
@click.option("--base", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder to start from: a causal-LM SFT checkpoint (a reward head is added) or a previous "
                   "reward model.")
@click.option("--subset", default=None, help="Train on this subset of the workspace (name or subset_id).")
@click.option("--data", default=None, type=click.Path(exists=True),
              help="Train on an exported folder, .parquet or .jsonl instead (columns prompt, chosen, rejected[, "
                   "margin]).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for the reward model and its curate_train.json.")
@click.option("--lr", type=float, default=9e-6, show_default=True, help="Learning rate (the FRFT paper's).")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="Training epochs.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Pairs per device per step.")
@click.option("--max-length", type=int, default=1024, show_default=True,
              help="Longest transcript (prompt + response + eos) in tokens.")
@click.option("--long-rows", type=click.Choice(["drop", "truncate"]), default="drop", show_default=True,
              help="Rows over --max-length: drop them (counted and reported) or cut the prompt from the left.")
@click.option("--margin/--no-margin", "use_margin", default=True, show_default=True,
              help="Use the data's `margin` column as the loss margin when it has one.")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True,
              help="a in -(1-a) log sigma(d) - a log sigma(-d) (0: plain Bradley-Terry).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the head's init and the shuffling.")
@click.option("--bf16", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="bfloat16 autocast: auto where the GPU or CPU has bfloat16 instructions.")
@click.option("--activation-checkpointing/--no-activation-checkpointing", default=True, show_default=True,
              help="Recompute activations in the backward pass: about half the memory for a little more compute.")
@force_option
@workspace_option
@quiet_option
@user_errors
def rm(base, subset, data, output, lr, epochs, batch_size, max_length, long_rows, use_margin, label_smoothing,
       seed, bf16, activation_checkpointing, force, workspace, quiet):
    """Train a Bradley-Terry reward model on a subset (TRL RewardTrainer).

    \b
    Examples:
      curate train rm --base checkpoints/sft --subset frft-split-even-it1 --output checkpoints/rm-it1
      curate train rm --base checkpoints/rm-it1 --data datasets_out/frft-split-even-it2 -o checkpoints/rm-it2
    """
    from train.rm import RMConfig, train_rm

    if (subset is None) == (data is None):
        raise click.UsageError("give --subset NAME or --data PATH (one of them).")
    r = train_rm(RMConfig(base=base, output=output, subset=subset, workspace=workspace, data=data,
                          learning_rate=lr, epochs=epochs, batch_size=batch_size, max_length=max_length,
                          long_rows=long_rows, use_margin=use_margin, label_smoothing=label_smoothing, seed=seed,
                          bf16=bf16, activation_checkpointing=activation_checkpointing, overwrite=force,
                          quiet=quiet))
    if not quiet:
        acc = f", accuracy {r.metrics['accuracy']:.3f}" if "accuracy" in r.metrics else ""
        err(f"trained on {r.trained_rows:,} of {r.rows:,} rows ({r.dropped_long:,} dropped as too long, "
            f"{r.truncated:,} truncated): loss {r.metrics['train_loss']:.4f}{acc}, {r.seconds:.1f} s")
    click.echo(str(r.output))


@train.command("sft")
@click.option("--model", required=True, help="Causal LM to fine-tune (folder or Hub id).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for the checkpoint and its curate_train.json.")
@click.option("--lr", type=float, default=2e-5, show_default=True, help="Learning rate (TRL SFTConfig's default).")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="Training epochs.")
@click.option("--max-steps", type=int, default=-1, show_default=True, help="Stop after N steps (-1: use --epochs).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Rows per device per step.")
@click.option("--max-length", type=int, default=1024, show_default=True,
              help="Longest sequence in tokens; longer ones are truncated (and counted).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffling.")
@click.option("--activation-checkpointing/--no-activation-checkpointing", default=True, show_default=True,
              help="Recompute activations in the backward pass: about half the memory for a little more compute.")
@force_option
@workspace_option
@quiet_option
@user_errors
def sft(model, output, lr, epochs, max_steps, batch_size, max_length, seed, activation_checkpointing, force,
        workspace, quiet):
    """Fine-tune a causal LM on the sft pairs (TRL SFTTrainer).

    Each row is the prompt and its chosen response, the loss on the response.

    \b
    Example:
      curate train sft --model HuggingFaceTB/SmolLM2-135M --output checkpoints/sft -w workspace
    """
    from train.sft import SFTRunConfig, train_sft

    r = train_sft(SFTRunConfig(model=model, output=output, workspace=workspace, learning_rate=lr, epochs=epochs,
                               max_steps=max_steps, batch_size=batch_size, max_length=max_length, seed=seed,
                               activation_checkpointing=activation_checkpointing, overwrite=force, quiet=quiet))
    if not quiet:
        err(f"fine-tuned on {r.rows:,} sft pairs ({r.truncated:,} truncated): loss {r.metrics['train_loss']:.4f}, "
            f"{r.metrics['steps']} steps, {r.seconds:.1f} s")
    click.echo(str(r.output))


@train.command("ppo")
@click.option("--policy", required=True, help="Policy to train: an SFT checkpoint folder, a Hub id or a curate policy spec.")
@click.option("--reward", required=True, type=click.Path(exists=True, file_okay=False),
              help="Reward model folder (from `curate train rm`).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for checkpoints, log.jsonl and curate_train.json (a rerun resumes from it).")
@click.option("--reference", default=None,
              help="Frozen KL reference (default: the initial --policy). FRFT's later iterations continue from the "
                   "previous PPO policy and keep the SFT model here.")
@click.option("--prompts", "prompts_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A .jsonl with a `prompt` field (default: the distinct prompts of the workspace's pref pairs).")
@click.option("--steps", type=int, default=100, show_default=True, help="PPO steps (rollout + update).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Prompts per step.")
@click.option("--mini-batch-size", type=int, default=16, show_default=True, help="Rows per PPO minibatch.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True, help="Longest sampled response.")
@click.option("--kl-coef", type=float, default=0.02, show_default=True, help="KL penalty beta (InstructGPT's).")
@click.option("--actor-lr", type=float, default=5e-6, show_default=True, help="Policy learning rate.")
@click.option("--critic-lr", type=float, default=9e-6, show_default=True, help="Value head learning rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of sampling and prompt order.")
@workspace_option
@quiet_option
@user_errors
def ppo(policy, reward, output, reference, prompts_file, steps, batch_size, mini_batch_size, max_new_tokens, kl_coef,
        actor_lr, critic_lr, seed, workspace, quiet):
    """Train a policy with PPO against a reward model (train/ppo.py).

    Every knob of train.ppo.PPOConfig is an option of `python -m train.ppo`; this command sets the
    common ones. One JSON line per step goes to stdout.

    \b
    Example:
      curate train ppo --policy checkpoints/sft --reward checkpoints/rm-it1 --output checkpoints/ppo-it1
    """
    from train.ppo import PPOConfig, train_ppo

    config = PPOConfig(policy=policy, reward=reward, output=output, reference=reference, prompts_file=prompts_file,
                       workspace=None if prompts_file else workspace, steps=steps, batch_size=batch_size,
                       mini_batch_size=mini_batch_size, max_new_tokens=max_new_tokens, kl_coef=kl_coef,
                       actor_lr=actor_lr, critic_lr=critic_lr, seed=seed, quiet=quiet)
    result = train_ppo(config, on_step=lambda row: click.echo(json.dumps(row)))
    if not quiet:
        err(f"trained to step {result.step}; checkpoint in {result.output}")


@click.group("eval")
def eval_():
    """Evaluate trained models on held-out pairs."""


@eval_.command("rm")
@click.option("--reward", required=True, type=click.Path(exists=True, file_okay=False),
              help="Reward model folder (from `curate train rm`).")
@click.option("--where", default=None, metavar="SQL",
              help="Evaluate on the pairs matching this predicate on `pairs` (default: split = 'test').")
@click.option("--subset", default=None, help="Evaluate on the pairs of this subset instead.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Pairs per forward pass.")
@click.option("--max-length", type=int, default=1024, show_default=True,
              help="Longer transcripts keep their last N tokens (the prompt is cut from the left).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@workspace_option
@user_errors
def eval_rm(reward, where, subset, batch_size, max_length, as_json, workspace):
    """Accuracy and mean margin of a reward model on held-out pairs.

    Accuracy counts r_chosen > r_rejected; the margin is r_chosen - r_rejected.

    \b
    Examples:
      curate eval rm --reward checkpoints/rm-it1                      # pairs with split = 'test'
      curate eval rm --reward checkpoints/rm-it1 --where "subset = 'helpful-base'" --json
    """
    from train.rm import evaluate_rm

    res = evaluate_rm(reward, workspace, where=where, subset=subset, batch_size=batch_size, max_length=max_length)
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    sel = res["selection"]
    t = Table("reward model", "pairs", "accuracy", "mean margin", title=f"held-out: {sel.get('where') or sel.get('selection')}",
              title_justify="left")
    t.add_row(str(res["reward_model"]), f"{res['pairs']:,}", f"{res['accuracy']:.4f}", f"{res['mean_margin']:.4f}")
    Console(width=200).print(t)


COMMANDS = (train, eval_)
