"""Trainer benchmark (issue 6): reward-model training and PPO steps with SmolLM2-135M on this CPU.

    python benchmarks/bench_train.py --rm-pairs 64 --ppo-steps 2

RM: `train_rm` (TRL RewardTrainer, batches of 8) vs a per-pair PyTorch loop a user would write, on the
first N pairs of the shared file (prompt/chosen/rejected), max length 512; pairs/s and peak memory.
One epoch over 2,000 pairs is extrapolated from pairs/s (the full epoch takes hours on 2 cores).
PPO: a few steps (32 new tokens) with the trained reward model; prompts/s and peak memory.
Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import synth  # noqa: E402
from _measure import measure, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rm-pairs", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--ppo-steps", type=int, default=2)
    ap.add_argument("--ppo-batch", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results" / "train.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-train-"))
    try:
        data, prompts = tmp / "pairs.jsonl", tmp / "prompts.jsonl"
        with open(data, "w", encoding="utf-8") as fh, open(prompts, "w", encoding="utf-8") as fp:
            for row in synth.explicit_rows(synth.load_real()):
                fh.write(json.dumps(row) + "\n")
                fp.write(json.dumps({"prompt": row["prompt"]}) + "\n")
        n, ml = str(args.rm_pairs), str(args.max_length)
        print(f"RM: naive per-pair loop on {n} pairs ...", file=sys.stderr)
        base = measure("train_tasks:naive_rm", str(data), n, ml)
        print(f"RM: curate train rm on {n} pairs ...", file=sys.stderr)
        ours = measure("train_tasks:curate_rm", str(data), n, ml, str(tmp / "rm"))
        print(f"PPO: {args.ppo_steps} steps of {args.ppo_batch} prompts ...", file=sys.stderr)
        ppo = measure("train_tasks:curate_ppo", str(prompts), str(tmp / "rm"), str(tmp / "ppo"),
                      str(args.ppo_steps), str(args.ppo_batch))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    b, o, p = base["result"], ours["result"], ppo["result"]
    res = {
        "rm": {"pairs": o["pairs"], "max_length": args.max_length, "dropped_long": o["dropped_long"],
               "naive_pairs_per_s": round(b["pairs"] / b["train_seconds"], 3),
               "curate_pairs_per_s": round(o["pairs"] / o["train_seconds"], 3),
               "speedup": round((o["pairs"] / o["train_seconds"]) / (b["pairs"] / b["train_seconds"]), 2),
               "naive_peak_rss_mib": round(base["peak_rss_bytes"] / 2**20),
               "curate_peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20),
               "epoch_2000_pairs_hours_extrapolated": round(2000 / (o["pairs"] / o["train_seconds"]) / 3600, 2)},
        "ppo": {"steps": p["steps"], "prompts_per_step": args.ppo_batch, "max_new_tokens": 32,
                "prompts_per_s": round(p["prompts"] / p["seconds"], 3), "seconds": round(p["seconds"], 1),
                "peak_rss_mib": round(ppo["peak_rss_bytes"] / 2**20), "last_step": p["last"]},
    }
    r = res["rm"]
    print(f"RM {r['pairs']} pairs: curate {r['curate_pairs_per_s']} pairs/s ({r['curate_peak_rss_mib']} MiB) vs naive "
          f"{r['naive_pairs_per_s']} pairs/s ({r['naive_peak_rss_mib']} MiB): ratio {r['speedup']}x; "
          f"a 2,000-pair epoch ~ {r['epoch_2000_pairs_hours_extrapolated']} h")
    q = res["ppo"]
    print(f"PPO {q['steps']} steps x {q['prompts_per_step']} prompts: {q['prompts_per_s']} prompts/s, "
          f"{q['peak_rss_mib']} MiB peak")
    write_result("train", res, args.out)


if __name__ == "__main__":
    main()
