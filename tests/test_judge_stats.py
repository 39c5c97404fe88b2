"""curate.stats against values worked out by hand or by independent, loop-based code."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.stats import WinRate, bootstrap_interval, length_controlled, summarize, wilson


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- Wilson ---------------------------------------------------------------------------------------------------


def test_wilson_closed_form_by_hand():
    z, n, p = 1.96, 10, 0.8
    centre = p + z**2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    expected = ((centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n))
    assert wilson(8, 10, z=1.96) == pytest.approx(expected, abs=1e-12)
    assert wilson(8, 10, z=1.96) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_wilson_published_values():
    lo, hi = wilson(0, 10, z=1.96)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson(5, 10, z=1.96) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10, z=1.96) == pytest.approx((0.7225, 1.0), abs=1e-4)
    # the default z is the exact 97.5% normal quantile: nearly, not exactly, the z = 1.96 values
    assert wilson(5, 10) == pytest.approx(wilson(5, 10, z=1.96), abs=1e-4)
    assert wilson(5, 10) != wilson(5, 10, z=1.96)


def test_wilson_fractional_successes_empty_and_invalid():
    # 3 wins + 3 ties of 8: successes 4.5, p = 0.5625
    z, n, p = 1.959963984540054, 8, 0.5625
    denom = 1 + z * z / n
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson(4.5, 8) == pytest.approx(((p + z * z / (2 * n) - half) / denom,
                                           (p + z * z / (2 * n) + half) / denom), abs=1e-12)
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(11, 10)
    with pytest.raises(ValueError):
        wilson(-1, 10)


@given(n=st.integers(1, 10_000), frac=st.floats(0, 1), z=st.floats(0.5, 4))
def test_wilson_contains_the_estimate(n, frac, z):
    successes = round(frac * 2 * n) / 2  # wins + ties/2
    lo, hi = wilson(successes, n, z)
    assert 0 <= lo <= successes / n + 1e-12 and successes / n - 1e-12 <= hi <= 1


# --- bootstrap ------------------------------------------------------------------------------------------------


def loop_bootstrap(values: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    """The documented draws, one resample at a time: rng.integers(0, n, size=n) per resample, in order."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(values), size=len(values))
        means.append(sum(values[i] for i in idx) / len(values))
    means.sort()
    lo, hi = [], []
    for q, out in (((1 - level) / 2, lo), ((1 + level) / 2, hi)):  # numpy's linear interpolation, by hand
        pos = q * (n_boot - 1)
        k = math.floor(pos)
        out.append(means[k] + (pos - k) * (means[min(k + 1, n_boot - 1)] - means[k]))
    return lo[0], hi[0]


def test_bootstrap_is_seeded():
    values = np.random.default_rng(7).choice([0.0, 0.5, 1.0], size=300)
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    assert bootstrap_interval(values, seed=3) != bootstrap_interval(values, seed=4)


def test_bootstrap_reproduced_by_a_loop():
    values = np.random.default_rng(11).choice([0.0, 0.5, 1.0], size=37)
    assert bootstrap_interval(values, n_boot=250, seed=5, level=0.9) == pytest.approx(
        loop_bootstrap(values, 250, 5, 0.9), abs=1e-12)


def test_bootstrap_chunks_draw_like_one_matrix(monkeypatch):
    """Small chunks (many index matrices) draw exactly what one big matrix does."""
    from curate import stats

    values = np.random.default_rng(2).random(50)
    whole = bootstrap_interval(values, n_boot=300, seed=9)
    monkeypatch.setattr(stats, "_CHUNK", 50 * 7)  # 7 resamples per chunk, the last one short
    assert bootstrap_interval(values, n_boot=300, seed=9) == whole


