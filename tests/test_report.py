"""`curate report`: intersect, cdf and html over a hand-made workspace whose answers are known by hand."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.filters import run_filter
from curate.ingest import ingest
from curate.report import (
    INTERSECT_COLUMNS,
    cdf,
    cdf_figure,
    histogram_figure,
    html_report,
    intersect,
    load_similarities,
    similarity_stats,
)
from curate.workspace import Workspace

from .conftest import hh_row, query, write_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODEL = "m-1"
# p4 asks the same question as p0, so a subset holding p0 and one holding p4 share a prompt but no pair;
# p5's chosen response carries markup the HTML report must escape
ROWS = [hh_row(f"question {i}?", f"good answer {i}", f"bad answer {i}") for i in range(4)] + [
    hh_row("question 0?", "another good answer", "another bad answer"),
    hh_row("question 5?", "good <b>answer</b> & more", "bad answer 5"),
]
# (pos_sim, neg_sim) per pair; iteration 1 on main, iteration 2 on the 'overall' branch (FRFT(alpha))
SIMS = {
    ("main", 1): [(0.9, 0.3), (0.85, 0.82), (0.7, 0.6), (0.5, 0.81), (0.95, 0.2), (0.6, 0.1)],
    ("overall", 2): [(0.5, 0.85), (0.9, 0.1), (0.88, 0.2), (0.4, 0.3), (0.3, 0.4), (0.2, 0.95)],
}
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
# name: (strategy, branch, iteration, minutes after T0, [(pair, picked_by), ...])
SUBSETS = {
    "frft-overall-it1": ("overall", "main", 1, 1, [("p0", "both"), ("p1", "both"), ("p2", "both"), ("p3", "both")]),
    "stale-overall-it2": ("overall", "overall", 2, 2, [("p5", "both")]),  # older than the next one: ignored
    "frft-overall-it2-overall": ("overall", "overall", 2, 3, [("p2", "both"), ("p3", "both"), ("p4", "both")]),
    "frft-overall-it3-overall": ("overall", "overall", 3, 4, [("p4", "both"), ("p5", "both")]),
    "frft-split-even-it1": ("split-even", "main", 1, 1, [("p0", "pos"), ("p0", "neg"), ("p1", "pos")]),
    "frft-split-even-it2-split-even": ("split-even", "split-even", 2, 3, [("p1", "pos"), ("p2", "neg")]),
    "frft-positive-it1": ("positive", "main", 1, 1, [("p0", "pos")]),
}


def build(root: Path, tmp: Path) -> Workspace:
    """Six pairs (p0..p5) scored by hand in iterations 1 and 2."""
    src = write_jsonl(tmp / "data" / "harmless-base" / "train.jsonl", ROWS)
    ws = Workspace(root)
    ingest(ws, [str(src)])
    ws.ids = dict(query(root, "select 'p' || source_row::varchar, pair_id from pairs"))
    with ws.transaction() as tx:
        for (branch, it), values in SIMS.items():
            tx.add("similarities", pl.DataFrame({
                "branch": branch, "iteration": it, "pair_id": [ws.ids[f"p{i}"] for i in range(len(values))],
                "model_id": MODEL, "pos_sim": [v[0] for v in values], "neg_sim": [v[1] for v in values],
                "pos_sim_max": [v[0] for v in values], "neg_sim_max": [v[1] for v in values], "n_samples": 1,
            }), key=f"{branch}-it{it}-{MODEL}")
    return ws


def add_subsets(ws: Workspace) -> None:
    with ws.transaction() as tx:
        for name, (strategy, branch, it, minutes, picks) in SUBSETS.items():
            sid = f"id-{name}"
            tx.add("subsets", pl.DataFrame({
                "subset_id": [sid], "name": [name], "strategy": [strategy], "branch": [branch], "iteration": [it],
                "params": [json.dumps({"eps": 0.2, "floor": 0.8, "size": 4, "aggregate": "mean", "model_id": MODEL})],
                "sql_sha256": ["0"], "counts": [json.dumps({"rows": len(picks)})],
                "created_at": [T0 + timedelta(minutes=minutes)],
            }), key=name)
            tx.add("subset_pairs", pl.DataFrame({
                "subset_id": sid, "pair_id": [ws.ids[p] for p, _ in picks], "rank": list(range(1, len(picks) + 1)),
                "score": [1.0] * len(picks), "picked_by": [by for _, by in picks], "reason": [None] * len(picks),
                "flipped": [False] * len(picks),
            }, schema_overrides={"reason": pl.String}), key=name)


@pytest.fixture(scope="module")
def rws(tmp_path_factory) -> Workspace:
    """The hand-made workspace with its subsets; tests only read it."""
    tmp = tmp_path_factory.mktemp("report")
    ws = build(tmp / "ws", tmp)
    add_subsets(ws)
    return ws


# -- intersect ------------------------------------------------------------------------------------------
EXPECTED = [
    # strategy, a, b, subset_a, subset_b, pairs_a, pairs_b, common, share, prompts_a, common_prompts, share, jaccard
    ("overall", 1, 2, "frft-overall-it1", "frft-overall-it2-overall", 4, 3, 2, 0.5, 4, 3, 0.75, 0.4),
    ("overall", 1, 3, "frft-overall-it1", "frft-overall-it3-overall", 4, 2, 0, 0.0, 4, 1, 0.25, 0.0),
    ("overall", 2, 3, "frft-overall-it2-overall", "frft-overall-it3-overall", 3, 2, 1, 1 / 3, 3, 1, 1 / 3, 0.25),
    ("split-even", 1, 2, "frft-split-even-it1", "frft-split-even-it2-split-even", 2, 2, 1, 0.5, 2, 1, 0.5, 1 / 3),
]


def test_intersect_counts_by_hand(rws):
    df = intersect(rws)
    assert tuple(df.columns) == INTERSECT_COLUMNS
    # every (i, j) of a strategy appears once; positive (one iteration) and the stale subset do not
    assert df.rows() == [pytest.approx(r) for r in EXPECTED]


def test_intersect_filters_by_strategy_and_branch(rws):
    assert intersect(rws, strategies=["split-even"]).rows() == [pytest.approx(EXPECTED[3])]
    df = intersect(rws, branch="overall")  # iterations 2 and 3 of overall only
    assert df.select("strategy", "iteration_a", "iteration_b").rows() == [("overall", 2, 3)]


def test_intersect_needs_two_iterations(rws, filled_ws):
    with pytest.raises(CurateError) as e:
        intersect(rws, branch="main")
    assert str(e.value) == (
        "`curate report intersect` compares the subsets one strategy picks in different iterations, but on branch "
        "'main' each strategy has subsets in one iteration only (overall: iteration 1; split-even: iteration 1; "
        "positive: iteration 1). Make iteration 2's first: sample the policy (`curate generate --iteration 2 "
        "--branch main`, or `curate generations import FILE --iteration 2 --policy NAME --branch main`), then "
        "`curate embed`, `curate score --iteration 2 --branch main` and `curate filter --strategy overall "
        "--iteration 2 --branch main`."
    )  # the hint starts from sampling: scoring iteration 2 before anything is generated fails (issue 13)
    with pytest.raises(CurateError, match=r"\(positive: iteration 1\)\. .*"
                                          r"`curate filter --strategy positive --iteration 2`\.$"):
        intersect(rws, strategies=["positive"])
    with pytest.raises(CurateError, match=r"there are no subsets yet\. For each iteration N: sample the policy "
                                          r"\(`curate generate --iteration N`, .* `curate filter --strategy overall"):
        intersect(Workspace(filled_ws))
    with pytest.raises(CurateError, match=r"No subsets of strategy 'nosuch'\. The strategies with subsets are: "
                                          r"overall, positive, split-even\."):
        intersect(rws, strategies=["nosuch"])


def test_intersect_cli_table_csv_json_parquet_png(cli, rws, tmp_path):
    r = cli("report", "intersect", "-w", rws.root)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    for name in ("frft-overall-it1", "strategy", "share_pairs", "jaccard_pairs", "0.3333"):
        assert name in r.stdout

    r = cli("report", "intersect", "-w", rws.root, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == list(INTERSECT_COLUMNS)
    assert [(x["iteration_a"], x["iteration_b"], float(x["share_pairs"])) for x in rows[:3]] == [
        ("1", "2", 0.5), ("1", "3", 0.0), ("2", "3", pytest.approx(1 / 3))]

    r = cli("report", "intersect", "-w", rws.root, "--format", "json", "-s", "split-even")
    got = json.loads(r.stdout)
    assert [list(d) for d in got] == [list(INTERSECT_COLUMNS)]
    assert [tuple(d.values()) for d in got] == [pytest.approx(EXPECTED[3])]

    out, png = tmp_path / "x.parquet", tmp_path / "figs" / "overlap.png"
    r = cli("report", "intersect", "-w", rws.root, "--format", "parquet", "--output", out, "--png", png)
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(out).rows() == [pytest.approx(x) for x in EXPECTED]
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert r.stderr.splitlines() == [f"wrote the heatmap to {png}", f"wrote 4 rows to {out}"]


def test_intersect_cli_error(cli, rws):
    r = cli("report", "intersect", "-w", rws.root, "--branch", "main")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: `curate report intersect` compares the subsets")
    assert "Traceback" not in r.stderr


def test_intersect_without_png_imports_no_matplotlib(rws):
    code = (
        "import sys\n"
        "from curate.cli import main\n"
        f"main(['report', 'intersect', '-w', {str(rws.root)!r}, '-f', 'json'], standalone_mode=False)\n"
        "heavy = [m for m in ('matplotlib', 'torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 4


def test_intersect_of_subsets_made_by_run_filter(tmp_path):
    """split-even through the real filter: both halves of 2 per iteration; p0 and p4 share a prompt."""
    ws = build(tmp_path / "ws", tmp_path)
    run_filter(ws, "split-even", eps=0.2, size=4, iteration=1, branch="main")  # p4 p0 | p1 p3
    run_filter(ws, "split-even", eps=0.2, size=4, iteration=2, branch="overall")  # p1 p2 | p5 p0
    df = intersect(ws)
    assert df.drop("subset_a", "subset_b").rows() == [
        pytest.approx(("split-even", 1, 2, 4, 4, 2, 0.5, 3, 2, 2 / 3, 2 / 6))]
    assert df.select("subset_a", "subset_b").rows() == [("frft-split-even-it1", "frft-split-even-it2-overall")]


# -- cdf ------------------------------------------------------------------------------------------------
def test_similarity_stats_by_hand(rws):
    stats = similarity_stats(load_similarities(rws, eps=0.2))
    got = {(r["iteration"], r["measure"]): r for r in stats.iter_rows(named=True)}
    assert list(got) == [(1, "pos_sim"), (1, "neg_sim"), (2, "pos_sim"), (2, "neg_sim")]
    one = got[(1, "pos_sim")]
    assert (one["branch"], one["n"]) == ("main", 6)
    assert one["mean"] == pytest.approx(0.75)
    assert one["median"] == pytest.approx(0.775)
    assert one["p90"] == pytest.approx(0.925)  # linear between 0.9 and 0.95
    assert one["above_floor"] == pytest.approx(0.5)  # 0.9, 0.85, 0.95 above 0.8
    assert got[(1, "neg_sim")]["above_floor"] == pytest.approx(2 / 6)
    assert got[(2, "neg_sim")]["branch"] == "overall"
    # 0.5 sits exactly on the floor 1 - 0.5 and is not above it (as in the filters)
    assert similarity_stats(load_similarities(rws, eps=0.5))["above_floor"][0] == pytest.approx(5 / 6)


def test_cdf_cli_writes_the_default_png_and_prints_stats(cli, rws):
    r = cli("report", "cdf", "-w", rws.root)
    assert r.exit_code == 0, r.output
    path = rws.root / "reports" / "cdf-it1-2.png"
    assert r.stderr == f"wrote {path}\n"
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    for needle in ("measure", "above_floor", "pos_sim", "neg_sim", "0.775", "overall"):
        assert needle in r.stdout


def test_cdf_one_iteration_to_a_chosen_file(rws, tmp_path):
    rep = cdf(rws, iterations=[2], aggregate="max", output=tmp_path / "fig2.png")
    assert rep.path == tmp_path / "fig2.png" and rep.path.read_bytes().startswith(PNG_MAGIC)
    assert rep.stats["measure"].to_list() == ["pos_sim_max", "neg_sim_max"]
    assert rep.model_id == MODEL


def test_cdf_unscored_iteration(cli, rws, filled_ws):
    r = cli("report", "cdf", "-w", rws.root, "--iteration", "3")
    assert r.exit_code == 1
    assert r.stderr == ("Error: Iteration 3 has no scores (scored: 1, 2): run `curate score --iteration 3` first, "
                        "or leave it out of --iteration.\n")
    r = cli("report", "cdf", "-w", rws.root, "--iteration", "2", "--branch", "main")
    assert "Iteration 2 has no scores on branch 'main' (scored: 1): run `curate score --iteration 2 --branch main`" \
        in r.stderr
    r = cli("report", "cdf", "-w", filled_ws)
    assert r.exit_code == 1
    assert r.stderr == ("Error: Nothing is scored yet: import generations and run `curate score --iteration 1` "
                        "first.\n")


# -- html -----------------------------------------------------------------------------------------------
def test_html_report_is_self_contained(cli, rws):
    r = cli("report", "html", "-w", rws.root)
    assert r.exit_code == 0, r.output
    path = rws.root / "reports" / "report.html"
    assert r.stderr == f"wrote {path}\n"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    for name in SUBSETS:
        assert name in text
    assert text.count("data:image/png;base64,") == 3  # histograms, CDF, overlap heatmap
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower()
    assert "good &lt;b&gt;answer&lt;/b&gt; &amp; more" in text and "<b>answer</b>" not in text
    for needle in (str(rws.root), "ingest-", "similarities", "share_pairs", "Table 3", "Figure 2"):
        assert needle in text


def test_html_report_of_a_fresh_workspace_says_what_to_run(cli, filled_ws, tmp_path):
    out = tmp_path / "r.html"
    r = cli("report", "html", "-w", filled_ws, "--output", out)
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    assert "data:image/png;base64," not in text
    assert "Nothing is scored yet" in text and "curate filter --strategy" in text


# -- html: the floor is the subsets' own ----------------------------------------------------------------
def html_text(ws: Workspace, **kw) -> str:
    return html_report(ws, ws.root / "reports" / "report.html", **kw).read_text(encoding="utf-8")


def test_html_floor_is_the_eps_the_subsets_were_made_with(tmp_path):
    """Subsets cut at eps 0.6 (floor 0.4): the page marks 0.4, never the default 0.8."""
    ws = build(tmp_path / "ws", tmp_path)
    run_filter(ws, "overall", eps=0.6, size=4, iteration=1, branch="main")
    run_filter(ws, "split-even", eps=0.6, size=4, iteration=1, branch="main")
    text = html_text(ws)
    assert ("above_floor is the share of pairs with a similarity above the floor 1 - eps = 0.4 "
            "(eps 0.6: the eps of 2 subsets)") in text
    assert "histograms per iteration; floor 1 - eps = 0.4" in text  # the figures' floor lines, in their alt text
    assert "distribution of pos_sim and neg_sim; floor 1 - eps = 0.4" in text
    assert "= 0.8" not in text and "eps 0.2" not in text and "assumes eps" not in text
    # --eps still forces one floor
    r = html_text(ws, eps=0.2)
    assert "above the floor 1 - eps = 0.8 (eps 0.2: as asked)" in r and "= 0.4" not in r


def test_html_subsets_at_two_eps_give_both_floors(tmp_path):
    ws = build(tmp_path / "ws", tmp_path)
    run_filter(ws, "overall", eps=0.6, size=4, iteration=1, branch="main")
    run_filter(ws, "split-even", eps=0.2, size=4, iteration=1, branch="main")
    text = html_text(ws)
    assert ("above_0.4 is the share of pairs with a similarity above the floor 1 - eps = 0.4 (eps 0.6: the eps "
            "of 1 subset); above_0.8 is the share of pairs with a similarity above the floor 1 - eps = 0.8 "
            "(eps 0.2: the eps of 1 subset)") in text
    assert "<th>above_0.4</th><th>above_0.8</th>" in text and "<th>above_floor</th>" not in text
    assert text.count("floor 1 - eps = 0.4, 0.8") == 2  # the histograms' and the CDF's alt text

    sims = load_similarities(ws, eps=[0.6, 0.2])
    stats = similarity_stats(sims).filter(iteration=1, measure="pos_sim")
    assert stats.select("above_0.4", "above_0.8").row(0) == pytest.approx((1.0, 0.5))  # 0.5 and 0.6 > 0.4 only
    floors = ["floor 1 - eps = 0.4", "floor 1 - eps = 0.8"]
    for fig in (cdf_figure(sims), histogram_figure(sims)):
        lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("floor")]
        assert [ln.get_label() for ln in lines] == floors
        assert [ln.get_xdata()[0] for ln in lines] == [0.4, 0.8]
        assert len({ln.get_linestyle() for ln in lines}) == 2  # told apart by their dashes


def test_html_without_subsets_says_which_eps_it_assumes(cli, tmp_path):
    ws = build(tmp_path / "ws", tmp_path)
    r = cli("report", "html", "-w", ws.root)
    assert r.exit_code == 0, r.output
    text = (ws.root / "reports" / "report.html").read_text(encoding="utf-8")
    assert "No subsets yet: the floor drawn assumes eps 0.2." in text
    assert "above the floor 1 - eps = 0.8 (eps 0.2: assumed)" in text
