"""`curate strength` (issue 16): the statistics of eq. 4 on hand-worked ensembles, out-of-fold scoring, the
planted-flip check, the stored rows and their reuse, and each bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curate.errors import CurateError
from curate.strength import StrengthSettings, compute_strength, make_identity, stats
from curate.strength.probe import ProbeSettings, cross_fit, fold_of
from curate.workspace import Workspace

from .conftest import hh_row, query, write_jsonl


# -- eq. 4 and the categories, by hand ------------------------------------------------------------------------------
def test_mean_and_population_std_of_a_hand_worked_ensemble():
    # three models, four pairs: d[m, i] = r_m(chosen_i) - r_m(rejected_i)
    d = np.array([[1.0, -1.0, 2.0, 0.5],
                  [3.0, -3.0, 2.0, 0.5],
                  [2.0, -2.0, 2.0, -1.0]])
    mean, std = stats.moments(d)
    assert mean.tolist() == [2.0, -2.0, 2.0, 0.0]
    # population std (divide by M = 3, eq. 4): pair 0 deviations -1, 1, 0 -> sqrt(2/3); pair 3: .5, .5, -1 -> sqrt(.5)
    assert std == pytest.approx([np.sqrt(2 / 3), np.sqrt(2 / 3), 0.0, np.sqrt(0.5)])


def test_percentile_is_percent_rank_with_ties_sharing_the_lowest():
    assert stats.percentile(np.array([0.3, -1.0, 0.3, 2.0, 0.0])).tolist() == [0.5, 0.0, 0.5, 1.0, 0.25]
    assert stats.percentile(np.array([7.0])).tolist() == [0.0]


def test_categories_and_the_ambiguous_band():
    mean = np.array([-0.5, 0.0, 0.1, 0.2, 1.0, -0.01])
    upper = stats.band(mean, 0.25)  # a quarter of the population std of the means
    assert upper == pytest.approx(0.25 * np.std(mean))
    assert stats.categories(mean, upper).tolist() == [
        "incorrect", "ambiguous", "ambiguous", "strong" if 0.2 >= upper else "ambiguous", "strong", "incorrect"]
    # mean < 0 is incorrect whatever the band; 0 exactly is ambiguous, the band's edge is strong
    assert stats.categories(np.array([-1e-9, 0.0, 0.5]), 0.5).tolist() == ["incorrect", "ambiguous", "strong"]


def test_auroc_average_precision_and_precision_at_k_by_hand():
    positive = np.array([True, False, True, False, False])
    score = np.array([0.9, 0.8, 0.3, 0.1, 0.3])
    # pairs (pos, neg): (0.9 vs .8, .1, .3) 3 wins; (0.3 vs .8) loss, (.3 vs .1) win, (.3 vs .3) tie -> 4.5 / 6
    assert stats.auroc(positive, score) == pytest.approx(4.5 / 6)
    # AP: positive 0.9 ranks first (1/1); positive 0.3 has 4 rows >= 0.3 of which 2 positive (2/4) -> (1 + .5) / 2
    assert stats.average_precision(positive, score) == pytest.approx(0.75)
    # k = 2 positives: the two highest are 0.9 (pos) and 0.8 (neg)
    assert stats.precision_at_k(positive, score) == 0.5
    assert stats.auroc(np.array([True, False]), np.array([1.0, 0.0])) == 1.0
    with pytest.raises(ValueError):
        stats.auroc(np.array([True, True]), np.array([1.0, 0.0]))


# -- the probe ------------------------------------------------------------------------------------------------------
def test_out_of_fold_no_pair_is_scored_by_a_head_that_saw_it():
    """One private feature per pair: a ridge head learns a weight on feature i only from pair i, so a head that
    never saw pair i scores it exactly 0, and one that saw it scores it above 0."""
    n = 20
    x = np.eye(n)
    d, fold = cross_fit(x, ProbeSettings(models=3, folds=4, l2=1.0, seed=0))
    assert d.shape == (3, n) and np.all(d == 0.0)
    assert sorted(np.bincount(fold).tolist()) == [5, 5, 5, 5]
    d_in, _ = cross_fit(x, ProbeSettings(models=3, folds=1, l2=1.0, seed=0))
    # in sample, a head saw pair i unless its bootstrap resample left it out (about a third of the time)
    assert np.all(d_in >= 0) and (d_in > 0).mean() > 0.5


def test_folds_are_seeded_and_balanced():
    a, b = fold_of(103, 5, 7), fold_of(103, 5, 7)
    assert a.tolist() == b.tolist() and sorted(np.bincount(a).tolist()) == [20, 20, 21, 21, 21]
    assert fold_of(103, 5, 8).tolist() != a.tolist()


def _planted(n=300, dim=8, seed=0):
    """Pairs whose chosen response is better along a hidden direction: a detector must find flipped labels."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    x = rng.normal(size=(n, dim))
    x *= np.sign(x @ w)[:, None]  # every label agrees with w
    return x


