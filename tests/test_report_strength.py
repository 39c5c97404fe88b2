"""`curate report strength` and the HTML section, over a hand-made strength table whose numbers are worked by hand.

25 pairs, i = 0..24 (15 in harmless-base, then 10 in helpful-base), mean_i = (i - 7) / 10 and std_i = |i - 12| / 10:
a U shape with its bottom at i = 12. incorrect: mean < 0 (i 0..6, 7 pairs); ambiguous: 0 <= mean < 0.3 (i 7..9, 3
pairs; the band is the strength step's, these rows just carry the category); strong: the other 15.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.ingest import ingest
from curate.report import html_report, strength_report
from curate.report.figures import strength_std_figure
from curate.report.strength import figure_stem, group_numbers
from curate.strength_rows import pick_identity
from curate.workspace import Workspace

from .conftest import hh_row, query, write_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
NEW = "probe:minilm:M10:K5:seed0"  # the hand-worked one, computed last
OLD = NEW + ":flips0.1"  # NEW is a prefix of it: --strength NEW must still mean NEW
N = 25
MEANS = [(i - 7) / 10 for i in range(N)]
STDS = [abs(i - 12) / 10 for i in range(N)]
CATS = ["incorrect" if m < 0 else "ambiguous" if m < 0.3 else "strong" for m in MEANS]


def strength_frame(ids: list[str], means, stds, cats, identity: str, created_at: datetime) -> pl.DataFrame:
    n = len(ids)
    order = sorted(range(n), key=lambda i: means[i])
    return pl.DataFrame({
        "pair_id": ids, "method": "probe", "identity": identity, "n_models": 10, "folds": 5, "mean": means,
        "std": stds, "percentile": [order.index(i) / (n - 1) for i in range(n)], "category": cats,
        "created_at": created_at, "features": "all-MiniLM-L6-v2",
    })


def build(tmp: Path, subsets: tuple[str, ...] = ("harmless-base", "helpful-base")) -> Workspace:
    """The 25 pairs, ingested from one file per subset (15 + 10; all 25 in one with a single subset)."""
    cut = 15 if len(subsets) == 2 else N
    files = [write_jsonl(tmp / "data" / subsets[0] / "train.jsonl",
                         [hh_row(f"question {i}?", f"good {i}", f"bad {i}") for i in range(cut)])]
    if len(subsets) == 2:
        files.append(write_jsonl(tmp / "data" / subsets[1] / "train.jsonl",
                                 [hh_row(f"question {i}?", f"good {i}", f"bad {i}") for i in range(cut, N)]))
    ws = Workspace(tmp / "ws")
    ingest(ws, [str(f) for f in files])
    by_row = dict(query(ws.root, "select subset || ':' || source_row::varchar, pair_id from pairs"))
    ws.ids = [by_row[f"{subsets[0]}:{i}"] if i < cut else by_row[f"{subsets[1]}:{i - cut}"] for i in range(N)]
    return ws


@pytest.fixture(scope="module")
def sws(tmp_path_factory) -> Workspace:
    """The hand-worked identity (newest) and an older one of 4 pairs whose identity NEW is a prefix of."""
    ws = build(tmp_path_factory.mktemp("strength"))
    with ws.transaction() as tx:
        tx.add("strength", strength_frame(ws.ids, MEANS, STDS, CATS, NEW, T0 + timedelta(minutes=2)), key="new")
        tx.add("strength", strength_frame(ws.ids[:4], [-1.0, 1.0, 2.0, 3.0], [0.5, 0.1, 0.2, 0.3],
                                          ["incorrect", "strong", "strong", "strong"], OLD, T0), key="old")
    return ws


# -- which identity ---------------------------------------------------------------------------------------
def test_pick_identity_newest_exact_or_unique_prefix(sws):
    with sws.connect() as con:
        assert pick_identity(con, None).identity == NEW  # the most recent created_at
        assert pick_identity(con, NEW).identity == NEW  # exact, though it is also a prefix of OLD
        assert pick_identity(con, NEW + ":f").identity == OLD  # a unique prefix
        with pytest.raises(CurateError) as e:
            pick_identity(con, "probe")
        assert str(e.value) == (f"--strength 'probe' is a prefix of 2 identities ({NEW}, {OLD}): give more of it.")
        with pytest.raises(CurateError) as e:
            pick_identity(con, "ensemble")
        assert str(e.value) == (f"--strength 'ensemble' is not an identity in the strength table; it holds {NEW}, "
                                f"{OLD} (newest first). Give one of them, or a prefix of one.")


def test_no_strength_rows_says_to_run_strength(cli, filled_ws):
    with Workspace(filled_ws).connect() as con, pytest.raises(CurateError, match="run `curate strength` first"):
        pick_identity(con, None)
    r = cli("report", "strength", "-w", filled_ws)
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: No strength rows in this workspace: run `curate strength` first")
    assert "Traceback" not in r.stderr and r.stdout == ""


# -- the numbers, by hand ---------------------------------------------------------------------------------
# Wilson at z = 1.959964 (z² = 3.841459): 7 of 25, p = 0.28, z²/n = 0.153658: centre 0.28 + 0.076829 = 0.356829,
# half z·sqrt(0.28·0.72/25 + z²/2500) = z·sqrt(0.009601) = 0.192042 -> (0.164787, 0.548871) / 1.153658
# = (0.142839, 0.475766). 0 of 10: (0, (z²/10) / (1 + z²/10)) = (0, 0.277533); 10 of 10: (1 / 1.384146, 1).
def test_categories_with_wilson_intervals(sws):
    rep = strength_report(sws)
    assert (rep.identity, rep.method, rep.n_models, rep.folds, rep.pairs) == (NEW, "probe", 10, 5, 25)
    assert rep.created_at == "2025-01-01T00:02:00Z" and rep.identities == 2
    assert rep.categories.rows() == [
        ("incorrect", 7, pytest.approx(0.28), pytest.approx(0.142839, abs=1e-6), pytest.approx(0.475766, abs=1e-6)),
        ("ambiguous", 3, pytest.approx(0.12), pytest.approx(0.041668, abs=1e-6), pytest.approx(0.299558, abs=1e-6)),
        ("strong", 15, pytest.approx(0.6), pytest.approx(0.407395, abs=1e-6), pytest.approx(0.765967, abs=1e-6)),
    ]


# 25 pairs in 10 deciles: 3, 3, 3, 3, 3, then 2 each. Decile 3 holds i = 6, 7, 8: means -0.1, 0, 0.1 (one incorrect).
DECILES = [
    (1, 3, -0.6, 1.1, 1.0), (2, 3, -0.3, 0.8, 1.0), (3, 3, 0.0, 0.5, 1 / 3), (4, 3, 0.3, 0.2, 0.0),
    (5, 3, 0.6, 0.1, 0.0), (6, 2, 0.85, 0.35, 0.0), (7, 2, 1.05, 0.55, 0.0), (8, 2, 1.25, 0.75, 0.0),
    (9, 2, 1.45, 0.95, 0.0), (10, 2, 1.65, 1.15, 0.0),
]
# 25 pairs in 20 groups: five of 2 (i 0-1, 2-3, 4-5, 6-7, 8-9), then one pair each (group g holds i = g + 4, mean
# (g - 3) / 10, std |g - 8| / 10): the U's bottom is group 8.
GROUPS = [(1, 2, -0.65, 1.15), (2, 2, -0.45, 0.95), (3, 2, -0.25, 0.75), (4, 2, -0.05, 0.55), (5, 2, 0.15, 0.35)] + [
    (g, 1, (g - 3) / 10, abs(g - 8) / 10) for g in range(6, 21)]


def test_deciles_by_hand(sws):
    rep = strength_report(sws)
    assert rep.deciles.columns == ["decile", "pairs", "mean_of_mean", "mean_of_std", "share_incorrect"]
    assert rep.deciles.rows() == [pytest.approx(r) for r in DECILES]


def test_twenty_groups_by_hand_and_their_u_shape(sws):
    rep = strength_report(sws)
    assert rep.groups.columns == ["group", "pairs", "mean_of_mean", "mean_of_std"]
    assert rep.groups.rows() == [pytest.approx(r) for r in GROUPS]
    stds = rep.groups["mean_of_std"].to_list()
    assert stds.index(min(stds)) == 7  # group 8
    # the figure draws the same numbers: bars = mean of the means, the twin axis' line = mean of the stds
    fig = strength_std_figure(rep)
    right, twin = fig.axes[1], fig.axes[2]
    assert [p.get_height() for p in right.patches] == pytest.approx([r[2] for r in GROUPS])
    assert list(twin.lines[0].get_ydata()) == pytest.approx([r[3] for r in GROUPS])


def test_group_numbers_are_equal_groups():
    assert group_numbers(25, 10) == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3 + [5] * 3 + [
        g for g in range(6, 11) for _ in range(2)]
    assert group_numbers(3, 20) == [1, 2, 3]  # fewer pairs than groups: one pair each
    assert group_numbers(40, 20) == [g for g in range(1, 21) for _ in range(2)]


# harmless-base holds i 0..14: 7 incorrect, 3 ambiguous, 5 strong of 15; helpful-base i 15..24: 10 strong of 10.
def test_category_shares_per_subset(sws):
    rep = strength_report(sws)
    got = {(r[0], r[1]): r[2:] for r in rep.by_subset.rows()}
    assert list(got) == [(s, c) for s in ("harmless-base", "helpful-base") for c in ("incorrect", "ambiguous",
                                                                                    "strong")]
    # 7 of 15: z²/n = 0.256097, centre 0.466667 + 0.128049 = 0.594715, half z·sqrt(0.016593 + 0.004268) = 0.283083
    # -> (0.311632, 0.877798) / 1.256097 = (0.248095, 0.698830)
    assert got["harmless-base", "incorrect"] == (7, pytest.approx(7 / 15), pytest.approx(0.248095, abs=1e-6),
                                                 pytest.approx(0.698830, abs=1e-6))
    assert got["harmless-base", "ambiguous"][:2] == (3, pytest.approx(0.2))
    assert got["harmless-base", "strong"][:2] == (5, pytest.approx(1 / 3))
    assert got["helpful-base", "incorrect"] == (0, 0.0, 0.0, pytest.approx(0.277533, abs=1e-6))
    assert got["helpful-base", "strong"] == (10, 1.0, pytest.approx(0.722467, abs=1e-6), pytest.approx(1.0))


def test_one_subset_has_no_per_subset_table(tmp_path):
    ws = build(tmp_path, subsets=("harmless-base",))
    with ws.transaction() as tx:
        tx.add("strength", strength_frame(ws.ids, MEANS, STDS, CATS, NEW, T0))
    rep = strength_report(ws)
    assert rep.by_subset.height == 0 and rep.to_dict()["by_subset"] == []
    assert rep.deciles.rows() == [pytest.approx(r) for r in DECILES]  # the same pairs, the same deciles


def test_an_older_identity_by_name(sws):
    """4 pairs: fewer than 10 deciles, so one pair each."""
    rep = strength_report(sws, NEW + ":")
    assert rep.identity == OLD and rep.pairs == 4
    assert rep.deciles.rows() == [pytest.approx(r) for r in [(1, 1, -1.0, 0.5, 1.0), (2, 1, 1.0, 0.1, 0.0),
                                                              (3, 1, 2.0, 0.2, 0.0), (4, 1, 3.0, 0.3, 0.0)]]
    assert rep.categories.rows()[0][:3] == ("incorrect", 1, 0.25)


def test_figure_stem_is_safe_and_distinct():
    assert figure_stem("probe-a") == "strength-probe-a"
    stem = figure_stem(NEW)
    assert re.fullmatch(r"strength-probe-minilm-M10-K5-seed0-[0-9a-f]{8}", stem)
    assert figure_stem(OLD) != stem and "/" not in figure_stem("../x/y")


# -- the command ------------------------------------------------------------------------------------------
def test_cli_json_structure_and_figures(cli, sws, tmp_path):
    figs = tmp_path / "figs"
    r = cli("report", "strength", "-w", sws.root, "--json", "--figures", figs)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert list(d) == ["identity", "method", "n_models", "folds", "features", "created_at", "pairs", "categories",
                       "deciles", "groups", "by_subset", "figures"]
    assert (d["identity"], d["pairs"], d["features"]) == (NEW, 25, "all-MiniLM-L6-v2")
    assert d["categories"][0] == {"category": "incorrect", "pairs": 7, "share": 0.28,
                                  "share_low": pytest.approx(0.142839, abs=1e-6),
                                  "share_high": pytest.approx(0.475766, abs=1e-6)}
    assert d["deciles"][2] == {"decile": 3, "pairs": 3, "mean_of_mean": pytest.approx(0.0),
                               "mean_of_std": pytest.approx(0.5), "share_incorrect": pytest.approx(1 / 3)}
    assert len(d["groups"]) == 20 and d["groups"][7] == {"group": 8, "pairs": 1, "mean_of_mean": pytest.approx(0.5),
                                                          "mean_of_std": pytest.approx(0.0)}
    assert len(d["by_subset"]) == 6
    stem = figure_stem(NEW)
    assert d["figures"] == {"histogram": str(figs / f"{stem}-histogram.png"),
                            "std_vs_mean": str(figs / f"{stem}-std-vs-mean.png")}
    for path in d["figures"].values():
        assert Path(path).read_bytes().startswith(PNG_MAGIC)
    assert r.stderr == ("1 other strength identity in this workspace: pick one with --strength.\n"
                        f"wrote {d['figures']['histogram']} and {d['figures']['std_vs_mean']}\n")


def test_cli_text_tables_to_a_file(cli, sws, tmp_path):
    out = tmp_path / "strength.txt"
    r = cli("report", "strength", "-w", sws.root, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and r.stderr == ""
    text = out.read_text(encoding="utf-8")
    assert text.startswith(f"strength {NEW}: method probe, 10 models, 5 folds, features all-MiniLM-L6-v2, 25 pairs, "
                           "computed 2025-01-01T00:02:00Z\n")
    rows = {tuple(re.split(r"\s*[┃│]\s*", line.strip(" ┃│"))) for line in text.splitlines()}
    assert ("incorrect", "7", "28.0 [14.3, 47.6]") in rows
    assert ("helpful-base", "10", "0.0 [0.0, 27.8]", "0.0 [0.0, 27.8]", "100.0 [72.2, 100.0]") in rows
    assert ("3", "3", "0.0000", "0.5000", "33.3") in rows  # decile 3
    assert ("8", "1", "0.5000", "0.0000") in rows  # group 8, the bottom of the U
    # the default figures' folder is the workspace's reports/
    assert (sws.root / "reports" / f"{figure_stem(NEW)}-std-vs-mean.png").is_file()


def test_cli_picks_an_identity(cli, sws, tmp_path):
    r = cli("report", "strength", "-w", sws.root, "--strength", NEW + ":", "--json", "--figures", tmp_path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["identity"] == OLD
    r = cli("report", "strength", "-w", sws.root, "--strength", "probe", "--figures", tmp_path)
    assert r.exit_code == 1 and r.stderr.startswith("Error: --strength 'probe' is a prefix of 2 identities")


# -- the HTML report --------------------------------------------------------------------------------------
def test_html_has_a_strength_section_when_there_are_rows(sws, tmp_path):
    text = html_report(sws, tmp_path / "r.html").read_text(encoding="utf-8")
    section = text[text.index("<h2>Preference strength (Secrets of RLHF II, section 2.2)</h2>"):]
    section = section[:section.index("<h2>", 4)]
    assert f"identity <code>{NEW}</code>: method probe, 10 models, 5 folds" in section
    assert "1 other identity in the strength table" in section
    assert section.count("data:image/png;base64,") == 2  # histogram, std against mean
    for heading in ("By subset", "Deciles of the mean", "Histogram of the mean by category",
                    "Standard deviation against mean (Secrets of RLHF II, Figure 2)"):
        assert f"<h3>{heading}" in section
    assert "<td>incorrect</td><td class=\"num\">7</td><td class=\"num\">0.28</td>" in section
    assert "<td>helpful-base</td><td>strong</td><td class=\"num\">10</td><td class=\"num\">1</td>" in section


def test_html_has_no_strength_section_without_rows(filled_ws, tmp_path):
    text = html_report(Workspace(filled_ws), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Preference strength" not in text and "strength --strength" not in text


def test_report_strength_imports_no_model_library(sws, tmp_path):
    """It needs no model: matplotlib draws, but torch and transformers stay unloaded (as for the other reports)."""
    code = (
        "import sys\n"
        "from curate.cli import main\n"
        f"main(['report', 'strength', '-w', {str(sws.root)!r}, '--figures', {str(tmp_path)!r}, '-q'], "
        "standalone_mode=False)\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'trl') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"strength {NEW}: ")
