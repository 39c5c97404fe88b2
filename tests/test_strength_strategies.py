"""Preference-strength strategies (issue 16) on a hand-worked table: clean, flip, --clean/--flip on top of an FRFT
filter, what explain says, the flipped rows and the margin an export writes, and each bad input."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl
import pytest

from curate.errors import CurateError
from curate.explain import explain
from curate.export import export_subset
from curate.filters import run_filter
from curate.train.data import load_preferences
from curate.workspace import Workspace

from .conftest import hand_scored_ws, hh_row, query, write_jsonl

# Identity A (computed last, so the default): mean strength of p0..p9, percentile = rank / 9 (0 the weakest).
#   ascending: p1 -1.5, p7 -0.8, p3 -0.2, p5 0.05, p2 0.3, p8 0.9, p4 1.2, p9 1.5, p0 2.0, p6 3.0
MEANS_A = {"p0": 2.0, "p1": -1.5, "p2": 0.3, "p3": -0.2, "p4": 1.2, "p5": 0.05, "p6": 3.0, "p7": -0.8, "p8": 0.9,
           "p9": 1.5}
ORDER_A = sorted(MEANS_A, key=MEANS_A.get)
PCT_A = {n: i / 9 for i, n in enumerate(ORDER_A)}
CATEGORY = {n: "incorrect" if m < 0 else "ambiguous" if m < 0.1 else "strong" for n, m in MEANS_A.items()}
# Identity B (computed earlier): the opposite order, so --strength B picks other pairs.
PCT_B = {n: 1 - p for n, p in PCT_A.items()}
ID_A, ID_B = "probe-aaaa1111", "probe-bbbb2222"


def strength_rows(ws: Workspace, identity: str, pct: dict, created: str, names=None) -> None:
    names = list(names or pct)
    means = {n: MEANS_A[n] if identity == ID_A else -MEANS_A[n] for n in names}
    df = pl.DataFrame({
        "pair_id": [ws.ids[n] for n in names], "method": "probe", "identity": identity, "n_models": 4, "folds": 5,
        "mean": [means[n] for n in names], "std": 0.5, "percentile": [pct[n] for n in names],
        "category": ["incorrect" if means[n] < 0 else "ambiguous" if means[n] < 0.1 else "strong" for n in names],
        "created_at": datetime.fromisoformat(created), "features": "test-features",
    })
    with ws.transaction() as tx:
        tx.add("strength", df, key=identity)


@pytest.fixture
def sws(cli, tmp_path):
    """The hand-scored workspace of test_filter (p0..p9, iteration 1) with strength identities A and B."""
    ws = hand_scored_ws(cli, tmp_path)
    strength_rows(ws, ID_B, PCT_B, "2025-01-01 00:00:00")
    strength_rows(ws, ID_A, PCT_A, "2025-01-02 00:00:00")
    return ws


def rows(ws, name):
    """(pair name, rank, score, picked_by, flipped) of a subset, in rank order."""
    out = query(ws.root, "select sp.pair_id, sp.rank, sp.score, sp.picked_by, sp.flipped from subset_pairs sp "
                         "join subsets s using (subset_id) where s.name = $n order by sp.rank", {"n": name})
    return [(ws.name_of[p], r, s, b, f) for p, r, s, b, f in out]


def by_id(ws, *names):
    return sorted(names, key=lambda n: ws.ids[n])


# -- clean ----------------------------------------------------------------------------------------------------
def test_clean_drops_the_pairs_below_the_percentile(sws):
    r = run_filter(sws, "clean", drop_below=0.2)
    # p1 (percentile 0) and p7 (1/9) are below 0.2; the rest in order of mean strength, strongest first
    assert r.name == "clean" and r.iteration == 2 and not r.reads_scores  # the latest scored iteration files it
    assert rows(sws, "clean") == [(n, i + 1, MEANS_A[n], "clean", False)
                                  for i, n in enumerate(["p6", "p0", "p9", "p4", "p8", "p2", "p5", "p3"])]
    assert r.params == {"strength": ID_A, "drop_below": 0.2}
    assert (r.counts["measured"], r.counts["unmeasured"], r.counts["rows"]) == (10, 0, 8)
    m = json.loads(open(r.manifest).read())
    assert m["strength"]["identity"] == ID_A and m["strength"]["pairs"] == 10 and m["embedding_model"] is None
    assert m["bound"] == {"strength": ID_A, "drop_below": 0.2, "drop_categories": []}


def test_clean_drops_categories(sws):
    run_filter(sws, "clean", drop_categories=["incorrect"], name="no-incorrect")
    assert sorted(n for n, *_ in rows(sws, "no-incorrect")) == sorted(set(MEANS_A) - {"p1", "p7", "p3"})
    run_filter(sws, "clean", drop_categories=["incorrect", "ambiguous"], name="strong-only")
    assert sorted(n for n, *_ in rows(sws, "strong-only")) == sorted(n for n, c in CATEGORY.items() if c == "strong")
    # both rules together drop the union: below 0.1 is p1 alone, incorrect adds p7 and p3
    run_filter(sws, "clean", drop_below=0.1, drop_categories=["incorrect"], name="both")
    assert len(rows(sws, "both")) == 7


def test_strength_identity_default_is_the_latest_and_strength_picks_another(sws):
    run_filter(sws, "clean", drop_below=0.2, strength="probe-b", name="b")  # a unique prefix of B
    # under B the order is reversed: the two weakest are p6 and p0
    assert sorted(n for n, *_ in rows(sws, "b")) == sorted(set(MEANS_A) - {"p6", "p0"})
    with pytest.raises(CurateError, match=r"--strength 'probe-' is a prefix of 2 identities"):
        run_filter(sws, "clean", drop_below=0.2, strength="probe-")
    with pytest.raises(CurateError, match=r"--strength 'nope' is not an identity in the strength table; it holds") as e:
        run_filter(sws, "clean", drop_below=0.2, strength="nope")
    assert ID_A in str(e.value) and ID_B in str(e.value)


def test_clean_and_flip_need_no_scores(cli, tmp_path):
    src = write_jsonl(tmp_path / "data" / "harmless-base" / "train.jsonl",
                      [hh_row(f"question {i}?", f"good {i}", f"bad {i}") for i in range(10)])
    root = tmp_path / "ws"
    assert cli("ingest", src, "-w", root, "-q").exit_code == 0
    ws = Workspace(root)
    ws.ids = dict(query(root, "select 'p' || (source_row::varchar), pair_id from pairs"))
    ws.name_of = {v: k for k, v in ws.ids.items()}
    with pytest.raises(CurateError, match=r"No strength rows in this workspace: run `curate strength` first"):
        run_filter(ws, "flip", bottom=0.1)
    strength_rows(ws, ID_A, PCT_A, "2025-01-02 00:00:00", names=[n for n in PCT_A if n != "p9"])  # p9 unmeasured
    r = run_filter(ws, "flip", bottom=0.3)
    assert (r.name, r.iteration, r.rows, r.counts["flipped"], r.counts["unmeasured"]) == ("flip", 0, 9, 3, 1)
    out = cli("filter", "-w", root, "-s", "clean", "--drop-below", "0.2")
    assert out.exit_code == 0, out.output
    assert out.stderr.startswith("clean: 7 rows of 9 measured pref pairs (clean, drop-below 0.2, ")
    assert f"strength identity {ID_A}" in out.stderr
    assert "1 pref pairs have no strength under this identity: clean leaves them out" in out.stderr
    e = explain(ws, ws.ids["p9"], "clean")
    assert not e["selected"] and e["reason"].startswith(f"not measured under strength identity {ID_A}")
    # a filter that reads scores still needs them
    with pytest.raises(CurateError, match="Nothing is scored on branch 'main' yet"):
        run_filter(ws, "split-even", clean=0.1)


# -- flip -----------------------------------------------------------------------------------------------------
def test_flip_keeps_every_pair_and_flips_the_weakest(sws, cli):
    r = run_filter(sws, "flip", bottom=0.3)
    got = rows(sws, "flip")
    assert [n for n, *_ in got] == sorted(MEANS_A, key=lambda n: -MEANS_A[n])
    assert {n for n, *_, f in got if f} == {"p1", "p7", "p3"}  # percentiles 0, 1/9, 2/9 < 0.3
    assert {n: b for n, _, _, b, _ in got if b == "flip"} == {"p1": "flip", "p7": "flip", "p3": "flip"}
    assert r.counts["flipped"] == 3 and r.params == {"strength": ID_A, "bottom": 0.3}
    e = explain(sws, sws.ids["p7"], "flip")
    assert e["selected"] and e["strength_percentile"] == round(1 / 9, 6) and e["strength_category"] == "incorrect"
    assert e["reason"].endswith("flipped (chosen and rejected swapped): strength percentile 0.1111 < --bottom 0.3 "
                                "(mean -0.8000)")
    out = cli("subsets", "flip", "-w", sws.root, "-f", "json")
    assert {sws.name_of[x["pair_id"]] for x in json.loads(out.stdout) if x["flipped"]} == {"p1", "p7", "p3"}


# -- on top of an FRFT strategy ---------------------------------------------------------------------------------
def test_clean_on_split_even_fills_the_quota_from_the_remaining_pairs(sws):
    plain = run_filter(sws, "split-even", eps=0.2, size=6, iteration=1)
    assert {(n, b) for n, _, _, b, _ in rows(sws, plain.name)} >= {("p1", "pos"), ("p1", "neg")}
    r = run_filter(sws, "split-even", eps=0.2, size=6, iteration=1, clean=0.2, flip=0.3)
    assert r.name == "frft-split-even-it1-clean-flip" and r.rows == 6
    got = {(n, b) for n, _, _, b, _ in rows(sws, r.name)}
    # p1 (percentile 0) and p7 (1/9) are not candidates; each half takes the next candidate instead:
    # pos: p9, p0, then the first by pair_id of p2, p5, p6 (0.875); neg: p8, p3, then the first of p2, p4 (0.875)
    assert got == {("p9", "pos"), ("p0", "pos"), (by_id(sws, "p2", "p5", "p6")[0], "pos"),
                   ("p8", "neg"), ("p3", "neg"), (by_id(sws, "p2", "p4")[0], "neg")}
    # --flip 0.3 marks the picked pairs below it: p3 (2/9) is the only one left
    assert {n for n, *_, f in rows(sws, r.name) if f} == {"p3"}
    assert r.counts["cleaned_out"] == 2 and r.counts["flipped"] == 1 and r.counts["scored"] == 8
    assert r.params["clean"] == 0.2 and r.params["flip"] == 0.3 and r.params["strength"] == ID_A
    assert r.params["eps"] == 0.2 and r.params["model_id"] == "m-1"
    assert plain.subset_id != r.subset_id

    e = explain(sws, sws.ids["p1"], r.name)
    assert e["reason"] == ("left out of the candidates before the filter picked: strength percentile 0.0000 < "
                           f"--clean 0.2 (strength identity {ID_A})")
    # a pair cut by the size is ranked among the cleaned candidates: the pos half has 6 of them, not 7
    cut = by_id(sws, "p2", "p5", "p6")[-1]
    e = explain(sws, sws.ids[cut], r.name)
    assert "a candidate of the pos half at rank 5 of 6" in e["reason"]
    e = explain(sws, sws.ids["p3"], r.name)
    assert e["selected"] and "flipped (chosen and rejected swapped): strength percentile 0.2222 < --flip 0.3" in \
        e["reason"]


def test_clean_and_flip_on_a_users_sql_file(sws, tmp_path):
    f = tmp_path / "scored.sql"
    f.write_text("select pair_id from similarities where iteration = $iteration order by pair_id\n")
    r = run_filter(sws, sql_file=f, iteration=1, clean=0.2, flip=0.3)
    assert r.name == "scored-it1-clean-flip"
    assert sorted(n for n, *_ in rows(sws, r.name)) == sorted(set(MEANS_A) - {"p1", "p7"})
    assert {n for n, *_, f in rows(sws, r.name) if f} == {"p3"}


def test_temp_views_shadow_the_workspace_views(sws):
    """What --clean rests on: DuckDB reads a temp view before the database's view of the same name."""
    from curate.strength_rows import CANDIDATE_VIEWS, shadow_without, weakest_table

    with sws.connect() as con:
        assert weakest_table(con, "weak", ID_A, 0.2) == 2
        shadow_without(con, "weak")
        assert con.execute("select count(*) from pairs").fetchall() == [(8,)]
        assert con.execute("select count(*) from similarities where iteration = 1").fetchall() == [(8,)]
        for view in CANDIDATE_VIEWS:
            con.execute(f"drop view temp.main.{view}")
        assert con.execute("select count(*) from pairs").fetchall() == [(10,)]


