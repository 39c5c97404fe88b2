"""How good a reward model is on held-out pairs: accuracy (r_chosen > r_rejected) and mean margin.

    from curate.train.evaluate import evaluate_rm
    evaluate_rm("checkpoints/rm-it1", workspace="workspace")              # the pairs with split = 'test'
    evaluate_rm("checkpoints/rm-it1", workspace="workspace", subset="frft-split-even-it2")
"""

from __future__ import annotations

import os
from typing import Any


def score_pairs(reward, dataset, batch_size: int = 8, max_length: int | None = 1024):
    """(r_chosen, r_rejected) lists for each row of a prompt/chosen/rejected dataset; rows longer than
    max_length keep their last max_length tokens (the prompt is cut from the left). reward: a model spec or a
    resolved ModelRef."""
    from .reward import load_reward_model, score

    model, tokenizer, _ = load_reward_model(reward, kind="reward")
    model.eval()
    prompts = list(dataset["prompt"])
    # chosen and rejected responses in one call: score() batches all 2n rows by length, so less padding
    rewards = score(model, tokenizer, prompts + prompts, list(dataset["chosen"]) + list(dataset["rejected"]), batch_size,
                    max_length).tolist()
    return rewards[:len(prompts)], rewards[len(prompts):]


def evaluate_rm(reward: str | os.PathLike, workspace: str | None = None, where: str | None = None,
                subset: str | None = None, batch_size: int = 8, max_length: int | None = 1024,
                split: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Accuracy (r_chosen > r_rejected) and mean margin (r_chosen - r_rejected) on held-out pairs: those of
    `split` matching `where` (default split 'test'), the first `limit` by pair_id; or a subset's."""
    from ..models import resolve_model
    from .data import load_eval_pairs

    ref = resolve_model(str(reward), kind="reward")  # a wrong model fails before any data is read
    rows = load_eval_pairs(workspace, where=where, subset=subset, split=split, limit=limit)
    rc, rr = score_pairs(ref, rows.dataset, batch_size, max_length)
    n = len(rc)
    return {
        "reward_model": str(reward),
        "reward_model_id": ref.model_id,
        "pairs": n,
        "accuracy": sum(c > r for c, r in zip(rc, rr)) / n,
        "mean_margin": sum(c - r for c, r in zip(rc, rr)) / n,
        "mean_reward_chosen": sum(rc) / n,
        "mean_reward_rejected": sum(rr) / n,
        "selection": rows.source,
    }
