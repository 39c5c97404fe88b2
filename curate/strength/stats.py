"""The statistics of preference strength (Secrets of RLHF II, section 2.2, eq. 4) and of the planted-flip check.

numpy only: `curate strength` reads cached representations and must answer in seconds.

    mean, std = moments(d)                 # d: (M models, n pairs) of r(chosen) - r(rejected)
    pct = percentile(mean)                 # rank of each mean in [0, 1], 0 = weakest
    cat = categories(mean, band)           # incorrect / ambiguous / strong
    auroc(flipped, score), average_precision(...), precision_at_k(...)
"""

from __future__ import annotations

import numpy as np

CATEGORIES = ("incorrect", "ambiguous", "strong")
# ambiguous: 0 <= mean < AMBIGUOUS_BAND x (the standard deviation of the means over all pairs). The paper names
# no threshold: its Figure 4 finds the 20-40% slice "around 0" and the models trained on it near chance. A band
# in units of the spread of the means is scale-free (a probe's d and a reward model's d differ in scale), and a
# quarter of a standard deviation puts the 20-40% slice of HH-RLHF-like strength distributions inside it.
AMBIGUOUS_BAND = 0.25


def moments(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the mean and the population standard deviation (divided by M, as eq. 4) of the M models' d."""
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] < 1:
        raise ValueError(f"d must be (models, pairs); got shape {d.shape}")
    return d.mean(axis=0), d.std(axis=0, ddof=0)


def percentile(mean: np.ndarray) -> np.ndarray:
    """Each mean's rank in [0, 1]: (pairs strictly weaker) / (n - 1), ties sharing the lowest rank (SQL's
    percent_rank), so `percentile < 0.1` selects the weakest tenth whatever the ties."""
    mean = np.asarray(mean, dtype=np.float64)
    n = len(mean)
    if n == 1:
        return np.zeros(1)
    return np.searchsorted(np.sort(mean), mean, side="left") / (n - 1)


def band(mean: np.ndarray, width: float = AMBIGUOUS_BAND) -> float:
    """The upper edge of `ambiguous`: width x the population standard deviation of the means."""
    return float(width * np.std(np.asarray(mean, dtype=np.float64)))


def categories(mean: np.ndarray, upper: float) -> np.ndarray:
    """incorrect (mean < 0: the models prefer the rejected response), ambiguous (0 <= mean < upper), strong."""
    mean = np.asarray(mean, dtype=np.float64)
    return np.where(mean < 0, "incorrect", np.where(mean < upper, "ambiguous", "strong"))


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of `score` for finding the `positive` rows (ties count one half): the Mann-Whitney
    statistic from average ranks."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        raise ValueError("AUROC needs both positive and negative rows")
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Mean over the positives of the precision among the rows scored at least as high (tied rows counted
    together, the pessimistic reading of a tie)."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    if not positive.any():
        raise ValueError("average precision needs a positive row")
    # rows at or above each positive's score: hits and total, counting ties in full
    s_sorted = np.sort(score)
    pos_sorted = np.sort(score[positive])
    at_least = len(score) - np.searchsorted(s_sorted, score[positive], side="left")
    hits = len(pos_sorted) - np.searchsorted(pos_sorted, score[positive], side="left")
    return float(np.mean(hits / at_least))


def precision_at_k(positive: np.ndarray, score: np.ndarray, k: int | None = None) -> float:
    """Share of positives among the k highest scores (k defaults to the number of positives); ties at the cut
    are broken by row order, so the result never depends on a sort's whims."""
    positive = np.asarray(positive, dtype=bool)
    k = int(positive.sum()) if k is None else int(k)
    if k < 1:
        raise ValueError("precision at k needs k >= 1")
    top = np.lexsort((np.arange(len(score)), -np.asarray(score, dtype=np.float64)))[:k]
    return float(positive[top].mean())


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sx)) + 1]
    ends = np.r_[starts[1:], len(x)]
    group = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2)[group]
    return ranks
