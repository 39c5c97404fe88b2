"""Preference-strength benchmark (issue 16): does `curate strength` find planted label flips, does cleaning with it
help a reward model, and how long does it take; against cleanlab and a single model in the same run.

    python benchmarks/bench_strength.py                   # everything: about 2 minutes on a 2-core CPU
                                                          # (the first run also embeds the file: minutes)
    python benchmarks/bench_strength.py --synthetic 20000 # a smaller wall-time run
    pip install -e '.[bench]'                             # cleanlab, the baseline (scikit-learn comes with curate)

On the shared HH-RLHF harmless-base test file (2,312 pairs, all pref), ingested and embedded once into
.bench/strength-hh (a rerun reuses it), with the features `curate strength` reads (features.from_embeddings:
all-MiniLM-L6-v2 vectors of chosen minus rejected):

1. Planted flips, 10/20/30 % x seeds 0-2, on the same flipped copy (curate.strength.inject_flips's seeded choice,
   so the default method's numbers are those `curate strength --inject-flips F --seed S` prints):
   - probe: the default (M = 10 bootstrapped Bradley-Terry heads per fold, K = 5, out of fold); score -mean;
   - probe, in sample: the same with --in-sample (the paper's procedure);
   - single head: one Bradley-Terry head per fold, out of fold, no bootstrap; score -d;
   - cleanlab: each pair shown as (x, 1) or (-x, 0) by a seeded coin, out-of-fold probabilities of a logistic
     regression (cross_val_predict, 5 folds), ranked by cleanlab's self-confidence; find_label_issues' count.
     Twice: with the probe's own penalty (C = 1 / l2, no intercept: the same model, so only the procedure
     differs) and with scikit-learn's defaults (C = 1, an intercept), as a user would write it.
   AUROC, average precision and precision at k (k = the number flipped).
2. Wall time, each in a fresh process: `curate strength` at 2,312 pairs (cached embeddings; again, reused) and at
   160,800 synthetic pairs whose random unit vectors are already cached, against cleanlab's pipeline on the same
   features (read the same way).
3. Downstream: a seeded half of the pairs trains a reward model (one Bradley-Terry head on the features) with 10 %
   of its labels flipped, (a) as is, (b) without its weakest 10 % by the probe's out-of-fold mean strength on that
   half, (c) with those flipped back, (d) unflipped (the ceiling); accuracy on the other half's original labels,
   with 95 % Wilson intervals, seeds 0-2.

Targets (issue 16): AUROC >= 0.75 at 10 % flips and above cleanlab's on AUROC and precision at k; the 160,800-pair
run under 2 minutes on a 2-core CPU. Writes benchmarks/results/strength.json with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import measure, write_result  # noqa: E402
from strength_tasks import cleanlab_scores, require_cleanlab, scaled  # noqa: E402
from synth import REAL_PAIRS  # noqa: E402

from curate.stats import wilson  # noqa: E402
from curate.strength import StrengthSettings, inject_flips, stats  # noqa: E402
from curate.strength.probe import ProbeSettings, cross_fit, fit_head, fold_of  # noqa: E402

RATES = (0.1, 0.2, 0.3)
SEEDS = (0, 1, 2)
DEFAULT = StrengthSettings()
METHODS = ("probe", "probe, in sample", "single head", "cleanlab (C = 1/l2)", "cleanlab (sklearn defaults)")


def curate(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "curate.cli", *args], check=True)


def real_workspace() -> Path:
    """The shared file ingested with every pair pref and embedded once; later runs reuse it."""
    from curate.workspace import Workspace

    ws = HERE.parent / ".bench" / "strength-hh"
    if not Workspace(ws).files("pairs"):
        print(f"ingesting {REAL_PAIRS} into {ws} (once) ...", file=sys.stderr)
        curate("ingest", str(REAL_PAIRS), "-w", str(ws), "--sft-fraction", "0", "-q")
    curate("embed", "-w", str(ws), "-q")  # once (minutes on a CPU); a rerun finds every vector cached
    return ws


def planted(n: int, rate: float, seed: int) -> np.ndarray:
    """The pairs inject_flips flips (curate/strength/__init__.py): the same k and the same seeded draw."""
    k = max(1, int(round(rate * n)))
    flipped = np.zeros(n, dtype=bool)
    flipped[np.random.default_rng([seed, 2]).choice(n, k, replace=False)] = True
    return flipped


def measures(flipped: np.ndarray, score: np.ndarray) -> dict:
    return {"auroc": stats.auroc(flipped, score), "average_precision": stats.average_precision(flipped, score),
            "precision_at_k": stats.precision_at_k(flipped, score)}


def single_head(x: np.ndarray, seed: int, l2: float, folds: int = 5) -> np.ndarray:
    """d of one Bradley-Terry head per fold (all counts 1), each pair scored by the head of the other folds."""
    from threadpoolctl import threadpool_limits

    xs = scaled(x)
    fold = fold_of(len(xs), folds, seed)
    d = np.empty(len(xs))
    with threadpool_limits(1, user_api="blas"):  # as cross_fit fits its heads
        for k in range(folds):
            train, held = fold != k, fold == k
            d[held] = xs[held] @ fit_head(xs[train], np.ones(int(train.sum())), l2)
    return d


def quality(x: np.ndarray) -> list[dict]:
    """Every method on every planted copy; one record per (method, rate, seed)."""
    rows = []
    for rate in RATES:
        for seed in SEEDS:
            flipped = planted(len(x), rate, seed)
            xf = np.where(flipped[:, None], -x, x)
            t0 = time.perf_counter()
            ours = inject_flips(x, StrengthSettings(inject_flips=rate, seed=seed))  # what the CLI prints
            seconds = time.perf_counter() - t0
            # the same copy scored again, for the count below; it must give inject_flips' numbers exactly
            d, _ = cross_fit(xf, ProbeSettings(models=DEFAULT.models, folds=DEFAULT.folds, l2=DEFAULT.l2, seed=seed))
            mean = d.mean(axis=0)
            again = measures(flipped, -mean)
            assert all(again[m] == ours[m] for m in again), (again, ours)
            base = {"rate": rate, "seed": seed, "flipped": int(flipped.sum()), "pairs": len(x)}
            incorrect = mean < 0
            rows.append({**base, "method": "probe", **again, "seconds": round(seconds, 3),
                         "flagged": int(incorrect.sum()), "flagged_flips": int((incorrect & flipped).sum())})
            t0 = time.perf_counter()
            ins = inject_flips(x, StrengthSettings(inject_flips=rate, seed=seed, in_sample=True))
            rows.append({**base, "method": "probe, in sample", **{m: ins[m] for m in again},
                         "seconds": round(time.perf_counter() - t0, 3)})
            t0 = time.perf_counter()
            d1 = single_head(xf, seed, DEFAULT.l2)
            rows.append({**base, "method": "single head", **measures(flipped, -d1),
                         "seconds": round(time.perf_counter() - t0, 3),
                         "flagged": int((d1 < 0).sum()), "flagged_flips": int(((d1 < 0) & flipped).sum())})
            for method, c, intercept in (("cleanlab (C = 1/l2)", 1 / DEFAULT.l2, False),
                                         ("cleanlab (sklearn defaults)", 1.0, True)):
                t0 = time.perf_counter()
                score, flags = cleanlab_scores(xf, seed, c, intercept)
                rows.append({**base, "method": method, **measures(flipped, score),
                             "seconds": round(time.perf_counter() - t0, 3),
                             "flagged": int(flags.sum()), "flagged_flips": int((flags & flipped).sum())})
            print(f"  {rate:.0%} flips, seed {seed}: " + ", ".join(
                f"{r['method']} {r['auroc']:.3f}" for r in rows[-len(METHODS):]), file=sys.stderr)
    return rows


def summary(rows: list[dict]) -> dict:
    """{method: {rate: {measure: [mean, min, max]}}} over the seeds."""
    out: dict = {}
    for method in METHODS:
        for rate in RATES:
            sel = [r for r in rows if r["method"] == method and r["rate"] == rate]
            out.setdefault(method, {})[f"{rate:g}"] = {
                m: [float(np.mean(v)), float(np.min(v)), float(np.max(v))]
                for m in ("auroc", "average_precision", "precision_at_k", "flagged", "flagged_flips")
                if (v := [r[m] for r in sel if m in r])}
    return out


def print_quality(summ: dict) -> None:
    for measure_, title in (("auroc", "AUROC"), ("average_precision", "average precision (chance = the rate)"),
                            ("precision_at_k", "precision at k = number flipped (chance = the rate)")):
        print(f"\n{title}: mean (min-max) over seeds {', '.join(map(str, SEEDS))}")
        print(f"{'method':<30}" + "".join(f"{f'{r:.0%} flipped':>22}" for r in RATES))
        for method in METHODS:
            cells = [summ[method][f"{r:g}"][measure_] for r in RATES]
            print(f"{method:<30}" + "".join(f"{f'{m:.3f} ({lo:.3f}-{hi:.3f})':>22}" for m, lo, hi in cells))
    print("\npairs flagged (probe: mean < 0; single head: d < 0; cleanlab: find_label_issues), of them planted flips:")
    for method in ("probe", "single head", "cleanlab (C = 1/l2)", "cleanlab (sklearn defaults)"):
        cells = [summ[method][f"{r:g}"] for r in RATES]
        print(f"{method:<30}" + "".join(
            f"{'{:,.0f} ({:,.0f})'.format(c['flagged'][0], c['flagged_flips'][0]):>22}" for c in cells))


def reward_accuracy(x_train: np.ndarray, x_test: np.ndarray, rms: np.ndarray, l2: float) -> tuple[float, int]:
    """A linear Bradley-Terry reward model (one head, all counts 1) fitted on x_train; how many test pairs it orders
    as labelled (d > 0; d = 0 counts one half)."""
    w = fit_head(x_train / rms, np.ones(len(x_train)), l2)
    d = (x_test / rms) @ w
    return float((d > 0).sum() + 0.5 * (d == 0).sum()), len(d)


def downstream(x: np.ndarray, rate: float = 0.1) -> list[dict]:
    from threadpoolctl import threadpool_limits

    rows = []
    for seed in SEEDS:
        perm = np.random.default_rng([seed, 4]).permutation(len(x))
        half = len(x) // 2
        train, test = x[perm[:half]].astype(np.float64), x[perm[half:]].astype(np.float64)
        flipped = planted(len(train), rate, seed)
        noisy = np.where(flipped[:, None], -train, train)
        d, _ = cross_fit(noisy, ProbeSettings(models=DEFAULT.models, folds=DEFAULT.folds, l2=DEFAULT.l2, seed=seed))
        k = int(round(rate * len(train)))
        weakest = np.zeros(len(train), dtype=bool)
        weakest[np.lexsort((np.arange(len(train)), d.mean(axis=0)))[:k]] = True
        rms = np.sqrt(np.mean(np.square(train), axis=0))  # label-free: the same for every variant below
        rms = np.where(rms > 0, rms, 1.0)
        variants = {"a: flipped 10 %, as is": noisy, "b: weakest 10 % dropped": noisy[~weakest],
                    "c: weakest 10 % flipped back": np.where(weakest[:, None], -noisy, noisy),
                    "d: no flips (ceiling)": train}
        with threadpool_limits(1, user_api="blas"):
            for name, xt in variants.items():
                correct, n = reward_accuracy(xt, test, rms, DEFAULT.l2)
                lo, hi = wilson(correct, n)
                rows.append({"seed": seed, "variant": name, "train_pairs": len(xt), "test_pairs": n,
                             "accuracy": correct / n, "wilson95": [lo, hi], "planted": int(flipped.sum()),
                             "weakest_that_were_planted": int((weakest & flipped).sum())})
    return rows


def print_downstream(rows: list[dict]) -> None:
    print(f"\nreward model accuracy on the held-out half (original labels), 95 % Wilson intervals; "
          f"{rows[0]['test_pairs']:,} test pairs")
    print(f"{'training half':<32}" + "".join(f"{f'seed {s}':>22}" for s in SEEDS) + f"{'mean':>8}")
    for name in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == name]
        cells = ["{:.3f} [{:.3f}, {:.3f}]".format(r["accuracy"], *r["wilson95"]) for r in sel]
        print(f"{name:<32}" + "".join(f"{c:>22}" for c in cells)
              + f"{np.mean([r['accuracy'] for r in sel]):>8.3f}")
    print("of the weakest 10 %, planted flips: " + ", ".join(
        f"seed {r['seed']} {r['weakest_that_were_planted']} of {r['planted']}" for r in rows
        if r["variant"].startswith("a")))


def timed(ws: Path, n: int, label: str) -> list[dict]:
    """`curate strength` (twice: computed, then reused) and cleanlab's pipeline on the same workspace."""
    first = measure("strength_tasks:curate_cli", "strength", "-w", str(ws), "-q")
    again = measure("strength_tasks:curate_cli", "strength", "-w", str(ws), "-q")
    base = measure("strength_tasks:cleanlab_pipeline", str(ws), repr(1 / DEFAULT.l2), "0")
    rows = [{"pairs": n, "data": label, "task": task, "seconds": round(m["seconds"], 3),
             "peak_rss_mib": round(m["peak_rss_bytes"] / 2**20)}
            for task, m in (("curate strength", first), ("curate strength, reused", again),
                            ("cleanlab pipeline (C = 1/l2)", base))]
    for r in rows:
        r["ratio_to_cleanlab"] = round(base["seconds"] / r["seconds"], 2)
        print(f"  {n:,} pairs, {r['task']}: {r['seconds']:.2f} s", file=sys.stderr)
    return rows


