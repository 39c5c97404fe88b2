"""Local judge benchmark (issue 14): judgments per second of `--judge hf:smollm2-135m` against a naive loop.

    python benchmarks/bench_judge.py              # 32 presentations (16 real prompts, both orders)
    python benchmarks/bench_judge.py --n 64 --batch-size 16

Naive: one full forward pass over the whole judge prompt (Appendix A's ~900-token few-shot prefix, the question
and both answers) per judgment. curate: the prefix's KV cache computed once, the suffixes in length-sorted
batches on copies of it (curate.judge.local). Same model (SmolLM2-135M-Instruct, float32 on a CPU without
bfloat16), same presentations, each mode in a fresh process; model load excluded on both sides. Both must give
the same verdicts. Target: at least 3x. Writes benchmarks/results/judge.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import measure, write_result  # noqa: E402
from judge_tasks import GENERATIONS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="presentations (two per prompt)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results" / "judge.json"))
    args = ap.parse_args()
    if not GENERATIONS.exists():
        sys.exit(f"missing {GENERATIONS}: the benchmark needs the shared SmolLM2 generations")
    naive = measure("judge_tasks:judge", "naive", str(args.n), "1")
    cached = measure("judge_tasks:judge", "cached", str(args.n), str(args.batch_size))
    nr, cr = naive["result"], cached["result"]
    agree = sum(x == y for x, y in zip(nr.pop("verdicts"), cr.pop("verdicts"))) / nr["judgments"]
    ratio = cr["judgments_per_s"] / nr["judgments_per_s"]
    print(f"naive: {nr['judgments_per_s']:.2f} judgments/s ({nr['judge_seconds']:.1f} s for {nr['judgments']})")
    print(f"curate: {cr['judgments_per_s']:.2f} judgments/s ({cr['judge_seconds']:.1f} s), batch {args.batch_size}")
    print(f"ratio {ratio:.2f}x (target >= 3x); verdicts agree on {100 * agree:.0f}%")
    write_result("judge", {"n": args.n, "batch_size": args.batch_size, "naive": {**nr, "wall_s": naive["seconds"],
                 "peak_rss_bytes": naive["peak_rss_bytes"]}, "curate": {**cr, "wall_s": cached["seconds"],
                 "peak_rss_bytes": cached["peak_rss_bytes"]}, "ratio": ratio, "verdict_agreement": agree,
                 "target": 3.0}, args.out)


if __name__ == "__main__":
    main()
