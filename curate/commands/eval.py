"""`curate eval rm` (a reward model's accuracy) and `curate eval winrate` (policy A against policy B, judged)."""

from __future__ import annotations

import json

import click

from .options import err, json_option, quiet_option, reward_mode_option, workspace_option


@click.group("eval")
def eval_():
    """Evaluate trained models: reward-model accuracy, judge win rates of policies."""


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _interval(lo, hi) -> str:
    return "-" if lo is None else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


@eval_.command("rm")
@click.option("--reward", required=True, metavar="MODEL",
              help="Reward model: a folder (from `curate train rm`) or a Hub id.")
@click.option("--split", default=None, help="Evaluate on the pairs of this split (default: test, unless --where).")
@click.option("--where", default=None, metavar="SQL", help="Evaluate on the pairs matching this predicate on `pairs`.")
@click.option("--subset", default=None, help="Evaluate on the pairs of this subset instead.")
@click.option("--filtered", default=None, metavar="SUBSET",
              help="Also on these held-out pairs: the ones the FRFT filter selects for the current policy (a subset "
                   "of held-out pairs, e.g. the one `curate run`'s eval step makes).")
@click.option("--rewardbench", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also on a local file in RewardBench's format (prompt, chosen, rejected, subset): per subset.")
@click.option("--limit", type=int, default=None, help="At most N pairs (the first by pair_id).")
@click.option("--bootstrap", "n_boot", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the accuracy's interval (0: Wilson only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Pairs per forward pass.")
@click.option("--max-length", type=int, default=1024, show_default=True,
              help="Longer transcripts keep their last N tokens (the prompt is cut from the left).")
@reward_mode_option
@json_option
@workspace_option
@quiet_option
def eval_rm(reward, split, where, subset, filtered, rewardbench, limit, n_boot, seed, batch_size, max_length,
            reward_mode, as_json, workspace, quiet):
    """Accuracy of a reward model on held-out pairs, with intervals and by length.

    Accuracy counts r_chosen > r_rejected, a tie as half; the interval is a seeded percentile bootstrap (and the
    Wilson interval); "chosen longer" shows how it does where length and preference agree.

    \b
    Examples:
      curate eval rm --reward checkpoints/rm-it1 --bootstrap 1000      # pairs with split = 'test'
      curate eval rm --reward checkpoints/rm-it1 --filtered demo-split-even-it1-heldout
      curate eval rm --reward checkpoints/rm-it1 --rewardbench filtered.parquet --json
      curate eval rm --reward checkpoints/rm-ava --reward-mode dense       # an AVA model: final or dense
    """
    from ..progress import quiet_libraries
    from ..train.evaluate import evaluate_rm

    quiet_libraries(quiet)
    if n_boot < 0:
        raise click.BadParameter("must be 0 or more.", param_hint="--bootstrap")
    res = evaluate_rm(reward, workspace, where=where, subset=subset, batch_size=batch_size, max_length=max_length,
                      split=split, limit=limit, n_boot=n_boot, seed=seed, filtered=filtered, rewardbench=rewardbench,
                      reward_mode=reward_mode)
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
        return
    from ..display import print_table

    rows = []
    for d in res["distributions"]:
        bl = d["by_length"]
        rows.append((d["distribution"], f"{d['pairs']:,}", _pct(d["accuracy"]), _interval(d["ci_low"], d["ci_high"]),
                     _interval(d["wilson_low"], d["wilson_high"]), f"{d['mean_margin']:.3f}",
                     f"{_pct(bl['chosen_longer']['accuracy'])} ({bl['chosen_longer']['pairs']})",
                     f"{_pct(bl['rejected_longer']['accuracy'])} ({bl['rejected_longer']['pairs']})"))
    print_table(["pairs", "n", "accuracy %", "95% bootstrap", "Wilson", "mean margin", "chosen longer",
                 "rejected longer"], rows, title=f"reward model {res['reward_model']}"
                + (f" ({reward_mode} reward)" if reward_mode else ""))


@eval_.command("winrate")
@click.option("--a", "a", required=True, metavar="POLICY",
              help="Policy A: a folder, a Hub id, smollm2-135m, or gen:BRANCH:ITERATION (stored generations).")
@click.option("--b", "b", required=True, metavar="POLICY", help="Policy B (the baseline), in the same forms.")
@click.option("--judge", default="hf:smollm2-135m", show_default=True, metavar="KIND:MODEL",
              help="openai:MODEL (any OpenAI-compatible endpoint, with --base-url), hf:MODEL_OR_FOLDER (a local "
                   "causal LM, read at its next token) or rm:FOLDER (a reward model).")
@click.option("--base-url", default=None, metavar="URL", help="The openai: judge's endpoint (default: OpenAI's).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, metavar="VAR",
              help="Environment variable holding the openai: judge's key (never printed or stored).")
@click.option("--concurrency", type=int, default=8, show_default=True, help="openai: requests in flight.")
@click.option("--template", default=None, metavar="NAME|FILE",
              help="Judge prompt: frft-appendix-a-corrected (default), frft-appendix-a (as published) or a file "
                   "with {question}, {answer_a} and {answer_b}.")
@click.option("--prompts", default=None, metavar="FILE|hf:ID",
              help="Prompts to compare on (default: the workspace's --split prompts).")
@click.option("--prompt-field", default="prompt", show_default=True, help="The prompt column of --prompts.")
@click.option("--split", default="test", show_default=True, help="Held-out split whose prompts are used.")
@click.option("--limit", type=int, default=200, show_default=True, help="Prompts to judge (a seeded sample; 0: all).")
@click.option("--max-new-tokens", type=int, default=128, show_default=True, help="Tokens per response at most.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature (0: greedy).")
@click.option("--top-k", type=int, default=50, show_default=True, help="Top-k sampling (0: off).")
@click.option("--chat-template/--no-chat-template", default=False, show_default=True,
              help="Format prompts with the policies' chat template (as `curate generate --chat-template`; use it "
                   "for policies trained on it, e.g. those of a `curate run` from the instruct default).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Judgments (hf/rm) per forward pass.")
@click.option("--bootstrap", "n_boot", type=int, default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the prompt sample, sampling, bootstrap.")
@click.option("--name", default=None, help="Name of the comparison in `winrates` (default: a-vs-b policy ids).")
@reward_mode_option
@json_option
@workspace_option
@quiet_option
def eval_winrate(a, b, judge, base_url, api_key_env, concurrency, template, prompts, prompt_field, split, limit,
                 max_new_tokens, temperature, top_k, chat_template, batch_size, n_boot, seed, name, reward_mode,
                 as_json, workspace, quiet):
    """Win rate of policy A against policy B, judged in both orders.

    Each policy answers the same prompts (cached on an eval/ branch of `generations`); the judge sees every
    prompt twice, A first and B first; a verdict that changes with the order is a tie. Verdicts are stored in
    `judgments` as they come (a rerun asks for none twice) and the comparison in `winrates`.

    \b
    Examples:
      curate eval winrate --a checkpoints/ppo-split-even-it1 --b checkpoints/ppo-random-it1
      curate eval winrate --a ... --b ... --judge openai:gemini-1.5-pro --base-url https://... --limit 1000
      curate eval winrate --a ... --b ... --judge rm:checkpoints/rm-all
      curate eval winrate --a ... --b ... --judge rm:checkpoints/rm-ava --reward-mode final
    """
    from ..generate import GenerateParams
    from ..judge.winrate import compare
    from ..workspace import Workspace

    params = GenerateParams(top_k=top_k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                            chat_template=chat_template)
    c = compare(Workspace(workspace), a, b, judge, template=template, prompts=prompts, prompt_field=prompt_field,
                split=split, limit=limit or None, seed=seed, params=params, n_boot=n_boot, name=name, quiet=quiet,
                judge_options={"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency,
                               "batch_size": batch_size, "reward_mode": reward_mode},
                echo=(lambda m: None) if quiet else err)
    if as_json:
        click.echo(json.dumps(c.to_dict(), indent=2, default=str))
        return
    from ..display import print_table

    s = c.stats
    print_table(["comparison", "judged", "win %", "95% bootstrap", "Wilson", "LC win %", "W/T/L", "invalid",
                 "consistent %", "mean len A/B"],
                [(c.name, f"{s.judged:,}", _pct(s.win_rate), _interval(s.ci_low, s.ci_high),
                  _interval(s.wilson_low, s.wilson_high), _pct(s.lc_win_rate), f"{s.wins}/{s.ties}/{s.losses}",
                  f"{s.invalid:,}", _pct(s.consistency),
                  "-" if s.mean_len_a is None else f"{s.mean_len_a:.0f}/{s.mean_len_b:.0f}")],
                title=f"A = {c.a.spec} vs B = {c.b.spec}, judge {c.judge_id}")
    if not quiet:
        bl = s.by_length
        err(f"{s.describe()}")
        err(f"by length: A longer {_pct(bl['a_longer']['win_rate'])}% of {bl['a_longer']['judged']}, B longer "
            f"{_pct(bl['b_longer']['win_rate'])}% of {bl['b_longer']['judged']}; judgments asked now {c.requested:,}, "
            f"found stored {c.cached:,}")