def wall_times(ws_real: Path, synthetic: int) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-strength-"))
    try:
        ws = tmp / "hh"
        shutil.copytree(ws_real, ws)  # a copy: the stored rows of one run must not make the next one a reuse
        rows = timed(ws, 2312, "shared file, cached vectors")
        shutil.rmtree(ws)
        ws = tmp / "synthetic"
        print(f"synthesising {synthetic:,} pref pairs with cached random vectors ...", file=sys.stderr)
        measure("strength_tasks:synth_task", str(ws), str(synthetic))
        rows += timed(ws, synthetic, "synthetic, cached vectors")
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=int, default=160_800, help="pairs of the synthetic wall-time run")
    ap.add_argument("--out", default=str(HERE / "results" / "strength.json"))
    args = ap.parse_args()
    require_cleanlab()
    from importlib.metadata import version

    from curate.hardware import cpu_summary
    from curate.strength.features import from_embeddings
    from curate.workspace import Workspace

    cpu = cpu_summary()
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores; {', '.join(cpu['flags']) or 'no AVX2'})", file=sys.stderr)
    t_all = time.perf_counter()
    ws = real_workspace()
    # first, while this process is small: a child's peak RSS (getrusage's ru_maxrss) starts from its parent's
    # resident size at the fork, so timing after the features are loaded would report this process's peak
    times = wall_times(ws, args.synthetic)
    feats = from_embeddings(Workspace(ws), DEFAULT.features)  # exactly what `curate strength` reads
    x = feats.x
    print(f"{len(x):,} pref pairs, features {feats.identity} ({x.shape[1]}-d); planted flips ...", file=sys.stderr)
    rows = quality(x)
    summ = summary(rows)
    print_quality(summ)
    down = downstream(x)
    print_downstream(down)
    print("\nwall time, each in a fresh process (start-up included):")
    for r in times:
        print(f"{r['pairs']:>9,} {r['data']:<28} {r['task']:<30} {r['seconds']:7.2f} s {r['peak_rss_mib']:>6,} MiB  "
              f"(cleanlab / this: {r['ratio_to_cleanlab']}x)")
    ten = summ["probe"]["0.1"]
    rivals = [m for m in METHODS if m.startswith("cleanlab")]
    targets = {"auroc_at_10pct": ten["auroc"][0], "auroc_target_met": ten["auroc"][0] >= 0.75,
               **{f"above {m} on auroc and precision_at_k at {r:g}":
                  summ["probe"][f"{r:g}"]["auroc"][0] > summ[m][f"{r:g}"]["auroc"][0]
                  and summ["probe"][f"{r:g}"]["precision_at_k"][0] > summ[m][f"{r:g}"]["precision_at_k"][0]
                  for m in rivals for r in RATES},
               "synthetic_seconds": next(r["seconds"] for r in times if r["pairs"] == args.synthetic
                                         and r["task"] == "curate strength")}
    targets["synthetic_under_2_min"] = targets["synthetic_seconds"] < 120
    print("\ntargets: " + "; ".join(f"{k}: {v if not isinstance(v, float) else round(v, 3)}"
                                    for k, v in targets.items()))
    write_result("strength", {
        "pairs": len(x), "features": feats.identity, "settings": {"models": DEFAULT.models, "folds": DEFAULT.folds,
                                                                 "l2": DEFAULT.l2},
        "rates": list(RATES), "seeds": list(SEEDS), "summary": summ, "runs": rows, "downstream": down,
        "wall_times": times, "targets": targets, "total_seconds": round(time.perf_counter() - t_all, 1),
        "versions": {p: version(p) for p in ("cleanlab", "scikit-learn", "scipy", "numpy")},
    }, args.out)


if __name__ == "__main__":
    main()
