"""Tasks of the strength benchmark (benchmarks/bench_strength.py): the cleanlab baseline, the synthetic workspace of
cached representations, and the CLI, each runnable in a fresh process through _measure.measure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

CLEANLAB_MISSING = ("the strength benchmark compares against cleanlab, which is not installed: "
                    "pip install -e '.[bench]' (or pip install cleanlab)")


def require_cleanlab() -> None:
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise SystemExit(CLEANLAB_MISSING) from None


def scaled(x: np.ndarray) -> np.ndarray:
    """Each feature divided by its root mean square over all pairs, as the probe does (curate/strength/probe.py's
    cross_fit): no centring, so a swapped pair is still -x, and every method reads the same numbers."""
    x = np.asarray(x, dtype=np.float64)
    rms = np.sqrt(np.mean(np.square(x), axis=0))
    return x / np.where(rms > 0, rms, 1.0)


def cleanlab_scores(x: np.ndarray, seed: int, c: float, intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab on pairs: each pair shown in a seeded random order, (x, label 1) or (-x, label 0), so both classes
    exist; out-of-fold probabilities of a logistic regression (5 folds); cleanlab's self-confidence (lower = more
    likely an issue) and find_label_issues' flags. Returns (issue score, higher = more likely flipped; flags)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    xs = scaled(x)
    coin = np.random.default_rng([seed, 3]).random(len(xs)) < 0.5
    features, labels = np.where(coin[:, None], xs, -xs), coin.astype(np.int64)
    model = LogisticRegression(C=c, fit_intercept=intercept, max_iter=1000)
    # one BLAS thread, as the probe runs (probe.py): on 2 shared cores BLAS threads spin against other work
    with threadpool_limits(1, user_api="blas"):
        probs = cross_val_predict(model, features, labels, method="predict_proba",
                                  cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    quality = get_label_quality_scores(labels, probs)  # self-confidence: the probability of the given label
    return -quality, find_label_issues(labels, probs)


def cleanlab_pipeline(workspace: str, c: str, seed: str = "0") -> int:
    """The baseline of the wall-time runs: the same features read the same way as `curate strength`, then
    cleanlab_scores; returns how many pairs find_label_issues flags."""
    from curate.strength.features import from_embeddings
    from curate.workspace import Workspace

    feats = from_embeddings(Workspace(workspace), "default")
    _, flags = cleanlab_scores(feats.x, int(seed), float(c), intercept=False)
    return int(flags.sum())


def curate_cli(*args: str) -> dict:
    """`curate ARGS...` in this process (start-up included: _measure starts a fresh interpreter)."""
    from embed_tasks import curate_cli as run

    return run(*args)


def synth_workspace(root: Path, n: int, seed: int = 0) -> None:
    """n pref pairs with distinct short texts, and a random unit 384-d vector in `embeddings` for every response
    under the packaged default model's id (keyed by md5 of the text, as `curate embed` keys them): `curate
    strength` finds every representation cached and embeds nothing."""
    import polars as pl

    from curate.embedding import resolve
    from curate.workspace import Workspace

    ref = resolve(None)
    ws = Workspace(root).init()
    k = np.arange(n)
    chosen = pl.Series(np.char.add(" synthetic chosen ", k.astype(str)))
    rejected = pl.Series(np.char.add(" synthetic rejected ", k.astype(str)))
    pairs = pl.DataFrame({
        "pair_id": [hashlib.md5(f"pair {i}".encode()).hexdigest() for i in range(n)],
        "prompt": pl.Series(np.char.add("\n\nHuman: synthetic question ", (k // 8).astype(str))),
        "chosen": chosen, "rejected": rejected,
        "role": "pref", "source": "synthetic", "split": "train", "source_row": k,
        "chosen_full": None, "rejected_full": None, "subset": "synthetic",
        "flags": pl.Series([[]] * n, dtype=pl.List(pl.String)), "format": "hh", "ingest_id": "bench",
    })
    texts = pl.concat([chosen, rejected])
    hashes = pl.Series([hashlib.md5(t.encode()).hexdigest() for t in texts.to_list()])
    rng = np.random.default_rng(seed)
    with ws.transaction("bench strength") as tx:
        tx.add("pairs", pairs)
        tx.add("embedding_models", pl.DataFrame({
            "model_id": [ref.model_id], "name": [ref.name], "revision": [ref.revision],
            "weights_sha256": [ref.identity["weights_sha256"]], "pooling": [ref.identity["pooling"]],
            "max_seq_length": [ref.identity["max_seq_length"]], "dim": [ref.dim], "identity": ["{}"],
            "created_at": [None]}))
        for start in range(0, len(hashes), 100_000):
            part = hashes.slice(start, 100_000)
            v = rng.standard_normal((len(part), ref.dim), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            tx.add("embeddings", pl.DataFrame({"text_hash": part, "model_id": ref.model_id,
                                               "vector": pl.Series(v, dtype=pl.Array(pl.Float32, ref.dim))}),
                   key=ref.model_id)


def synth_task(root: str, n: str) -> int:
    synth_workspace(Path(root), int(n))
    return int(n)