def test_bootstrap_constant_and_contains_mean():
    assert bootstrap_interval(np.full(40, 0.75)) == (0.75, 0.75)
    lo, hi = bootstrap_interval(np.full(40, 0.3))
    assert lo == pytest.approx(0.3, abs=1e-15) and hi == pytest.approx(0.3, abs=1e-15)
    values = np.random.default_rng(1).choice([0.0, 0.5, 1.0], size=200, p=[0.3, 0.2, 0.5])
    lo, hi = bootstrap_interval(values)
    assert lo < values.mean() < hi and 0 <= lo and hi <= 1
    # close to the normal approximation: half-width about 1.96 * sd / sqrt(n)
    assert (hi - lo) / 2 == pytest.approx(1.96 * values.std() / math.sqrt(200), rel=0.15)
    mlo, mhi = bootstrap_interval(values, stat=np.median)
    assert mlo <= np.median(values) <= mhi
    with pytest.raises(ValueError):
        bootstrap_interval(np.array([]))


def test_bootstrap_large_is_fast():
    """1000 resamples of 10,000 prompts, drawn in bounded chunks."""
    import time

    values = np.random.default_rng(0).random(10_000)
    t = time.perf_counter()
    bootstrap_interval(values, n_boot=1000)
    assert time.perf_counter() - t < 5


# --- length-controlled win rate -------------------------------------------------------------------------------