# -- export and the trainer's rows ------------------------------------------------------------------------------
def test_exported_and_trained_rows_are_swapped_exactly_where_flipped(sws, tmp_path):
    pairs = {r[0]: r[1:] for r in query(sws.root, "select pair_id, chosen, rejected from pairs")}
    f = tmp_path / "hand.sql"  # a hand-made subset: p0, p1, p2, p3 with p1 and p3 flipped
    f.write_text("select pair_id, pair_id in ($a, $b) as flipped from pairs where pair_id in ($a, $b, $c, $d)\n")
    run_filter(sws, sql_file=f, name="hand", user_params={"a": sws.ids["p1"], "b": sws.ids["p3"],
                                                           "c": sws.ids["p0"], "d": sws.ids["p2"]})
    r = export_subset(sws, "hand", fmt="parquet", to=tmp_path / "hand.parquet", margin="strength", margin_scale=0.5)
    df = pl.read_parquet(r.path)
    trained = load_preferences(str(sws.root), subset="hand").dataset
    for row, t in zip(df.iter_rows(named=True), trained):
        name, (chosen, rejected) = sws.name_of[row["pair_id"]], pairs[row["pair_id"]]
        flipped = name in ("p1", "p3")
        assert row["flipped"] is flipped and t["flipped"] is flipped
        assert (row["chosen"], row["rejected"]) == ((rejected, chosen) if flipped else (chosen, rejected))
        assert (t["chosen"], t["rejected"]) == (row["chosen"], row["rejected"])
        # the margin in the row's orientation: -mean for a flipped row, clipped at 0, times 0.5
        assert row["margin"] == max(-MEANS_A[name] if flipped else MEANS_A[name], 0) * 0.5
    assert sorted(sws.name_of[p] for p in df["pair_id"]) == ["p0", "p1", "p2", "p3"]
    assert r.provenance["flipped_rows"] == 2
    assert r.provenance["margin"]["identity"] == ID_A and r.provenance["margin"]["scale"] == 0.5


