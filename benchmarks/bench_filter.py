"""Filter benchmark (issue 4): every strategy and `report intersect`, curate vs pandas, each in a fresh process.

    python benchmarks/bench_filter.py                  # 160,800 and 1,000,000 scored pairs, two iterations
    python benchmarks/bench_filter.py --sizes 20000    # a quick run

A workspace per size holds synthetic `pairs` (ids, short texts, prompts shared by about 1 in 8 pairs)
and `similarities` for iterations 1 and 2 (pos/neg drawn around 0.5, iteration 2 correlated with 1,
about 2 % of each side above the floor 0.8). Each strategy runs as `curate filter -s S --eps 0.2 -i 1`
and as the pandas code a user would write (read, mask, sort, head, save); start-up is included on both
sides. Targets on a 2-core CPU: each strategy under 1 s at 160,800 pairs and under 3 s at 1,000,000,
peak RSS under 2 GiB, at least 3x pandas at 1,000,000. Writes benchmarks/results/filter.json.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import measure, write_result  # noqa: E402
from filter_tasks import PANDAS  # noqa: E402

from curate import strategies  # noqa: E402


def synth_workspace(root: Path, n: int, seed: int = 0) -> None:
    import numpy as np
    import polars as pl

    from curate.workspace import Workspace

    rng = np.random.default_rng(seed)
    ws = Workspace(root).init()
    k = np.arange(n)
    pair_ids = pl.Series("pair_id", [hashlib.md5(f"pair {i}".encode()).hexdigest() for i in range(n)])
    prompts = pl.Series("prompt", np.char.add("\n\nHuman: synthetic question ", (k // 8 * 8 + (k % 8 > 0)).astype(str)))
    pairs = pl.DataFrame({
        "pair_id": pair_ids, "prompt": prompts,
        "chosen": pl.Series(np.char.add(" chosen ", k.astype(str))),
        "rejected": pl.Series(np.char.add(" rejected ", k.astype(str))),
        "role": "pref", "source": "synthetic", "split": "train", "source_row": k,
        "chosen_full": None, "rejected_full": None, "subset": "synthetic", "flags": pl.Series([[]] * n,
        dtype=pl.List(pl.String)), "format": "hh", "ingest_id": "bench",
    })
    base_pos = rng.normal(0.5, 0.15, n)
    base_neg = rng.normal(0.5, 0.15, n)
    with ws.transaction() as tx:
        tx.add("pairs", pairs)
        for it in (1, 2):
            noise = 0.0 if it == 1 else 0.08
            pos = np.clip(base_pos + rng.normal(0, noise, n) if noise else base_pos, -1, 1)
            neg = np.clip(base_neg + rng.normal(0, noise, n) if noise else base_neg, -1, 1)
            tx.add("similarities", pl.DataFrame({
                "branch": "main", "iteration": it, "pair_id": pair_ids, "model_id": "bench-model",
                "pos_sim": pos, "neg_sim": neg, "pos_sim_max": pos, "neg_sim_max": neg, "n_samples": 1,
            }), key=f"main-it{it}-bench-model")


def synth_task(root: str, n: str) -> int:
    synth_workspace(Path(root), int(n))
    return int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="160800,1000000", help="comma-separated numbers of scored pairs")
    ap.add_argument("--out", default=str(HERE / "results" / "filter.json"))
    args = ap.parse_args()
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="curate-bench-filter-"))
        try:
            ws = tmp / "ws"
            print(f"synthesising {n:,} scored pairs x 2 iterations ...", file=sys.stderr)
            measure("bench_filter:synth_task", str(ws), str(n))  # in its own process: peak RSS stays per task
            for strategy in strategies.names():  # every registered strategy
                if strategy not in PANDAS:
                    print(f"{strategy}: no pandas baseline in filter_tasks.PANDAS, not benchmarked", file=sys.stderr)
                    continue
                base = measure("filter_tasks:pandas_filter", str(ws), strategy, "1", str(tmp / "pandas.parquet"))
                ours = measure("filter_tasks:curate_filter", str(ws), strategy, "1")
                measure("filter_tasks:curate_filter", str(ws), strategy, "2")  # for the intersect below
                row = {"pairs": n, "task": f"filter {strategy}", "rows": ours["result"],
                       "baseline_rows": base["result"],
                       "curate_seconds": round(ours["seconds"], 3), "pandas_seconds": round(base["seconds"], 3),
                       "speedup": round(base["seconds"] / ours["seconds"], 2),
                       "curate_peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20),
                       "pandas_peak_rss_mib": round(base["peak_rss_bytes"] / 2**20)}
                results.append(row)
                print(f"{n:>9,} {row['task']:<18} curate {row['curate_seconds']:.2f} s ({row['curate_peak_rss_mib']} "
                      f"MiB) vs pandas {row['pandas_seconds']:.2f} s ({row['pandas_peak_rss_mib']} MiB): "
                      f"ratio {row['speedup']}x, {row['rows']:,} rows")
            base = measure("filter_tasks:pandas_intersect", str(ws))
            ours = measure("filter_tasks:curate_intersect", str(ws))
            row = {"pairs": n, "task": "report intersect", "rows": ours["result"], "baseline_rows": base["result"],
                   "curate_seconds": round(ours["seconds"], 3), "pandas_seconds": round(base["seconds"], 3),
                   "speedup": round(base["seconds"] / ours["seconds"], 2),
                   "curate_peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20),
                   "pandas_peak_rss_mib": round(base["peak_rss_bytes"] / 2**20)}
            results.append(row)
            print(f"{n:>9,} {row['task']:<18} curate {row['curate_seconds']:.2f} s ({row['curate_peak_rss_mib']} MiB) "
                  f"vs pandas {row['pandas_seconds']:.2f} s ({row['pandas_peak_rss_mib']} MiB): ratio {row['speedup']}x")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    write_result("filter", {"results": results}, args.out)


if __name__ == "__main__":
    main()