def simulate(n: int, d_mean: float, b0: float = 0.4, b1: float = 1.5, seed: int = 0):
    """Verdicts with a known length effect: the standardised length difference d ~ N(d_mean, 1), 200 characters per
    unit, and P(A wins) = sigmoid(b0 + b1 d)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(d_mean, 1.0, n)
    len_b = rng.integers(300, 700, n).astype(float)
    len_a = len_b + np.round(200 * d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(b0 + b1 * d)))).astype(float)
    return y, len_a, len_b


def test_length_controlled_recovers_b0_without_confounding():
    y, la, lb = simulate(20_000, 0.0)
    rate, coef = length_controlled(y, la, lb)
    assert rate == pytest.approx(sigmoid(0.4), abs=0.02)
    assert coef == pytest.approx(1.5, abs=0.1)


def test_length_controlled_removes_a_length_confound():
    """A is systematically longer (d has mean 1): the raw rate is far above sigmoid(0.4), the LC rate is not.
    d is divided by its std and not centred: centring would read the rate at the mean difference instead."""
    y, la, lb = simulate(20_000, 1.0)
    assert y.mean() > sigmoid(0.4) + 0.15
    lc = length_controlled(y, la, lb)
    assert lc.win_rate == pytest.approx(sigmoid(0.4), abs=0.02)
    assert lc.length_coef == pytest.approx(1.5, abs=0.1)  # std(diff) is 200 characters, the simulated unit
    centred = length_controlled(y, la - (la - lb).mean(), lb)
    assert abs(centred.win_rate - sigmoid(0.4)) > 0.1


def test_length_controlled_ties_are_half_wins():
    n = 500
    rng = np.random.default_rng(3)
    la, lb = rng.integers(100, 900, n).astype(float), rng.integers(100, 900, n).astype(float)
    assert length_controlled(np.full(n, 0.5), la, lb) == pytest.approx((0.5, 0.0), abs=1e-9)
    # a tie has the log-likelihood of half a win plus half a loss: every decided prompt counted twice and every tie
    # as one win and one loss is the same likelihood, doubled, with the same lengths (so the same std of d)
    y = rng.choice([0.0, 0.5, 1.0], size=n)
    y[la > lb + 300] = 1.0
    tie = y == 0.5
    y2 = np.concatenate([y[~tie], y[~tie], np.ones(tie.sum()), np.zeros(tie.sum())])
    la2, lb2 = (np.concatenate([v[~tie], v[~tie], v[tie], v[tie]]) for v in (la, lb))
    assert tie.sum() > 100 and length_controlled(y, la, lb).length_coef > 0.3
    assert tuple(length_controlled(y, la, lb)) == pytest.approx(tuple(length_controlled(y2, la2, lb2)), abs=1e-9)
    # with nothing to control for (equal lengths) the LC rate is (wins + ties/2) / n, not the rate without the ties
    assert length_controlled([1.0, 1.0, 1.0, 0.5], [5] * 4, [5] * 4).win_rate == pytest.approx(0.875, abs=1e-5)


def test_length_controlled_degenerate_data():
    # all differences equal: std 0, d = 0, the LC rate is the raw rate and b1 is 0
    y = np.array([1.0, 1.0, 1.0, 0.0, 0.5])
    rate, coef = length_controlled(y, np.full(5, 300.0), np.full(5, 100.0))
    assert rate == pytest.approx(0.7, abs=1e-6) and coef == pytest.approx(0.0, abs=1e-9)
    # perfectly separated (A wins exactly when longer): finite, symmetric, so the rate at equal lengths is 0.5
    d = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    rate, coef = length_controlled((d > 0).astype(float), 100 + 10 * d, np.full(6, 100.0))
    assert math.isfinite(coef) and coef > 5 and rate == pytest.approx(0.5, abs=1e-6)
    rate, coef = length_controlled(np.ones(10), np.arange(10.0), np.zeros(10))
    assert math.isfinite(rate) and rate > 0.99
    # invalid outcomes are left out; none valid gives NaNs
    assert length_controlled([1.0, None, 0.0, float("nan")], [2, 5, 1, 9], [1, 1, 2, 1]) == pytest.approx(
        length_controlled([1.0, 0.0], [2, 1], [1, 2]))
    assert all(math.isnan(v) for v in length_controlled([None, None], [1, 2], [2, 1]))
    with pytest.raises(ValueError):
        length_controlled([1.5], [1], [2])


# --- summarize ------------------------------------------------------------------------------------------------

# outcome, consistent, len_a, len_b
PROMPTS = [
    (1.0, True, 120, 100),  # a_longer, win
    (1.0, True, 80, 80),  # same_length, win
    (0.0, True, 50, 90),  # b_longer, loss
    (0.5, False, 200, 100),  # a_longer, tie: the verdict flipped with the order
    (None, None, 300, 10),  # invalid
    (1.0, True, 150, 60),  # a_longer, win
    (0.5, True, 70, 70),  # same_length, tie: a judge that scored both equally in both orders
    (float("nan"), None, 10, 500),  # invalid
    (0.0, True, 40, 100),  # b_longer, loss
    (0.5, False, 60, 90),  # b_longer, tie
]


def summary(**kw) -> WinRate:
    return summarize(*(list(col) for col in zip(*PROMPTS)), **kw)


def test_summarize_counts_and_rates():
    r = summary()
    assert (r.prompts, r.judged, r.wins, r.losses, r.ties, r.invalid) == (10, 8, 3, 2, 3, 2)
    assert r.win_rate == 4.5 / 8
    assert (r.wilson_low, r.wilson_high) == pytest.approx(wilson(4.5, 8), abs=1e-12)
    assert (r.wilson_low, r.wilson_high) == pytest.approx((0.2589, 0.8255), abs=1e-4)
    assert r.consistency == 6 / 8
    assert r.mean_len_a == 770 / 8 and r.mean_len_b == 690 / 8
    assert r.by_length == {
        "a_longer": {"judged": 3, "win_rate": pytest.approx(2.5 / 3), "wilson_low": pytest.approx(wilson(2.5, 3)[0]),
                     "wilson_high": pytest.approx(wilson(2.5, 3)[1])},
        "b_longer": {"judged": 3, "win_rate": pytest.approx(0.5 / 3), "wilson_low": pytest.approx(wilson(0.5, 3)[0]),
                     "wilson_high": pytest.approx(wilson(0.5, 3)[1])},
        "same_length": {"judged": 2, "win_rate": 0.75, "wilson_low": pytest.approx(wilson(1.5, 2)[0]),
                        "wilson_high": pytest.approx(wilson(1.5, 2)[1])},
    }
    judged = np.array([p[0] for p in PROMPTS if p[0] is not None and not math.isnan(p[0])])
    assert (r.ci_low, r.ci_high) == bootstrap_interval(judged, 1000, 0, 0.95)
    assert r.ci_low < 0.5 < r.ci_high and not r.significant
    la = np.array([p[2] for p in PROMPTS], float)[[0, 1, 2, 3, 5, 6, 8, 9]]
    lb = np.array([p[3] for p in PROMPTS], float)[[0, 1, 2, 3, 5, 6, 8, 9]]
    assert (r.lc_win_rate, r.length_coef) == length_controlled(judged, la, lb)
    assert r.length_coef > 0  # A wins when longer here
    assert r.lc_ci_low <= r.lc_win_rate <= r.lc_ci_high
    assert (r.n_boot, r.seed, r.level) == (1000, 0, 0.95)
    assert r.describe() == (f"A wins 56.2% [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}] of 8 judged prompts "
                            "(Wilson 25.9-82.6); not distinguishable from 50% (the interval contains it)")


def test_summarize_is_seeded_and_json_serialisable():
    assert summary(seed=1) == summary(seed=1)
    a, b = summary(seed=1), summary(seed=2)
    assert (a.ci_low, a.ci_high, a.lc_ci_low, a.lc_ci_high) != (b.ci_low, b.ci_high, b.lc_ci_low, b.lc_ci_high)
    d = json.loads(json.dumps(summary().to_dict(), allow_nan=False))
    assert d["wins"] == 3 and d["by_length"]["same_length"]["win_rate"] == 0.75
    narrow = summary(level=0.8)
    assert narrow.level == 0.8 and narrow.wilson_high - narrow.wilson_low < a.wilson_high - a.wilson_low


def test_summarize_significant():
    n = 200
    rng = np.random.default_rng(0)
    y = np.where(rng.random(n) < 0.7, 1.0, 0.0)
    r = summarize(y, [True] * n, np.full(n, 100), np.full(n, 100))
    assert r.significant and r.ci_low > 0.5
    assert r.describe().endswith("judged prompts (Wilson " + f"{100 * r.wilson_low:.1f}-{100 * r.wilson_high:.1f}); "
                                 "distinguishable from 50%")
    assert r.by_length["a_longer"] == {"judged": 0, "win_rate": None, "wilson_low": None, "wilson_high": None}
    assert r.lc_win_rate == pytest.approx(r.win_rate)  # equal lengths: nothing to control for
    lose = summarize(1 - y, [True] * n, np.full(n, 100), np.full(n, 100))
    assert lose.significant and lose.ci_high < 0.5


def test_summarize_nothing_judged():
    r = summarize([None, float("nan")], [None, None], [10, 20], [20, 10])
    assert (r.prompts, r.judged, r.invalid, r.wins) == (2, 0, 2, 0)
    assert r.win_rate is None and r.ci_low is None and r.wilson_low is None and r.lc_win_rate is None
    assert r.consistency is None and r.mean_len_a is None and not r.significant
    assert r.by_length["a_longer"]["judged"] == 0
    json.dumps(r.to_dict(), allow_nan=False)
    assert "No judged prompts" in r.describe()
    empty = summarize([], [], [], [])
    assert empty.prompts == 0 and empty.win_rate is None


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError):
        summarize([1.0, 0.0], [True], [1, 2], [1, 2])
    with pytest.raises(ValueError):
        summarize([0.7], [True], [1], [2])


def test_imports_numpy_only():
    code = ("import sys, time; import numpy; t = time.perf_counter(); import curate.stats; "
            "print(time.perf_counter() - t); print(any(m in sys.modules for m in ('torch', 'scipy', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and float(out[0]) < 0.1
