"""How good a reward model is on held-out pairs: accuracy (ties count half) with intervals, by length, on several
distributions.

    from curate.train.evaluate import evaluate_rm
    evaluate_rm("checkpoints/rm-it1", workspace="workspace")              # the pairs with split = 'test'
    evaluate_rm("checkpoints/rm-it1", workspace="workspace", filtered="heldout-split-even-it1")
    evaluate_rm("checkpoints/rm-it1", rewardbench="filtered.parquet")     # RewardBench's format, per subset

Accuracy counts r_chosen > r_rejected as 1 and a tie as 1/2, with a seeded percentile bootstrap and the Wilson
interval (curate.judge.stats), and is split by whether the chosen response is the longer one (a reward model that
only rewards length shows it there). The FRFT paper's claim is about the policy's distribution, so besides the
held-out human pairs an evaluation can add `filtered`: the held-out pairs the FRFT filter selects for the current
policy (a subset made from the policy's samples on the held-out prompts; `curate run`'s eval step makes one).
"""

from __future__ import annotations

import os
from typing import Any

REWARDBENCH_COLUMNS = ("prompt", "chosen", "rejected", "subset")


def score_pairs(reward, dataset, batch_size: int = 8, max_length: int | None = 1024, loaded=None,
                mode: str | None = None):
    """(r_chosen, r_rejected) lists for each row of a prompt/chosen/rejected dataset; rows longer than
    max_length keep their last max_length tokens (the prompt is cut from the left). reward: a model spec or a
    resolved ModelRef; loaded: a (model, tokenizer) pair already in memory; mode: an AVA model's reward mode."""
    from .reward import load_reward_model, score

    model, tokenizer = loaded or load_reward_model(reward, kind="reward", mode=mode)[:2]
    model.eval()
    prompts = list(dataset["prompt"])
    # chosen and rejected responses in one call: score() batches all 2n rows by length, so less padding
    rewards = score(model, tokenizer, prompts + prompts, list(dataset["chosen"]) + list(dataset["rejected"]),
                    batch_size, max_length, mode=mode).tolist()
    return rewards[:len(prompts)], rewards[len(prompts):]