def test_export_cli_margin_and_its_errors(sws, cli, tmp_path):
    run_filter(sws, "flip", bottom=0.3)
    out = cli("export", "flip", "-w", sws.root, "--format", "parquet", "-o", tmp_path / "f.parquet", "--margin",
              "strength", "--strength", "probe-a")
    assert out.exit_code == 0, out.output
    assert "3 rows flipped: chosen and rejected are swapped in them" in out.stderr
    assert f"margin: max(mean, 0) * 1 from strength identity {ID_A}" in out.stderr
    df = pl.read_parquet(tmp_path / "f.parquet")
    assert dict(zip((sws.name_of[p] for p in df["pair_id"]), df["margin"])) == {n: abs(m) if n in ("p1", "p7", "p3")
                                                                                 else max(m, 0)
                                                                                 for n, m in MEANS_A.items()}
    folder = cli("export", "flip", "-w", sws.root, "-o", tmp_path / "folder", "--margin", "strength")
    card = (tmp_path / "folder" / "README.md").read_text()
    assert folder.exit_code == 0 and "**3 row(s) are flipped**" in card and f"identity `{ID_A}`; bottom 0.3" in card
    out = cli("export", "flip", "-w", sws.root, "-o", tmp_path / "x", "--margin-scale", "2")
    assert out.exit_code == 2 and "--margin-scale and --strength apply to --margin strength" in out.stderr
    out = cli("export", "flip", "-w", sws.root, "-o", tmp_path / "x", "--margin", "strength", "--margin-scale", "0")
    assert out.exit_code == 1 and "--margin-scale must be above 0" in out.stderr
    out = cli("export", "flip", "-w", sws.root, "-o", tmp_path / "x", "--margin", "strength", "--strength", "zz")
    assert out.exit_code == 1 and "--strength 'zz' is not an identity" in out.stderr
    run_filter(sws, "positive", eps=0.2, size=3, iteration=1)  # p9, p0, p1: measured under A, not under B's subset
    strength_rows(sws, "probe-cccc", {"p9": 0.5}, "2025-01-03 00:00:00", names=["p9"])
    with pytest.raises(CurateError, match=r"2 pair\(s\) of the data have no strength under identity probe-cccc"):
        export_subset(sws, "frft-positive-it1", to=tmp_path / "y", margin="strength")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, option", [
    ({"drop_below": 0}, "--drop-below"), ({"drop_below": 1}, "--drop-below"), ({"drop_below": 1.5}, "--drop-below"),
    ({"drop_below": -0.1}, "--drop-below"), ({"strategy": "flip", "bottom": 0.0}, "--bottom"),
    ({"strategy": "flip", "bottom": 1.0}, "--bottom"), ({"strategy": "positive", "clean": 1.0}, "--clean"),
    ({"strategy": "positive", "flip": 0.0}, "--flip"),
])
def test_fractions_outside_zero_one_are_refused(sws, kw, option):
    kw = {"strategy": "clean", **kw}
    with pytest.raises(CurateError, match=rf"{option} must be a fraction in \(0, 1\), a strength percentile"):
        run_filter(sws, iteration=1, **kw)
    assert query(sws.root, "select count(*) from subsets") == [(0,)]


