"""Generation benchmark (issue 5): SmolLM2-135M on 256 real prompts, 64 new tokens, chat template, top-k 50.

    python benchmarks/bench_generate.py                    # 256 prompts, batch 32
    python benchmarks/bench_generate.py --n 64 --batch-size 16

Naive: `model.generate` one prompt at a time, as a user would write it. curate: `generate()` (what
`curate generate` runs) with length-bucketed, left-padded batches and the KV cache. Both in fresh
processes on the same prompts; tokens/s counts new tokens up to EOS over the time spent generating
(model load excluded on both sides; the JSON has the wall times too). Target: at least 5x the
baseline's tokens/s on a 2-core CPU. Writes benchmarks/results/generate.json.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402
from _measure import measure, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="first N rows of the shared file")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(HERE / "results" / "generate.json"))
    args = ap.parse_args()
    if not synth.REAL_PAIRS.exists():
        sys.exit(f"missing {synth.REAL_PAIRS}: the benchmark needs the shared HH-RLHF file")
    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-gen-"))
    try:
        ws = tmp / "ws"
        subprocess.run([sys.executable, "-m", "curate.cli", "ingest", str(synth.REAL_PAIRS), "-w", str(ws), "-q"],
                       check=True)
        measure("generate_tasks:curate_generate", str(ws), "2", "4", "2", "99")  # converts/caches the model once
        print(f"naive: {args.n} prompts one at a time ...", file=sys.stderr)
        base = measure("generate_tasks:naive", str(ws), str(args.n), str(args.max_new_tokens))
        print(f"curate: batch {args.batch_size} ...", file=sys.stderr)
        ours = measure("generate_tasks:curate_generate", str(ws), str(args.n), str(args.max_new_tokens),
                       str(args.batch_size), "1")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    b, o = base["result"], ours["result"]
    row = {
        "prompts": o["prompts"], "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "naive_new_tokens": b["new_tokens"], "curate_new_tokens": o["new_tokens"],
        "naive_generate_seconds": round(b["generate_seconds"], 2), "curate_generate_seconds": round(o["generate_seconds"], 2),
        "naive_tokens_per_s": round(b["new_tokens"] / b["generate_seconds"], 1),
        "curate_tokens_per_s": round(o["new_tokens"] / o["generate_seconds"], 1),
        "naive_wall_seconds": round(base["seconds"], 2), "curate_wall_seconds": round(ours["seconds"], 2),
        "naive_peak_rss_mib": round(base["peak_rss_bytes"] / 2**20),
        "curate_peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20),
    }
    row["speedup_tokens_per_s"] = round(row["curate_tokens_per_s"] / row["naive_tokens_per_s"], 2)
    print(f"{row['prompts']} prompts, {args.max_new_tokens} new tokens: curate {row['curate_tokens_per_s']} tokens/s "
          f"({row['curate_generate_seconds']} s, wall {row['curate_wall_seconds']} s) vs naive "
          f"{row['naive_tokens_per_s']} tokens/s ({row['naive_generate_seconds']} s, wall {row['naive_wall_seconds']} s): "
          f"ratio {row['speedup_tokens_per_s']}x")
    write_result("generate", {"result": row}, args.out)


if __name__ == "__main__":
    main()
