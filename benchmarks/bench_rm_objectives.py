"""Reward objectives benchmark (issue 17): Bradley-Terry and its variants, MetaRM and AVA, trained from the same base
on the same pairs with the same steps and seed, and evaluated on the same held-out pairs.

    python benchmarks/bench_rm_objectives.py               # about 40 minutes on a 2-core CPU (smollm2-135m)
    python benchmarks/bench_rm_objectives.py --pairs 64 --heldout 64 --objectives bt,ava   # a quick look

On the shared HH-RLHF harmless-base test file (2,312 pairs), ingested once into .bench/rm-objectives (a rerun
reuses the workspace, its embeddings, strength and generations):

- pairs: a seeded (md5 of pair_id) `--pairs` for training and a disjoint `--heldout` for evaluation (subsets
  bench-train and bench-heldout, made by SQL filters);
- policy-aligned held-out pairs: those of bench-heldout that FRFT's Part 1 filter keeps for SmolLM2-135M (its
  shared generations, all-MiniLM-L6-v2, either response's cosine to the policy's >= 1 - eps), subset bench-aligned;
- strength: `curate strength` (the default probe on the embeddings) for BT + margin;
- MetaRM's shifted samples: SmolLM2-135M's own, 4 per prompt, for the first --meta-prompts training pairs
  (iteration 2).

Each objective trains in a fresh process (train_rm then the scores of both held-out sets, timed with its peak RSS):
bt, bt+margin (--margin strength), bt+smoothing (--label-smoothing 0.1), bt+simcse, metarm, ava (read with
--reward-mode final). Accuracy counts ties as half, with a 95 % bootstrap interval; each objective's difference from
bt is a paired bootstrap over the same held-out pairs, and the table says whether it excludes 0.
Writes benchmarks/results/rm_objectives.json with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import measure, write_result  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data" / "hh-rlhf" / "harmless-base"
DATA, GENS = SHARED / "test.jsonl.gz", SHARED / "test.generations.smollm2-135m.jsonl"
BASE = "smollm2-135m"
OBJECTIVES = {
    "bt": {},
    "bt+margin": {"margin": "strength"},
    "bt+smoothing": {"label_smoothing": 0.1},
    "bt+simcse": {"contrastive": "simcse"},
    "metarm": {"meta": True, "shifted_generations": "it2"},
    "ava": {"objective": "ava"},
}


def curate(ws: Path, *args: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "curate"), "-w", str(ws), *args, "-q"], check=True)


def prepare(ws: Path, pairs: int, heldout: int, eps: float, meta_prompts: int) -> dict:
    """The workspace with its subsets, embeddings, strength and shifted generations (each step skipped when done)."""
    from curate.filters import run_filter
    from curate.workspace import Workspace

    t0 = time.perf_counter()
    w = Workspace(ws)
    if not (ws / "tables" / "pairs").exists():
        curate(ws, "ingest", str(DATA), "--sft-fraction", "0")
        curate(ws, "generations", "import", str(GENS), "--iteration", "1", "--policy", BASE)
        curate(ws, "embed")
        curate(ws, "score", "--iteration", "1")
        curate(ws, "strength")
    sql = ws.parent / f"sql-{pairs}-{heldout}"
    sql.mkdir(exist_ok=True)
    # a seeded split by the pair id's md5: the first hex digit below c trains, the rest is held out
    (sql / "train.sql").write_text("select pair_id from pairs where substr(md5(pair_id), 1, 1) < 'c' "
                                   f"order by md5(pair_id) limit {pairs}")
    (sql / "heldout.sql").write_text("select pair_id from pairs where substr(md5(pair_id), 1, 1) >= 'c' "
                                     f"order by md5(pair_id) limit {heldout}")
    (sql / "aligned.sql").write_text(
        "select s.pair_id from similarities s join subset_pairs sp using (pair_id) join subsets u using (subset_id) "
        f"where u.name = 'bench-heldout' and s.iteration = 1 and greatest(s.pos_sim, s.neg_sim) >= {1 - eps}")
    counts = {}
    for name in ("train", "heldout", "aligned"):
        counts[name] = run_filter(w, sql_file=sql / f"{name}.sql", name=f"bench-{name}", size=10**6).rows
    with w.connect() as con:
        have = con.execute("select count(*) from generations where iteration = 2").fetchone()[0]
    if not have:  # the shifted policy's samples for MetaRM: SmolLM2's own, 4 per training prompt
        curate(ws, "generate", "--model", BASE, "--iteration", "2", "--samples", "4", "--max-new-tokens", "48",
               "--backend", "transformers", "--where",  # the first training pairs in the split's order
               "pair_id in (select pair_id from pairs where substr(md5(pair_id), 1, 1) < 'c' "
               f"order by md5(pair_id) limit {meta_prompts})")
    return {"subsets": counts, "seconds": round(time.perf_counter() - t0, 1)}


def train_task(ws: str, name: str, out: str, max_length: str, lr: str, batch_size: str) -> dict:
    """Train one objective and score both held-out sets (runs in a fresh process under _measure)."""
    from curate.train.data import load_eval_pairs
    from curate.train.evaluate import score_pairs
    from curate.train.rm import RMConfig, train_rm

    t0 = time.perf_counter()
    config = RMConfig(base=BASE, output=out, subset="bench-train", workspace=ws, seed=0, epochs=1.0,
                      lr=float(lr), batch_size=int(batch_size), max_length=int(max_length), long_rows="truncate",
                      overwrite=True, quiet=True, **OBJECTIVES[name])
    result = train_rm(config)
    train_s = time.perf_counter() - t0
    mode = {"mode": "final"} if name == "ava" else {}
    scores = {}
    for part in ("heldout", "aligned"):
        ds = load_eval_pairs(ws, subset=f"bench-{part}").dataset
        rc, rr = score_pairs(out, ds, max_length=int(max_length), **mode)
        scores[part] = {"rc": rc, "rr": rr, "len_c": [len(x) for x in ds["chosen"]],
                        "len_r": [len(x) for x in ds["rejected"]]}
    return {"train_seconds": train_s, "steps": result.metrics["steps"], "trained_rows": result.trained_rows,
            "metrics": result.metrics, "scores": scores}


def correct(s: dict):
    import numpy as np

    rc, rr = np.asarray(s["rc"]), np.asarray(s["rr"])
    return np.where(rc > rr, 1.0, np.where(rc == rr, 0.5, 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--heldout", type=int, default=400)
    ap.add_argument("--eps", type=float, default=0.5)
    ap.add_argument("--meta-prompts", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--work", default=str(HERE.parent / ".bench" / "rm-objectives"))
    ap.add_argument("--out", default=str(HERE / "results" / "rm_objectives.json"))
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(f"{DATA} is missing: this benchmark reads the shared HH-RLHF file (../shared beside the repo).")

    from curate.stats import bootstrap_interval
    from curate.train.evaluate import accuracy_stats

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ws = work / "ws"
    prep = prepare(ws, args.pairs, args.heldout, args.eps, args.meta_prompts)
    print(f"prepared in {prep['seconds']} s: {prep['subsets']}", flush=True)

    runs = {}
    for name in args.objectives.split(","):
        m = measure("bench_rm_objectives:train_task", str(ws), name, str(work / "models" / name),
                    str(args.max_length), str(args.lr), str(args.batch_size), env={"OMP_NUM_THREADS": "2"})
        runs[name] = {**m["result"], "seconds": m["seconds"], "peak_rss_bytes": m["peak_rss_bytes"]}
        print(f"{name}: {m['seconds']:.0f} s, {m['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)

    rows, baseline = [], runs.get("bt")
    for name, r in runs.items():
        row = {"objective": name, "train_seconds": round(r["train_seconds"], 1), "seconds": round(r["seconds"], 1),
               "peak_rss_gib": round(r["peak_rss_bytes"] / 2**30, 2), "steps": r["steps"]}
        for part in ("heldout", "aligned"):
            s = r["scores"][part]
            st = accuracy_stats(s["rc"], s["rr"], s["len_c"], s["len_r"], n_boot=2000, seed=0)
            row[part] = {k: st[k] for k in ("pairs", "accuracy", "ci_low", "ci_high", "mean_margin")}
            if baseline is not None and name != "bt":
                diff = correct(s) - correct(baseline["scores"][part])
                lo, hi = bootstrap_interval(diff, 2000, 0)
                row[part]["diff_vs_bt"] = {"diff": float(diff.mean()), "ci_low": lo, "ci_high": hi,
                                           "exceeds_interval": bool(lo > 0 or hi < 0)}
        rows.append(row)

    print(f"\n{'objective':<13} {'held-out acc [95% CI]':<24} {'aligned acc [95% CI]':<24} {'margin':>7} "
          f"{'train s':>8} {'peak GiB':>8}  vs bt (held-out / aligned)")
    for row in rows:
        h, a = row["heldout"], row["aligned"]

        def cell(x):
            return f"{x['accuracy']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]" if x["pairs"] else "no pairs"

        def vs(x):
            d = x.get("diff_vs_bt")
            return "" if d is None else (f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
                                         f"{' *' if d['exceeds_interval'] else ''}")
        print(f"{row['objective']:<13} {cell(h):<24} {cell(a):<24} {h['mean_margin']:>7.3f} "
              f"{row['train_seconds']:>8.0f} {row['peak_rss_gib']:>8.2f}  {vs(h)} / {vs(a)}")
    exceed = [f"{r['objective']} ({p})" for r in rows for p in ("heldout", "aligned")
              if r[p].get("diff_vs_bt", {}).get("exceeds_interval")]
    verdict = ("differences from bt whose paired 95% interval excludes 0: " + ", ".join(exceed)) if exceed else \
        "no objective differs from bt beyond its paired 95% interval"
    print(verdict)
    write_result("rm_objectives", {"settings": vars(args), "base": BASE, "prepare": prep, "table": rows,
                                   "verdict": verdict, "accuracy_counts_ties_as": 0.5,
                                   "interval": "95% percentile bootstrap, 2000 resamples, seed 0; paired for vs bt"},
                 args.out)


if __name__ == "__main__":
    main()
