"""One FRFT iteration's time, projected from the rates the GPU benchmark measured (bench_gpu.py).

The terms have the shape of `curate run --dry-run`'s estimate (curate/run/estimate.py): texts / texts per second
for the embedder, subset x epochs / pairs per second for the reward model, steps x prompts per step / prompts per
second for PPO. Generation differs on purpose: the estimate divides max_new_tokens per prompt (an upper bound) by
tokens/s because it has seen no response yet; here the rate is prompts per second measured on real prompts with
the config's max_new_tokens, so the responses' real lengths (and an engine's batching) are in it.
"""

from __future__ import annotations

FORMULA = ("T = P/g + T_e + B*(S*E/r + K*b/p), T_e = N*t/e, P = N*d; N pairs, d distinct prompts per pair, "
           "g prompts/s generated, t texts per pair embedded (chosen, rejected, the policy's response), e texts/s "
           "embedded, S the filtered subset's size, E RM epochs, r RM pairs/s, K PPO steps of b prompts, p PPO "
           "prompts/s, B branches that train a reward model and a policy (B = 1 for one branch)")

RATES = ("generate_prompts_per_s", "embed_texts_per_s", "rm_pairs_per_s", "ppo_prompts_per_s")


def project_iteration(rates: dict, *, pairs: int, prompts_per_pair: float, texts_per_pair: int, subset: int,
                      rm_epochs: float, ppo_steps: int, ppo_batch: int, branches: int = 1) -> dict:
    """Seconds per step of one FRFT iteration over `pairs` pairs, for one branch and for `branches`.

    rates: RATES' keys; a missing or zero rate (a section that did not run) leaves its term None, and the totals
    then add the known terms only and name the missing ones.
    """
    prompts = round(pairs * prompts_per_pair)
    work = {"generate": (prompts, "generate_prompts_per_s"), "embed": (pairs * texts_per_pair, "embed_texts_per_s"),
            "rm": (subset * rm_epochs, "rm_pairs_per_s"), "ppo": (ppo_steps * ppo_batch, "ppo_prompts_per_s")}
    seconds = {step: (n / rates[key] if rates.get(key) else None) for step, (n, key) in work.items()}
    shared = sum(seconds[s] or 0 for s in ("generate", "embed"))  # once per iteration, whatever the branches
    per_branch = sum(seconds[s] or 0 for s in ("rm", "ppo"))
    return {
        "formula": FORMULA,
        "inputs": {"pairs": pairs, "prompts_per_pair": prompts_per_pair, "prompts": prompts,
                   "texts_per_pair": texts_per_pair, "texts": pairs * texts_per_pair, "subset": subset,
                   "rm_epochs": rm_epochs, "ppo_steps": ppo_steps, "ppo_batch": ppo_batch, "branches": branches},
        "rates": {k: rates.get(k) for k in RATES},
        "seconds": {k: None if v is None else round(v, 1) for k, v in seconds.items()},
        "one_branch_seconds": round(shared + per_branch, 1),
        "all_branches_seconds": round(shared + branches * per_branch, 1),
        "complete": all(v is not None for v in seconds.values()),
        "missing": [k for k, v in seconds.items() if v is None],
    }


def minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:,.1f} min"


def describe(p: dict) -> str:
    """The projection in a few lines, for the console."""
    s, i = p["seconds"], p["inputs"]
    parts = " + ".join(f"{k} {minutes(v)}" for k, v in s.items())
    missing = "" if p["complete"] else f" (without {', '.join(p['missing'])}: not measured)"
    lines = [f"one FRFT iteration over {i['pairs']:,} pairs ({i['prompts']:,} prompts, {i['texts']:,} texts, RM on "
             f"{i['subset']:,} pairs, {i['ppo_steps']} PPO steps of {i['ppo_batch']}): {parts}",
             f"  = {minutes(p['one_branch_seconds'])} for one branch, {minutes(p['all_branches_seconds'])} for "
             f"{i['branches']} branches{missing}",
             f"  {p['formula']}"]
    return "\n".join(lines)