def accuracy_stats(rc: list[float], rr: list[float], len_chosen: list[int], len_rejected: list[int],
                   n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy with ties as half, its bootstrap and Wilson intervals, the mean margin, and the split by length."""
    import numpy as np

    from ..stats import bootstrap_interval, wilson

    y = np.array([1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(rc, rr)])
    n = int(y.size)
    if not n:
        return {"pairs": 0, "accuracy": None}
    lc, lr = np.asarray(len_chosen), np.asarray(len_rejected)

    def part(mask) -> dict:
        k = int(mask.sum())
        if not k:
            return {"pairs": 0, "accuracy": None, "wilson_low": None, "wilson_high": None}
        lo, hi = wilson(float(y[mask].sum()), k)
        return {"pairs": k, "accuracy": float(y[mask].mean()), "wilson_low": lo, "wilson_high": hi}

    ci = bootstrap_interval(y, n_boot, seed) if n_boot else (None, None)
    wl = wilson(float(y.sum()), n)
    margins = np.asarray(rc) - np.asarray(rr)
    return {"pairs": n, "accuracy": float(y.mean()), "ci_low": ci[0], "ci_high": ci[1], "wilson_low": wl[0],
            "wilson_high": wl[1], "ties": int((y == 0.5).sum()), "mean_margin": float(margins.mean()),
            "mean_reward_chosen": float(np.mean(rc)), "mean_reward_rejected": float(np.mean(rr)),
            "by_length": {"chosen_longer": part(lc > lr), "rejected_longer": part(lc < lr),
                          "same_length": part(lc == lr)},
            "n_boot": n_boot, "seed": seed}


def evaluate_rm(reward: str | os.PathLike, workspace: str | None = None, where: str | None = None,
                subset: str | None = None, batch_size: int = 8, max_length: int | None = 1024,
                split: str | None = None, limit: int | None = None, n_boot: int = 1000, seed: int = 0,
                filtered: str | None = None, rewardbench: str | os.PathLike | None = None,
                reward_mode: str | None = None, mode_option: str = "--reward-mode") -> dict[str, Any]:
    """Accuracy and mean margin on held-out pairs (those of `split` matching `where`, default split 'test', the
    first `limit` by pair_id; or a subset's), plus `filtered` (a subset of held-out pairs) and `rewardbench` (a
    file with prompt, chosen, rejected, subset) as further distributions. The top-level keys are the first's.
    reward_mode: final or dense, required for an AVA model (curate.train.reward); mode_option: how the error
    about it names the setting."""
    from ..models import resolve_model
    from .data import load_eval_pairs
    from .reward import load_reward_model, resolve_mode

    ref = resolve_model(str(reward), kind="reward")  # a wrong model or mode fails before any data is read
    mode = resolve_mode(ref, reward_mode, mode_option)
    parts: list[tuple[str, Any, dict]] = []
    if rewardbench is None or any(x is not None for x in (where, subset, split)):
        rows = load_eval_pairs(workspace, where=where, subset=subset, split=split, limit=limit)
        parts.append((f"held-out: {rows.source.get('where') or rows.source.get('selection')}", rows.dataset,
                      rows.source))
    if filtered:
        rows = load_eval_pairs(workspace, subset=filtered)
        parts.append((f"selected for the policy ({filtered})", rows.dataset, rows.source))
    if rewardbench is not None:
        parts.extend(_rewardbench_parts(rewardbench))
    model, tokenizer, _ = load_reward_model(ref, kind="reward", mode=mode)
    distributions = []
    for name, ds, source in parts:
        rc, rr = score_pairs(ref, ds, batch_size, max_length, loaded=(model, tokenizer), mode=mode)
        stats = accuracy_stats(rc, rr, [len(x) for x in ds["chosen"]], [len(x) for x in ds["rejected"]], n_boot, seed)
        distributions.append({"distribution": name, "selection": source, **stats})
    first = distributions[0]
    return {"reward_model": str(reward), "reward_model_id": ref.model_id, "reward_mode": mode, **first,
            "distributions": distributions}


def _rewardbench_parts(path) -> list[tuple[str, Any, dict]]:
    """RewardBench's format (prompt, chosen, rejected, subset; .parquet, .jsonl or .json): one part per subset.
    Its prompts are plain text: they are scored as a single HH human turn, as curate's reward models are trained."""
    from pathlib import Path

    import datasets
    import polars as pl

    from ..errors import CurateError
    from ..generate import as_transcript
    from .reward import spaced

    p = Path(path)
    readers = {".parquet": pl.read_parquet, ".jsonl": pl.read_ndjson, ".json": pl.read_json}
    if not p.is_file() or p.suffix.lower() not in readers:
        raise CurateError(f"--rewardbench {p}: give a .parquet, .jsonl or .json file with columns "
                          f"{', '.join(REWARDBENCH_COLUMNS)}.")
    try:
        df = readers[p.suffix.lower()](p)
    except Exception as e:  # polars' own errors for a broken file
        raise CurateError(f"--rewardbench {p}: could not read it ({' '.join(str(e).split())[:300]}).") from None
    missing = [c for c in REWARDBENCH_COLUMNS if c not in df.columns]
    if missing:
        raise CurateError(f"--rewardbench {p} lacks column(s) {', '.join(missing)} (it has {', '.join(df.columns)}); "
                          f"RewardBench's format is {', '.join(REWARDBENCH_COLUMNS)}.")

    parts = []
    for (name,), g in sorted(df.group_by(["subset"]), key=lambda kv: str(kv[0][0])):
        ds = datasets.Dataset.from_dict({"prompt": [as_transcript(x) for x in g["prompt"].to_list()],
                                         "chosen": [spaced(x) for x in g["chosen"].to_list()],
                                         "rejected": [spaced(x) for x in g["rejected"].to_list()]})
        parts.append((f"rewardbench {name}", ds, {"kind": "rewardbench", "file": str(p), "subset": name,
                                                  "rows": g.height}))
    return parts
