"""FRFT filters against a small hand-worked table: the floor, ties, too few candidates, split-even."""

from __future__ import annotations

import json

import pytest

from curate import strategies
from curate.errors import CurateError
from curate.explain import explain
from curate.filters import BUILTIN_PARAMS, HEADER_KEYS, load_sql, run_filter, strategy_path
from curate.resources import sql_dir

from .conftest import HAND_SIMS, hand_scored_ws, query

TABLE = HAND_SIMS  # eps = 0.2 throughout unless said


@pytest.fixture
def fws(cli, tmp_path):
    return hand_scored_ws(cli, tmp_path)


def by_id(ws, *names):
    """Tied pairs in the order the filters break ties: by pair_id."""
    return sorted(names, key=lambda n: ws.ids[n])


def picked(ws, name):
    rows = query(ws.root, "select sp.pair_id, sp.rank, sp.score, sp.picked_by from subset_pairs sp "
                          "join subsets s using (subset_id) where s.name = $n order by sp.rank", {"n": name})
    return [(ws.name_of[p], r, s, b) for p, r, s, b in rows]


def names(ws, name):
    return [r[0] for r in picked(ws, name)]


def test_positive_ranks_by_pos_sim_above_the_floor_with_ties_by_pair_id(fws):
    r = run_filter(fws, "positive", eps=0.2, size=5, iteration=1)
    assert r.name == "frft-positive-it1" and r.rows == 5
    # p3 sits exactly on the floor (0.8) and is not above it
    assert names(fws, r.name) == ["p9", "p0", "p1", *by_id(fws, "p2", "p5", "p6")[:2]]
    assert [x[1] for x in picked(fws, r.name)] == [1, 2, 3, 4, 5]
    assert [x[2] for x in picked(fws, r.name)] == [0.96875, 0.9375, 0.90625, 0.875, 0.875]


def test_negative_and_overall(fws):
    run_filter(fws, "negative", eps=0.2, size=3, iteration=1)
    assert names(fws, "frft-negative-it1") == ["p8", "p3", "p1"]
    r = run_filter(fws, "overall", eps=0.2, size=3, iteration=1)
    # both above the floor: p1, p2, p6, p8; p1 and p8 tie on the sum 1.8125
    assert names(fws, r.name) == [*by_id(fws, "p1", "p8"), "p2"]
    assert [x[2] for x in picked(fws, r.name)] == [1.8125, 1.8125, 1.75]
    assert r.counts["both_above_floor"] == 4 and r.counts["scored"] == 10


def test_frft_eq3_takes_either_side_by_the_larger_similarity(fws):
    r = run_filter(fws, "frft", eps=0.2, size=4, iteration=1)
    assert names(fws, r.name) == ["p8", "p9", *by_id(fws, "p0", "p3")]
    assert [x[3] for x in picked(fws, r.name)] == ["neg", "pos"] + ["pos" if n == "p0" else "neg"
                                                                    for n in by_id(fws, "p0", "p3")]
    assert r.counts["either_above_floor"] == 9  # all but p7


def test_too_few_candidates_gives_a_smaller_subset_and_says_so(fws, cli):
    r = run_filter(fws, "overall", eps=0.2, size=2000, iteration=1)
    assert (r.rows, r.short) == (4, True)
    out = cli("filter", "-w", fws.root, "-s", "overall", "--eps", "0.2", "-i", "1")
    assert out.exit_code == 0 and "fewer candidates pass the floor than --size 2,000" in out.stderr
    assert "the subset has 4 rows" in out.stderr


def test_split_even_keeps_both_picks_by_default(fws):
    r = run_filter(fws, "split-even", eps=0.2, size=6, iteration=1)
    rows = picked(fws, r.name)
    assert sorted((n, b) for n, _, _, b in rows) == sorted(
        [("p9", "pos"), ("p0", "pos"), ("p1", "pos"), ("p8", "neg"), ("p3", "neg"), ("p1", "neg")])
    assert (r.rows, r.distinct_pairs, r.counts["picked_twice"]) == (6, 5, 1)
    assert r.counts["picked_by"] == {"neg": 3, "pos": 3}
    assert [x[1] for x in rows] == [1, 2, 3, 4, 5, 6]  # one ranking over both halves, by score


def test_split_even_distinct_fills_with_distinct_pairs(fws):
    r = run_filter(fws, "split-even", eps=0.2, size=6, iteration=1, distinct=True)
    rows = picked(fws, r.name)
    assert (r.rows, r.distinct_pairs) == (6, 6)
    neg = [n for n, _, _, b in rows if b == "neg"]
    # p1 went to the pos half, so the neg half takes the next one: p2 or p4 (tied at 0.875) by pair_id
    assert sorted(neg) == sorted(["p8", "p3", by_id(fws, "p2", "p4")[0]])


