"""Statistics of comparisons and accuracies (a policy against another, a reward model on pairs): win rates, intervals.

The FRFT paper (../shared/papers/frft-inverse-alignment.txt) section 6 reports win rates; this module gives them
with their uncertainty and a length-controlled variant in the spirit of AlpacaEval's (Dubois et al. 2024).

Input, one record per prompt after both presentation orders were judged: `outcome` from A's point of view
(1.0 A wins, 0.0 B wins, 0.5 tie, None/NaN invalid), `consistent` (both orders gave the same winner; None when
invalid) and the response lengths `len_a`, `len_b` in characters. With W wins, L losses, T ties over the
n = W + L + T judged prompts (invalid ones are counted, never judged):

    win rate      p = (W + T/2) / n                     (a tie is half a win)
    Wilson        (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    bootstrap     percentiles (1-level)/2 and (1+level)/2 of the mean outcome over prompts resampled with replacement
    length ctl.   P(A wins) = sigmoid(b0 + b1 d), d = (len_a - len_b) / std(len_a - len_b); LC rate = sigmoid(b0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
_CHUNK = 1 << 20  # indices per bootstrap chunk: rows * n stays under about a million (8 MB per array)
_L2, _MAX_ITER, _TOL = 1e-6, 50, 1e-10


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes/n in closed form; successes may be fractional (wins +
    ties/2). With n = 0 nothing is known: the interval is the whole (0.0, 1.0)."""
    if n == 0:
        return 0.0, 1.0
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson needs 0 <= successes <= n, got {successes} of {n}")
    p, z2 = successes / n, z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z2 / n)), min(1.0, (centre + half) / (1 + z2 / n))


def _resampled(n: int, n_boot: int, seed: int, stat_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """stat_of(idx) for n_boot resamples of range(n), idx an (rows, n) index matrix. The draws are
    rng.integers(0, n, size=(rows, n)) with rng = np.random.default_rng(seed), chunk after chunk; numpy's stream
    makes that the same as rng.integers(0, n, size=n) once per resample, in order."""
    rng, out, done = np.random.default_rng(seed), np.empty(n_boot), 0
    rows = max(1, _CHUNK // max(n, 1))
    while done < n_boot:
        k = min(rows, n_boot - done)
        out[done:done + k] = stat_of(rng.integers(0, n, size=(k, n)))
        done += k
    return out


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])  # numpy's default, linear interpolation
    return float(lo), float(hi)