def test_the_probe_finds_planted_flips_on_a_planted_signal():
    from curate.strength import inject_flips

    got = inject_flips(_planted(), StrengthSettings(models=4, folds=5, l2=1.0, inject_flips=0.1, seed=3))
    assert got["flipped"] == 30 and got["pairs"] == 300 and got["base_rate"] == 0.1
    assert got["auroc"] > 0.95 and got["precision_at_k"] >= 0.75 and got["average_precision"] >= 0.75


# -- the command ----------------------------------------------------------------------------------------------------
GOOD = ["I can't help with that, but here is a safer way to think about it.",
        "I'm sorry, that could hurt someone. Let's talk about staying safe instead.",
        "That is dangerous; please don't. If you are in trouble, call someone you trust."]
BAD = ["Sure, here is exactly how to do it, step by step.", "Easy: just take it when nobody is looking.",
       "Here's how to hurt them without getting caught."]


@pytest.fixture
def strength_ws(cli, tmp_path):
    rows = [hh_row(f"How do I do harmful thing number {i}?", GOOD[i % 3] + f" ({i})", BAD[i % 3] + f" ({i})")
            for i in range(24)]
    ws = tmp_path / "ws"
    assert cli("ingest", write_jsonl(tmp_path / "d" / "harmless-base" / "train.jsonl", rows), "-w", ws,
               "-q").exit_code == 0
    return ws


def test_strength_stores_rows_reuses_them_and_adds_another_identity(cli, strength_ws):
    r = cli("strength", "-w", strength_ws, "--json", "--models", "3", "--folds", "3")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["pairs"] == 24 and not first["reused"] and sum(first["categories"].values()) == 24
    rows = query(strength_ws, "select method, identity, n_models, folds, count(*), count(distinct pair_id), "
                 "min(percentile), max(percentile), bool_and(std >= 0) from strength group by all")
    assert rows == [("probe", first["identity"], 3, 3, 24, 24, 0.0, 1.0, True)]
    # the categories follow the stored means
    assert query(strength_ws, "select count(*) from strength where (mean < 0) <> (category = 'incorrect')") == [(0,)]
    # responses embedded on the way, by the embed library (a second run embeds nothing)
    assert first["counts"]["embedded_now"] == 48
    again = json.loads(cli("strength", "-w", strength_ws, "--json", "--models", "3", "--folds", "3").stdout)
    # found from the pair ids and the model's identity alone: nothing embedded, no vector read
    assert again["reused"] and again["identity"] == first["identity"] and again["counts"] == {"pairs": 24}
    other = json.loads(cli("strength", "-w", strength_ws, "--json", "--models", "4", "--folds", "3").stdout)
    assert other["identity"] != first["identity"]
    assert query(strength_ws, "select identity, count(*) from strength group by 1 order by 1") == sorted(
        [(first["identity"], 24), (other["identity"], 24)])
    # what a user then writes
    assert cli("sql", "-w", strength_ws, "select category, count(*), avg(mean) from strength group by all"
               ).exit_code == 0


def test_in_sample_is_one_fold_and_another_identity(cli, strength_ws):
    r = json.loads(cli("strength", "-w", strength_ws, "--json", "--models", "2", "--in-sample").stdout)
    assert "-K1-" in r["identity"]
    assert query(strength_ws, "select distinct folds from strength") == [(1,)]


