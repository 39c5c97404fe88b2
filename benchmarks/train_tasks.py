"""The sides of the trainer benchmark, each run in its own process by _measure.py."""

from __future__ import annotations

import json
import time


def _rows(data: str, n: int) -> list[dict]:
    with open(data, encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def naive_rm(data: str, n: str, max_length: str) -> dict:
    """A reward model as a user would write it: one pair at a time, -log sigmoid(r_c - r_r), AdamW."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from curate.models import resolve_policy

    folder = resolve_policy("smollm2-135m").folder
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=9e-6)
    model.train()
    rows, t0 = _rows(data, int(n)), time.perf_counter()
    for r in rows:
        def score(text):
            ids = tok(text + tok.eos_token, return_tensors="pt", truncation=True, max_length=int(max_length))
            return model(**ids).logits[0, 0]
        loss = -torch.nn.functional.logsigmoid(score(r["prompt"] + r["chosen"]) - score(r["prompt"] + r["rejected"]))
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {"pairs": len(rows), "train_seconds": time.perf_counter() - t0}


def curate_rm(data: str, n: str, max_length: str, out: str) -> dict:
    """`curate train rm` (curate.train.rm.train_rm) on the first n pairs of the file."""
    from curate.train.rm import RMConfig, train_rm

    subset = f"{out}.data.jsonl"
    with open(subset, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in _rows(data, int(n)))
    from curate.models import resolve_policy

    r = train_rm(RMConfig(base=str(resolve_policy("smollm2-135m").folder), output=out, data=subset,
                          max_length=int(max_length), quiet=True))
    return {"pairs": r.trained_rows, "dropped_long": r.dropped_long, "train_seconds": r.seconds}


def curate_ppo(prompts: str, reward: str, out: str, steps: str, batch: str) -> dict:
    from curate.train.ppo import PPOConfig, train_ppo

    t0 = time.perf_counter()
    r = train_ppo(PPOConfig(policy="smollm2-135m", reward=reward, prompts_file=prompts, output=out,
                            steps=int(steps), batch_size=int(batch), mini_batch_size=max(1, int(batch) // 2),
                            max_new_tokens=32, save_every=10**6, quiet=True))
    return {"steps": r.step, "prompts": int(steps) * int(batch), "seconds": time.perf_counter() - t0,
            "last": r.history[-1] if r.history else {}}