@pytest.mark.parametrize("kw, message", [
    ({"strategy": "clean"}, "clean drops the weakest pairs: give --drop-below F"),
    ({"strategy": "flip"}, "flip flips the weakest pairs: give --bottom F"),
    ({"strategy": "clean", "drop_below": 0.1, "bottom": 0.1}, "--bottom applies to flip"),
    ({"strategy": "split-even", "drop_below": 0.1}, "--drop-below and --drop-category apply to clean"),
    ({"strategy": "split-even", "strength": ID_A}, "--strength picks the strength rows of clean, flip, --clean and "
                                                   "--flip; split_even.sql uses none of them"),
    ({"strategy": "clean", "drop_categories": ["strong"]}, "--drop-category 'strong': use incorrect or ambiguous"),
])
def test_options_that_do_not_fit_the_strategy(sws, kw, message):
    with pytest.raises(CurateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_filter(sws, iteration=1, **kw)


def test_no_strength_rows_is_a_clear_error(cli, tmp_path):
    ws = hand_scored_ws(cli, tmp_path)
    for kw in ({"strategy": "clean", "drop_below": 0.1}, {"strategy": "split-even", "clean": 0.1},
               {"strategy": "positive", "flip": 0.1}):
        with pytest.raises(CurateError, match=r"run `curate strength` first"):
            run_filter(ws, iteration=1, **kw)
    r = cli("filter", "-w", ws.root, "-s", "flip", "--bottom", "0.1")
    assert r.exit_code == 1 and "Error: No strength rows in this workspace: run `curate strength` first" \
        in r.stderr
    r = cli("filter", "-w", ws.root, "-s", "clean", "--drop-category", "strong")
    assert r.exit_code == 2 and "'strong' is not one of 'incorrect', 'ambiguous'" in r.stderr


def test_explain_says_why_clean_dropped_a_pair(sws, cli):
    run_filter(sws, "clean", drop_below=0.2, drop_categories=["incorrect"])
    e = explain(sws, sws.ids["p1"], "clean")
    assert e["reason"] == ("dropped by clean: strength percentile 0.0000 < --drop-below 0.2; its strength category "
                           "is incorrect (mean -1.5000), which --drop-category drops")
    e = explain(sws, sws.ids["p3"], "clean")
    assert e["reason"] == ("dropped by clean: its strength category is incorrect (mean -0.2000), which "
                           "--drop-category drops")
    out = cli("explain", sws.ids["p6"], "--subset", "clean", "-w", sws.root)
    assert out.exit_code == 0 and "IN: picked by clean at rank 1 of 7 with score 3.0000" in out.stdout
    assert "strength_category" in out.stdout and "None" not in out.stdout


def test_a_run_cannot_branch_on_a_strength_strategy():
    from curate.run.config import parse

    with pytest.raises(CurateError, match="has 'clean'; valid: frft, overall, split-even, negative, positive, random, "
                                          "all."):
        parse({"data": {"sources": ["demo"]}, "run": {"strategies": ["clean"]}})