def bootstrap_interval(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                       stat: Callable[..., np.ndarray] = np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of stat(values): the prompts are resampled with replacement n_boot times
    (draws as in _resampled, so a seed gives the same interval every time). stat is called as stat(matrix, axis=1)
    on a block of resamples, one per row (np.mean, np.median)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0 or n_boot < 1 or not 0 < level < 1:
        raise ValueError("bootstrap_interval needs a non-empty 1-d array, n_boot >= 1 and 0 < level < 1")
    return _percentiles(_resampled(values.size, n_boot, seed, lambda idx: stat(values[idx], axis=1)), level)


class LengthControl(NamedTuple):
    win_rate: float  # sigmoid(b0): the win rate read at equal lengths
    length_coef: float  # b1: the change in log-odds of A winning per std of the length difference


def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1 / (1 + np.exp(-np.clip(x, -500, 500)))  # clipped: no overflow warning on separated data


def _fit(y: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression y ~ sigmoid(b0 + b1 d), one fit per row of y and d (rows, n), by Newton's method on the
    mean Bernoulli log-likelihood with fractional targets y in [0, 1], minus _L2/2 (b0² + b1²) so that perfectly
    separated rows stay finite. Stops when every |step| < _TOL, or after _MAX_ITER iterations."""
    b = np.zeros((y.shape[0], 2))
    for _ in range(_MAX_ITER):
        p = _sigmoid(b[:, :1] + b[:, 1:] * d)
        r, w = y - p, p * (1 - p)
        g0, g1 = r.mean(1) - _L2 * b[:, 0], (r * d).mean(1) - _L2 * b[:, 1]
        h00, h01, h11 = w.mean(1) + _L2, (w * d).mean(1), (w * d * d).mean(1) + _L2
        det = h00 * h11 - h01 * h01
        step = np.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], axis=1)
        step = np.clip(step, -5.0, 5.0)  # keeps a first step on nearly separated data from overshooting
        b += step
        if np.abs(step).max() < _TOL:
            break
    return b[:, 0], b[:, 1]


def _length_diff(len_a: np.ndarray, len_b: np.ndarray) -> np.ndarray:
    """(len_a - len_b) / std: divided by its std but NOT centred, since d = 0 must mean equal lengths, where the
    LC rate is read. A std of 0 (all differences equal) gives d = 0 everywhere: nothing to control for."""
    diff = len_a - len_b
    sd = float(diff.std()) if diff.size else 0.0
    return diff / sd if sd > 0 else np.zeros_like(diff)


def length_controlled(outcomes: Sequence[float | None] | np.ndarray, len_a: Sequence[float] | np.ndarray,
                      len_b: Sequence[float] | np.ndarray) -> LengthControl:
    """Length-controlled win rate and length coefficient: LengthControl(win_rate, length_coef), which unpacks as
    `rate, b1 = length_controlled(...)`. It follows the idea of
    AlpacaEval's length-controlled win rate (Dubois et al. 2024, "Length-Controlled AlpacaEval") but regresses on
    the length difference only (no per-instruction or model terms), so it works on any prompt set: the outcome
    (a tie is the target 0.5) is regressed on d = (len_a - len_b) / std with an intercept, and the rate is
    sigmoid(b0), the win rate at equal lengths. Invalid outcomes (None/NaN) are left out; none valid -> NaNs."""
    y, la, lb = (np.asarray(v, dtype=float) for v in (outcomes, len_a, len_b))
    if not (y.ndim == 1 and y.shape == la.shape == lb.shape):
        raise ValueError("outcomes, len_a and len_b must be 1-d and of the same length")
    ok = ~np.isnan(y)
    if not ok.any():
        return LengthControl(math.nan, math.nan)
    if np.any((y[ok] < 0) | (y[ok] > 1)):
        raise ValueError("outcomes must lie in [0, 1]")
    b0, b1 = _fit(y[ok][None, :], _length_diff(la[ok], lb[ok])[None, :])
    return LengthControl(float(_sigmoid(b0[0])), float(b1[0]))


@dataclass(frozen=True)
class WinRate:
    """A against B over one prompt set. Rates are (wins + ties/2) / judged; None where nothing was judged."""

    prompts: int  # all prompts, invalid ones included
    judged: int  # prompts with a valid outcome in both orders
    wins: int
    losses: int
    ties: int
    invalid: int
    win_rate: float | None
    ci_low: float | None  # percentile bootstrap over the judged prompts (n_boot resamples, seed, level)
    ci_high: float | None
    wilson_low: float | None  # Wilson score interval at the same level
    wilson_high: float | None
    consistency: float | None  # position consistency: judged prompts whose two orders agreed / those judged by
    # the judge (a prompt with consistent None, e.g. identical responses, is left out)
    mean_len_a: float | None  # mean response length in characters over the judged prompts
    mean_len_b: float | None
    by_length: dict  # "a_longer", "b_longer", "same_length": {"judged", "win_rate", "wilson_low", "wilson_high"}
    lc_win_rate: float | None  # length-controlled win rate (length_controlled)
    lc_ci_low: float | None  # bootstrap of the LC rate: min(n_boot, 200) resamples, same seed and level
    lc_ci_high: float | None
    length_coef: float | None  # b1 of the LC regression (log-odds per std of the length difference)
    significant: bool  # the bootstrap interval excludes 0.5
    n_boot: int
    seed: int
    level: float

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One English line, e.g. "A wins 58.0% [51.2, 64.5] of 200 judged prompts (Wilson 51.1-64.6);
        distinguishable from 50%"."""
        if not self.judged:
            return f"No judged prompts: {self.prompts} prompts, {self.invalid} invalid"
        verdict = "distinguishable from 50%" if self.significant else \
            "not distinguishable from 50% (the interval contains it)"
        return (f"A wins {100 * self.win_rate:.1f}% [{100 * self.ci_low:.1f}, {100 * self.ci_high:.1f}] of "
                f"{self.judged} judged prompts (Wilson {100 * self.wilson_low:.1f}-{100 * self.wilson_high:.1f}); "
                f"{verdict}")


def _z(level: float) -> float:
    """The two-sided normal quantile of level; statistics (40 ms to import) only for a level other than 0.95."""
    if level == 0.95:
        return Z95
    from statistics import NormalDist

    return NormalDist().inv_cdf((1 + level) / 2)


def _bucket(y: np.ndarray, z: float) -> dict:
    if not y.size:
        return {"judged": 0, "win_rate": None, "wilson_low": None, "wilson_high": None}
    lo, hi = wilson(float(y.sum()), int(y.size), z)
    return {"judged": int(y.size), "win_rate": float(y.mean()), "wilson_low": lo, "wilson_high": hi}


def summarize(outcomes: Sequence[float | None] | np.ndarray, consistent: Sequence[bool | None],
              len_a: Sequence[float] | np.ndarray, len_b: Sequence[float] | np.ndarray, n_boot: int = 1000,
              seed: int = 0, level: float = 0.95) -> WinRate:
    """Every statistic of WinRate from per-prompt outcomes (1.0, 0.0, 0.5 or None/NaN for invalid), position
    consistency (bool, None when invalid) and response lengths. The Wilson z is the normal quantile of level."""
    y, la, lb = (np.asarray(v, dtype=float) for v in (outcomes, len_a, len_b))
    cons = np.array([c is not None and bool(c) for c in consistent], dtype=bool)
    # None on a judged prompt: not applicable (identical responses, nothing to be consistent about)
    known = np.array([c is not None for c in consistent], dtype=bool)
    if not (y.ndim == 1 and y.shape == la.shape == lb.shape == cons.shape):
        raise ValueError("outcomes, consistent, len_a and len_b must be 1-d and of the same length")
    ok = ~np.isnan(y)
    if not np.isin(y[ok], (0.0, 0.5, 1.0)).all():
        raise ValueError("outcomes must be 1.0 (A wins), 0.0 (B wins), 0.5 (tie) or None/NaN (invalid)")
    yj, la, lb, judged = y[ok], la[ok], lb[ok], int(ok.sum())
    if np.isnan(la).any() or np.isnan(lb).any():
        raise ValueError("a judged prompt needs both lengths")
    counts = {"prompts": int(y.size), "judged": judged, "wins": int((yj == 1).sum()),
              "losses": int((yj == 0).sum()), "ties": int((yj == 0.5).sum()), "invalid": int(y.size - judged)}
    z = _z(level)
    by_length = {"a_longer": _bucket(yj[la > lb], z), "b_longer": _bucket(yj[la < lb], z),
                 "same_length": _bucket(yj[la == lb], z)}
    if not judged:
        none = dict.fromkeys(("win_rate", "ci_low", "ci_high", "wilson_low", "wilson_high", "consistency",
                              "mean_len_a", "mean_len_b", "lc_win_rate", "lc_ci_low", "lc_ci_high", "length_coef"))
        return WinRate(**counts, **none, by_length=by_length, significant=False, n_boot=n_boot, seed=seed,
                       level=level)
    rate, wl = float(yj.mean()), wilson(float(yj.sum()), judged, z)
    ci = bootstrap_interval(yj, n_boot, seed, level)
    d = _length_diff(la, lb)  # b0 ignores d's scale (but for the tiny L2): resamples keep this std
    lc = length_controlled(yj, la, lb)
    lc_ci = _percentiles(_resampled(judged, min(n_boot, 200), seed,
                                    lambda idx: _sigmoid(_fit(yj[idx], d[idx])[0])), level)
    return WinRate(**counts, win_rate=rate, ci_low=ci[0], ci_high=ci[1], wilson_low=wl[0], wilson_high=wl[1],
                   consistency=float(cons[ok & known].mean()) if (ok & known).any() else None,
                   mean_len_a=float(la.mean()), mean_len_b=float(lb.mean()), by_length=by_length,
                   lc_win_rate=lc.win_rate, lc_ci_low=lc_ci[0], lc_ci_high=lc_ci[1], length_coef=lc.length_coef,
                   significant=ci[0] > 0.5 or ci[1] < 0.5, n_boot=n_boot, seed=seed, level=level)