def test_split_even_odd_size_gives_the_extra_pick_to_the_pos_half(fws):
    r = run_filter(fws, "split-even", eps=0.2, size=5, iteration=1)
    assert r.counts["picked_by"] == {"neg": 2, "pos": 3}


def test_aggregate_max_uses_the_best_sample(fws):
    run_filter(fws, "positive", eps=0.2, size=10, iteration=1)
    assert "p7" not in names(fws, "frft-positive-it1")
    run_filter(fws, "positive", eps=0.2, size=10, iteration=1, aggregate="max", name="pos-max")
    assert names(fws, "pos-max")[0] == "p7"


def test_same_inputs_give_the_same_subset(fws):
    a = run_filter(fws, "split-even", eps=0.2, size=6, iteration=1)
    rows_a = picked(fws, a.name)
    b = run_filter(fws, "split-even", eps=0.2, size=6, iteration=1)
    assert b.replaced and a.subset_id == b.subset_id and picked(fws, b.name) == rows_a
    assert query(fws.root, "select count(*) from subsets")[0][0] == 1
    files = fws.files("subset_pairs")
    assert len(files) == 1


def test_the_latest_iteration_is_the_default(fws):
    r = run_filter(fws, "positive", eps=0.2, size=5)
    assert r.iteration == 2 and r.name == "frft-positive-it2" and r.rows == 0


def test_manifest_records_sql_params_model_and_counts(fws):
    r = run_filter(fws, "overall", eps=0.25, size=3, iteration=1)
    m = json.loads(open(r.manifest).read())
    assert m["sql"] == strategy_path("overall").read_text()
    assert m["bound"] == {"eps": 0.25, "size": 3, "iteration": 1, "branch": "main", "model_id": "m-1",
                          "aggregate": "mean"}
    assert m["params"]["floor"] == 0.75 and m["embedding_model"]["model_id"] == "m-1"
    assert m["counts"]["rows"] == 3 and m["header"]["paper"] == "FRFT section 5.3, Part 1"
    assert m["versions"]["duckdb"]
    row = query(fws.root, "select strategy, iteration, sql_sha256, params->>'eps' from subsets")[0]
    assert row == ("overall", 1, m["sql_sha256"], "0.25")


def test_all_strategies_makes_the_four_parts(fws, cli):
    r = cli("filter", "-w", fws.root, "--all-strategies", "--eps", "0.2", "-i", "1", "--size", "4", "--json", "-q")
    assert r.exit_code == 0, r.output
    got = {x["name"]: x["counts"]["rows"] for x in json.loads(r.stdout)}
    assert got == {"frft-overall-it1": 4, "frft-split-even-it1": 4, "frft-negative-it1": 4, "frft-positive-it1": 4}
    listing = cli("subsets", "-w", fws.root, "-f", "json")
    assert sorted(x["name"] for x in json.loads(listing.stdout)) == sorted(got)


def test_a_users_sql_file_with_a_parameter(fws, tmp_path, cli):
    f = tmp_path / "short_chosen.sql"
    f.write_text("-- keeps: pairs scored in $iteration whose chosen is at most $max_len characters\n"
                 "select s.pair_id, length(p.chosen) as score, 'short' as reason\n"
                 "from similarities s join pairs p using (pair_id)\n"
                 "where s.iteration = $iteration and length(p.chosen) <= $max_len order by s.pair_id\n")
    r = cli("filter", "-w", fws.root, "--sql-file", f, "-p", "max_len", "7", "-i", "1", "-q")
    assert r.exit_code == 0, r.output
    rows = query(fws.root, "select sp.rank, sp.picked_by, sp.reason, s.strategy from subset_pairs sp "
                           "join subsets s using (subset_id) where s.name = 'short_chosen-it1' order by rank")
    assert len(rows) == 10 and rows[0] == (1, "sql", "short", "short_chosen")  # ' good i' is 7 characters


