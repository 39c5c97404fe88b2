"""The local judge benchmark's task (run in a fresh process by bench_judge.py): judge N real presentations with
SmolLM2-135M, either with the shared-prefix KV cache and batching (what `curate eval winrate --judge hf:...` runs)
or one full forward pass per judgment (the naive loop). Model load is excluded from the judging time."""

from __future__ import annotations

import json
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base"
GENERATIONS = SHARED / "test.generations.smollm2-135m.jsonl"


def requests(n: int):
    """The first n/2 real prompts whose SmolLM2 response is compared with the human-chosen one, in both orders."""
    from curate.judge.base import Request
    from curate.judge.template import load_template, question_text

    import gzip

    tpl = load_template()
    with gzip.open(SHARED / "test.jsonl.gz", "rt", encoding="utf-8") as fh:
        chosen = [json.loads(line)["chosen"] for line in fh]
    out = []
    with open(GENERATIONS, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if len(row["prompt"]) > 1500:  # long transcripts: keep the benchmark about the judge, not the window
                continue
            human = chosen[row["row"]][len(row["prompt"]):] if chosen[row["row"]].startswith(row["prompt"]) else ""
            a, b = row["generation"].strip()[:400], human.strip()[:400]
            for first, second in ((a, b), (b, a)):
                out.append(Request(tpl.render(question_text(row["prompt"]), first, second), row["prompt"], first,
                                   second))
            if len(out) >= n:
                return tpl, out[:n]
    return tpl, out


def judge(mode: str, n: str, batch_size: str = "8") -> dict:
    from curate.judge.local import LocalLMJudge

    tpl, reqs = requests(int(n))
    t0 = time.perf_counter()
    j = LocalLMJudge("smollm2-135m", tpl, batch_size=int(batch_size), cache_prefix=(mode == "cached"))
    load = time.perf_counter() - t0
    verdicts = {}
    t1 = time.perf_counter()
    j.judge(reqs, lambda i, a: verdicts.__setitem__(i, a.verdict))
    seconds = time.perf_counter() - t1
    return {"mode": mode, "judgments": len(reqs), "judge_seconds": seconds, "load_seconds": load,
            "judgments_per_s": len(reqs) / seconds, "verdicts": [verdicts[i] for i in range(len(reqs))]}