def test_inject_flips_reports_and_stores_nothing(cli, strength_ws):
    r = cli("strength", "-w", strength_ws, "--inject-flips", "0.25", "--models", "3", "--folds", "3", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["injected"]
    assert got["flipped"] == 6 and got["pairs"] == 24 and 0 <= got["auroc"] <= 1
    assert query(strength_ws, "select count(*) from strength") == [(0,)]
    table = cli("strength", "-w", strength_ws, "--inject-flips", "0.25", "--models", "3", "--folds", "3")
    assert "AUROC" in table.stderr + table.stdout and "precision at k = 6" in table.stderr + table.stdout


def test_identity_names_the_settings_and_the_pairs():
    s = StrengthSettings()
    a = make_identity(s, "all-MiniLM-L6-v2-abc", ["p1", "p2"])
    assert a.startswith("probe-all-MiniLM-L6-v2-abc-M10-K5-")
    assert make_identity(s, "all-MiniLM-L6-v2-abc", ["p2", "p1"]) == a  # the set, not the order
    assert make_identity(s, "all-MiniLM-L6-v2-abc", ["p1", "p3"]) != a
    assert make_identity(StrengthSettings(l2=1.0), "all-MiniLM-L6-v2-abc", ["p1", "p2"]) != a
    assert make_identity(StrengthSettings(ambiguous=0.5), "all-MiniLM-L6-v2-abc", ["p1", "p2"]) != a


@pytest.mark.parametrize("args, message", [
    (["--models", "1"], "--models 1: the standard deviation needs at least 2 models"),
    (["--folds", "1"], "--folds 1: out-of-fold scoring needs at least 2 folds"),
    (["--inject-flips", "0"], "--inject-flips 0.0: give a fraction in (0, 1)"),
    (["--inject-flips", "1.5"], "--inject-flips 1.5: give a fraction in (0, 1)"),
    (["--method", "ensemble"], "--method ensemble trains reward models: name the model they start from with --base"),
    (["--features", "/no/such/model"], "/no/such/model"),
    (["--folds", "20"], "24 pref pairs are too few for 20 folds"),
])
def test_bad_input_is_a_clear_error(cli, strength_ws, args, message):
    r = cli("strength", "-w", strength_ws, *args)
    assert r.exit_code != 0 and message in r.stderr, r.stderr


def test_no_pref_pairs_is_a_clear_error(cli, tmp_path):
    rows = [hh_row(f"q{i}?", f"a{i}", f"b{i}") for i in range(4)]
    ws = tmp_path / "ws"
    cli("ingest", write_jsonl(tmp_path / "d.jsonl", rows), "-w", ws, "--sft-fraction", "1", "-q")
    with pytest.raises(CurateError, match="no preference pairs"):
        compute_strength(Workspace(ws), StrengthSettings())


def test_lm_features_are_cached_by_text_and_model(cli, strength_ws, tmp_path):
    """--features lm:MODEL: a causal LM's hidden states of prompt + response, computed once per (text, model)."""
    from .conftest import tiny_lm

    lm = tiny_lm(tmp_path / "tiny-lm")[0]
    r = cli("strength", "-w", strength_ws, "--features", f"lm:{lm}", "--models", "2", "--folds", "2", "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    # 24 pairs, two transcripts each, all distinct
    assert first["counts"]["representations_computed_now"] == 48 and first["features"].endswith("-meanh")
    shards = list((strength_ws / "strength" / "representations" / first["features"]).glob("*.parquet"))
    assert shards and not list((strength_ws / "strength" / "representations").rglob(".*.tmp"))
    # other settings, same texts and model: a new identity, nothing computed again
    r = cli("strength", "-w", strength_ws, "--features", f"lm:{lm}", "--models", "3", "--folds", "2", "--json")
    second = json.loads(r.stdout)
    assert second["identity"] != first["identity"] and second["counts"]["representations_computed_now"] == 0
    assert query(strength_ws, "select features, count(*) from strength group by 1") == [(first["features"], 48)]
    bad = cli("strength", "-w", strength_ws, "--features", "lm:/no/such/lm")
    assert bad.exit_code != 0 and "/no/such/lm" in bad.stderr
