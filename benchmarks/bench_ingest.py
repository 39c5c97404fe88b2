"""Ingest benchmark (issue 2): pairs/s and peak memory, curate vs a naive json + pandas loop.

    python benchmarks/bench_ingest.py            # shared 2,312 pairs + synthetic 160,800
    python benchmarks/bench_ingest.py --n 20000  # smaller synthetic set

Targets on a 2-core CPU: 160,800 pairs in under 20 s, peak RSS under 2 GiB, at least 2x the baseline in every run
(each run's ratio is its baseline time over the curate time right after it). Writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402
from _measure import measure, write_result  # noqa: E402


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=synth.HH_TRAIN_SIZE, help="synthetic pairs")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (alternating); medians reported")
    ap.add_argument("--out", default=str(HERE / "results" / "ingest.json"))
    args = ap.parse_args()
    if not synth.REAL_PAIRS.exists():
        sys.exit(f"missing {synth.REAL_PAIRS}: the benchmark needs the shared HH-RLHF file")

    cache = HERE.parent / ".bench"
    synthetic = cache / f"hh-synth-{args.n}.jsonl"
    if not synthetic.exists():
        print(f"synthesising {args.n:,} pairs -> {synthetic}", file=sys.stderr)
        synth.write_jsonl(synth.synth_hh_rows(args.n), synthetic)

    results = []
    for name, path in (("shared-2312", synth.REAL_PAIRS), (f"synthetic-{args.n}", synthetic)):
        bases, ourss = [], []
        for _ in range(args.repeat):  # alternate the sides so drift in machine load hits both
            tmp = Path(tempfile.mkdtemp(prefix="curate-bench-"))
            try:
                bases.append(measure("ingest_tasks:naive", str(path), str(tmp / "naive.parquet")))
                ourss.append(measure("ingest_tasks:curate_cli", str(path), str(tmp / "ws")))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        base, ours = median_run(bases), median_run(ourss)
        n = ours["result"]
        row = {
            "dataset": name,
            "repeats": args.repeat,
            "pairs": n,
            "baseline_seconds": round(base["seconds"], 3),
            "curate_seconds": round(ours["seconds"], 3),
            "baseline_pairs_per_s": round(base["result"] / base["seconds"]),
            "curate_pairs_per_s": round(n / ours["seconds"]),
            "speedup": round(base["seconds"] / ours["seconds"], 2),
            "run_speedups": [round(b["seconds"] / o["seconds"], 2) for b, o in zip(bases, ourss)],
            "baseline_peak_rss_mib": round(base["peak_rss_bytes"] / 2**20),
            "curate_peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20),
        }
        results.append(row)
        print(
            f"{name:>18}: curate {row['curate_seconds']:.2f} s ({row['curate_pairs_per_s']:,} pairs/s, "
            f"{row['curate_peak_rss_mib']} MiB) vs naive {row['baseline_seconds']:.2f} s "
            f"({row['baseline_peak_rss_mib']} MiB): ratio {row['speedup']}x (runs: "
            f"{', '.join(f'{r}x' for r in row['run_speedups'])})"
        )
    write_result("ingest", {"results": results}, args.out)


if __name__ == "__main__":
    main()