@pytest.mark.parametrize("sql, message", [
    ("select pair_id as id from similarities", "returns columns id but no pair_id"),
    ("select pair_id, pos_sim from similarities", "returns column(s) pos_sim that a filter may not"),
    ("select 'nope' as pair_id", "returned 1 pair_id(s) that are not in `pairs`"),
    ("select pair_id from similarities where pos_sim > $cut", "uses $cut with no value: pass -p cut VALUE"),
    ("select pair_id from similarities; select 1", "exactly one SELECT statement; found 2"),
    ("create table x as select 1", "a filter is a SELECT statement"),
    ("select pair_id from nowhere", "the filter failed"),
])
def test_a_sql_file_that_breaks_the_contract(fws, tmp_path, sql, message):
    f = tmp_path / "bad.sql"
    f.write_text(sql)
    with pytest.raises(CurateError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")):
        run_filter(fws, sql_file=f, iteration=1)
    assert query(fws.root, "select count(*) from subsets")[0][0] == 0  # nothing half-written


def test_bad_input_messages(fws, cli):
    with pytest.raises(CurateError, match=r"--eps must be in \(0, 2\]"):
        run_filter(fws, "overall", eps=0, iteration=1)
    with pytest.raises(CurateError, match=r"--eps must be in \(0, 2\]"):
        run_filter(fws, "overall", eps=2.5, iteration=1)
    with pytest.raises(CurateError, match="--size must be at least 1"):
        run_filter(fws, "overall", size=0, iteration=1)
    with pytest.raises(CurateError, match="Known strategies: frft, overall, split-even, negative, positive"):
        run_filter(fws, "bogus", iteration=1)
    with pytest.raises(CurateError, match="Iteration 3 of branch 'main' has no scores: run `curate score --iteration 3`"):
        run_filter(fws, "overall", iteration=3)
    with pytest.raises(CurateError, match="--distinct applies to split-even"):
        run_filter(fws, "overall", iteration=1, distinct=True)
    with pytest.raises(CurateError, match="-p eps is set by the runner"):
        run_filter(fws, sql_file=strategy_path("overall"), iteration=1, user_params={"eps": 0.1})
    r = cli("filter", "-w", fws.root, "-s", "bogus")
    assert r.exit_code == 2 and "'bogus' is not one of 'frft', 'overall', 'split-even'" in r.stderr
    r = cli("explain", "abc", "--subset", "nope", "-w", fws.root)
    assert r.exit_code == 1 and "No subset named 'nope'. There are none yet" in r.stderr


def test_explain_in_cut_by_size_and_below_the_floor(fws):
    run_filter(fws, "positive", eps=0.2, size=3, iteration=1)
    e = explain(fws, fws.ids["p9"], "frft-positive-it1")
    assert e["selected"] and e["reason"] == "picked by pos at rank 1 of 3 with score 0.9688"
    e = explain(fws, fws.ids["p8"][:10], "frft-positive-it1")  # a prefix works
    assert not e["selected"] and e["pos_sim"] == 0.8125
    assert e["reason"] == ("a candidate of the filter at rank 7 of 7 (score 0.8125), but only the top 3 are kept "
                           "(the last kept scored 0.9062)")
    e = explain(fws, fws.ids["p3"], "frft-positive-it1")
    assert e["reason"] == ("fails the filter's condition: pos_sim 0.8000 <= floor 0.8, neg_sim 0.9375 > floor 0.8; "
                           "positive needs pos_sim above the floor")


def test_explain_split_even_halves_and_unscored_pairs(fws, cli):
    run_filter(fws, "split-even", eps=0.2, size=4, iteration=1)
    e = explain(fws, fws.ids["p1"], "frft-split-even-it1")
    assert not e["selected"]
    assert "a candidate of the pos half at rank 3 of 7" in e["reason"] and "only the top 2 are kept" in e["reason"]
    assert "a candidate of the neg half at rank 3 of 6" in e["reason"]
    run_filter(fws, "positive", eps=0.2, size=3, iteration=2, name="it2")
    e = explain(fws, fws.ids["p0"], "it2")
    assert e["reason"] == "not scored: it has no generation in branch 'main', iteration 2"
    r = cli("explain", fws.ids["p9"], "--subset", "frft-split-even-it1", "-w", fws.root)
    assert r.exit_code == 0 and "IN: picked by pos at rank 2 of 4 with score 0.9688" in r.stdout


@pytest.mark.parametrize("strategy", strategies.names())
def test_every_shipped_filter_follows_the_header_contract(strategy):
    f = load_sql(strategy_path(strategy))
    assert set(HEADER_KEYS) <= set(f.header), f"{f.path} header lacks {set(HEADER_KEYS) - set(f.header)}"
    assert f.header["strategy"] == strategy
    listed = {p.strip() for p in f.header["params"].split(",")}
    assert listed == f.params, f"{f.path}: header params {listed} != used {f.params}"
    assert f.params <= set(BUILTIN_PARAMS)
    assert f.header["returns"].split(", ")[0] == "pair_id"
    assert f.header["paper"].startswith(("FRFT section", "Secrets of RLHF II, section"))
    assert strategies.get(strategy).params == f.params  # what the registry reads from the header


def test_the_sql_folder_holds_exactly_the_strategies():
    assert sorted(p.name for p in sql_dir().glob("*.sql")) == sorted(s.sql for s in strategies.REGISTRY.values())


def test_a_new_strategy_is_one_sql_file_and_one_registry_entry(fws, cli, tmp_path, monkeypatch):
    """Adding a strategy takes a SELECT and a registry entry; the CLI, --help, explain and the reports follow."""
    sql = tmp_path / "close_pos.sql"
    sql.write_text(
        "-- strategy: close-pos\n"
        "-- keeps: pairs with pos_sim above 1 - $eps whose chosen response is close to the policy; top $size\n"
        "-- params: eps, size, iteration, branch, model_id\n"
        "-- paper: FRFT section 5.3, a variant of Part 4\n"
        "-- returns: pair_id, rank, score, picked_by\n"
        "select pair_id, row_number() over (order by pos_sim desc, pair_id) as rank, pos_sim as score,\n"
        "       'pos' as picked_by\n"
        "from similarities\n"
        "where branch = $branch and iteration = $iteration and model_id = $model_id and pos_sim > 1 - $eps\n"
        "order by rank limit $size\n")
    monkeypatch.setattr(strategies, "REGISTRY", dict(strategies.REGISTRY))  # the registry is back after the test
    strategies.register(strategies.Strategy("close-pos", str(sql), "needs pos_sim above the floor"))
    assert strategies.names()[-1] == "close-pos" and strategies.order_key("close-pos") < strategies.order_key("zzz")
    assert "close-pos (FRFT section 5.3, a variant of Part 4)" in " ".join(cli("filter", "--help").stdout.split())
    r = cli("filter", "-w", fws.root, "--strategy", "close-pos", "--eps", "0.2", "--size", "3", "-i", "1", "--json",
            "-q")
    assert r.exit_code == 0, r.output
    assert names(fws, "frft-close-pos-it1") == names(fws, run_filter(fws, "positive", eps=0.2, size=3,
                                                                     iteration=1).name)
    e = explain(fws, fws.ids["p3"], "frft-close-pos-it1")  # explain reads the new entry's condition
    assert e["reason"].endswith("close-pos needs pos_sim above the floor")
    r = cli("filter", "-w", fws.root, "--strategy", "close-pos-typo", "-i", "1")
    assert r.exit_code == 2 and "close-pos" in r.stderr  # the choices list it
    from curate.run.config import parse

    cfg = parse({"data": {"sources": ["demo"]}, "run": {"strategies": ["positive", "close-pos"]}})
    assert cfg.run.strategies == ["positive", "close-pos"]  # a branch of `curate run`
    with pytest.raises(CurateError, match="valid: frft, overall, split-even, negative, positive, random, all, close-pos"):
        parse({"data": {"sources": ["demo"]}, "run": {"strategies": ["close"]}})


# -- the baselines ----------------------------------------------------------------------------------------
def hand_draw(ws, seed: int, size: int) -> list[str]:
    """The random baseline worked by hand: the size smallest md5("<seed>:<pair_id>") of the scored pairs."""
    import hashlib

    scored = [r[0] for r in query(ws.root, "select pair_id from similarities where iteration = 1")]
    drawn = sorted(scored, key=lambda p: (hashlib.md5(f"{seed}:{p}".encode()).hexdigest(), p))[:size]
    return [ws.name_of[p] for p in drawn]


def test_random_draws_the_same_pairs_for_the_same_seed(fws, tmp_path, cli):
    r = run_filter(fws, "random", size=4, seed=0, iteration=1)
    assert r.name == "random-it1" and r.rows == 4 and r.params["seed"] == 0
    first = names(fws, r.name)
    assert first == hand_draw(fws, 0, 4)
    assert {x[3] for x in picked(fws, r.name)} == {"random"}
    # the same seed in another workspace with the same pairs: the same subset
    other = hand_scored_ws(cli, tmp_path / "other")
    run_filter(other, "random", size=4, seed=0, iteration=1)
    assert names(other, "random-it1") == first
    # another seed draws other pairs (worked by hand too); eps plays no part
    run_filter(fws, "random", size=4, seed=7, iteration=1, eps=2.0, name="r7")
    assert names(fws, "r7") == hand_draw(fws, 7, 4) != first


def test_random_asks_for_more_than_are_scored(fws, cli):
    r = cli("filter", "--strategy", "random", "--size", "50", "--seed", "3", "-i", "1", "-w", fws.root)
    assert r.exit_code == 0, r.output
    assert "random-it1: 10 of 10 scored pairs (random, seed 3" in r.stderr
    assert "only 10 pairs are scored, fewer than --size 50" in r.stderr


def test_all_keeps_every_scored_pref_pair(fws, cli):
    r = cli("filter", "--strategy", "all", "-i", "1", "-w", fws.root, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)[0]
    assert out["name"] == "all-it1" and out["counts"]["rows"] == 10 and "seed" not in out["params"]
    assert sorted(names(fws, "all-it1")) == sorted(fws.name_of[p] for p in fws.ids.values())
