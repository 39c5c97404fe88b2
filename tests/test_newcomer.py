"""A newcomer's first hour (issue 13): data shown as it is, no tracebacks, advice that works. Each test here failed
before its fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from curate.workspace import Workspace

from .conftest import hand_scored_ws, hh_row, query, write_jsonl

MARKUP = ["<s>[INST] hi [/INST] hello", " [image]", "[a human person]", "[beeps]", "[video starts]",
          "[bold]not bold[/bold]", "back\\slash [/]", ":smile: [link=x]y[/link]"]


# -- data shown as it is ---------------------------------------------------------------------------------
def test_sql_shows_markup_like_text_literally(cli, filled_ws):
    values = ", ".join("$" + f"v{i}" for i in range(len(MARKUP)))
    params = [a for i, v in enumerate(MARKUP) for a in ("-p", f"v{i}", v)]
    r = cli("sql", f"select unnest([{values}]) as t", *params, "-w", filled_ws, "--width", "80")
    assert r.exit_code == 0, r.output
    for v in MARKUP:
        assert v.strip() in r.stdout, v  # before: [image] and friends vanished, [/INST] raised MarkupError


@pytest.fixture
def markup_ws(cli, tmp_path):
    """Pairs whose responses look like rich markup, filtered into a subset (by hand-made scores)."""
    import polars as pl

    rows = [hh_row(f"question {i} [{i}]?", MARKUP[i % len(MARKUP)], f"no [{i}]") for i in range(8)]
    src = write_jsonl(tmp_path / "data" / "[odd] source" / "train.jsonl", rows)
    root = tmp_path / "ws"
    assert cli("ingest", src, "-w", root, "-q").exit_code == 0
    ws = Workspace(root)
    ids = [r[0] for r in query(root, "select pair_id from pairs order by source_row")]
    with ws.transaction() as tx:
        tx.add("similarities", pl.DataFrame({
            "branch": "main", "iteration": 1, "pair_id": ids, "model_id": "m-1", "pos_sim": 0.9, "neg_sim": 0.9,
            "pos_sim_max": 0.9, "neg_sim_max": 0.9, "n_samples": 1}), key="main-it1-m-1")
    assert cli("filter", "-w", root, "-s", "positive", "-n", "8", "-i", "1", "-q").exit_code == 0
    ws.ids = ids
    return ws


def test_subsets_info_and_explain_show_data_literally(cli, markup_ws):
    r = cli("subsets", "frft-positive-it1", "-w", markup_ws.root, "--width", "200")
    assert r.exit_code == 0, r.output
    for v in MARKUP:
        assert v.strip() in r.stdout, v
    r = cli("info", "-w", markup_ws.root)
    assert "[odd] source" in r.stdout
    r = cli("explain", markup_ws.ids[0], "--subset", "frft-positive-it1", "-w", markup_ws.root)
    assert r.exit_code == 0 and "IN: picked by pos" in r.stdout


MARKUPISH = list("[]/\\:=<>ab sIN#@") + ["[bold]", "[/]", "[link=x]", "\\[", ":smile:"]


def test_the_renderer_gives_any_text_back_unchanged():
    """Random strings with brackets, backslashes and markup-like text through the one table renderer that every
    command's tables use (sql, subsets, neighbors, info, explain, runs, reports, eval)."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from curate.display import print_table

    cell = st.lists(st.sampled_from(MARKUPISH), min_size=1, max_size=12).map("".join).filter(str.strip)

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.lists(cell, min_size=1, max_size=4))
    def check(values):
        import io

        out = io.StringIO()
        print_table([f"c{i}" for i in range(len(values))], [values], file=out, width=400)
        for v in values:
            assert v in out.getvalue(), (v, out.getvalue())

    check()


def test_curate_sql_gives_any_text_back_unchanged(cli, filled_ws):
    """The same, end to end: a value bound with -p comes back from `curate sql` as it went in."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from curate.query import parse_value

    text = st.lists(st.sampled_from(MARKUPISH), min_size=1, max_size=12).map("".join) \
        .filter(lambda t: t.strip() and isinstance(parse_value(t), str))

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(text)
    def check(value):
        r = cli("sql", "select $t as t", "-p", "t", value, "-w", filled_ws, "--width", "200")
        assert r.exit_code == 0 and value in r.stdout, (value, r.output)

    check()


# -- a workspace that cannot be written ----------------------------------------------------------------------
def read_only(root: Path) -> None:
    """What read-only storage does to curate: the lock file cannot be opened for writing (tests run as root, so
    a directory in its place stands in for a read-only mount)."""
    (root / ".lock").unlink(missing_ok=True)
    (root / ".lock").mkdir()


def test_a_read_only_workspace_is_readable_and_says_it_cannot_be_written(cli, tmp_path):
    ws = hand_scored_ws(cli, tmp_path)
    assert cli("filter", "-w", ws.root, "-s", "positive", "-i", "1", "-q").exit_code == 0
    copy = tmp_path / "copied"
    shutil.copytree(ws.root, copy)  # a copied workspace: its catalog names the old folder, so it is stale
    read_only(copy)
    for args in (("sql", "select count(*) as n from pairs", "--json"), ("info", "--json"),
                 ("subsets", "--json"), ("explain", ws.ids["p9"], "--subset", "frft-positive-it1", "--json")):
        r = cli(*args, "-w", copy)
        assert r.exit_code == 0, (args, r.output)
    r = cli("export", "frft-positive-it1", "-w", copy, "-o", tmp_path / "out", "-q")
    assert r.exit_code == 0, r.output
    for args in (("ingest", ws.src), ("filter", "-s", "overall", "-i", "1"), ("score", "-i", "1"), ("embed",),
                 ("sql", "create table t as select 1", "--write"), ("report", "html")):
        r = cli(*args, "-w", copy)
        assert r.exit_code == 1, (args, r.output)
        assert r.stderr.startswith(f"Error: workspace {copy} is not writable"), (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_a_workspace_path_inside_a_file(cli, tmp_path, hh_file):
    (tmp_path / "afile").write_text("not a folder")
    r = cli("ingest", hh_file, "-w", tmp_path / "afile" / "sub")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: workspace {tmp_path / 'afile' / 'sub'} is not writable ({tmp_path / 'afile'} "
                               "is a file, not a folder)")
    r = cli("info", "-w", tmp_path / "afile" / "sub")
    assert r.exit_code == 1 and "No curate workspace at" in r.stderr


def test_a_failed_first_ingest_leaves_no_workspace_behind(cli, tmp_path):
    (tmp_path / "bin.jsonl").write_bytes(bytes(range(256)) * 8)
    r = cli("ingest", tmp_path / "bin.jsonl", "-w", tmp_path / "ws")
    assert r.exit_code == 1
    assert "bin.jsonl, line 1: not valid JSON" in r.stderr and "first row's keys" not in r.stderr
    assert not (tmp_path / "ws").exists()
    r = cli("ingest", "hf:./nope", "-w", tmp_path / "ws")
    assert r.exit_code == 1 and "no such local dataset folder" in r.stderr and "Hub" not in r.stderr.split("(")[0]
    assert not (tmp_path / "ws").exists()


def test_a_fake_gzip_gives_no_made_up_size(tmp_path):
    from curate.ingest import sources

    fake = tmp_path / "f.jsonl.gz"
    fake.write_bytes(b'{"chosen": "x"}\n' * 500)  # 8 kB of text with a .gz name
    src = sources.expand([str(fake)], None, None, None)[0]
    assert sources.estimated_bytes(src) == fake.stat().st_size  # before: the last 4 bytes read as a size (176 MB)


# -- advice that works -----------------------------------------------------------------------------------
def test_neighbors_of_an_sft_pair_says_sft_pairs_are_not_embedded(cli, tmp_path, hh_file):
    root = tmp_path / "ws"
    assert cli("ingest", hh_file, "-w", root, "--sft-fraction", "1", "-q").exit_code == 0
    pid = query(root, "select pair_id from pairs limit 1")[0][0]
    import numpy as np
    import polars as pl

    ws = Workspace(root)
    with ws.transaction() as tx:  # one hand-made vector, so the workspace has a model to search with
        tx.add("embeddings", pl.DataFrame({"text_hash": ["h"], "model_id": ["m-1"],
                                           "vector": pl.Series([np.ones(4, dtype=np.float32) / 2],
                                                               dtype=pl.Array(pl.Float32, 4))}), key="m-1")
        tx.add("embedding_models", pl.DataFrame({"model_id": ["m-1"], "name": ["hand"], "revision": [None],
                                                 "weights_sha256": ["0"], "pooling": ["mean"], "max_seq_length": [8],
                                                 "dim": [4], "identity": ["{}"], "created_at": [None]}))
    r = cli("neighbors", "--pair-id", pid, "-w", root)
    assert r.exit_code == 1 and "is an sft pair: curate embeds the responses of pref pairs only" in r.stderr
    assert "run `curate embed`" not in r.stderr


def test_explain_on_a_users_filter_does_not_make_up_a_floor(cli, tmp_path):
    ws = hand_scored_ws(cli, tmp_path)
    f = tmp_path / "my_filter.sql"
    f.write_text("select pair_id, 'one or two' as reason from pairs where trim(chosen) in ('good 1', 'good 2') "
                 "order by pair_id\n")
    assert cli("filter", "-w", ws.root, "--sql-file", f, "-i", "1", "-q").exit_code == 0
    out = query(ws.root, "select pair_id from pairs where trim(chosen) = 'good 3'")[0][0]
    r = cli("explain", out, "--subset", "my_filter-it1", "-w", ws.root, "--json")
    e = json.loads(r.stdout)
    assert e["selected"] is False and "floor" not in e["reason"] and "my_keeps" not in e["reason"]
    assert e["reason"].startswith("not in the result of its filter my_filter.sql: without a size limit the query "
                                  "returns")
    inside = query(ws.root, "select pair_id from pairs where trim(chosen) = 'good 2'")[0][0]
    e = json.loads(cli("explain", inside, "--subset", "my_filter-it1", "-w", ws.root, "--json").stdout)
    assert e["selected"] and "(one or two)" in e["reason"]  # the query's own reason column


def test_filter_advice(cli, tmp_path):
    ws = hand_scored_ws(cli, tmp_path)
    r = cli("filter", "-w", ws.root, "-s", "positive", "--eps", "2", "-n", "50", "-i", "1")
    assert r.exit_code == 0
    assert "raise --eps" not in r.stderr and "at eps 2 every scored pair is a candidate, and 10 are scored" in r.stderr
    r = cli("filter", "-w", ws.root, "-s", "frft", "-i", "1", "-q", "--json")
    assert json.loads(r.stdout)[0]["name"] == "frft-it1"  # not frft-frft-it1
    r = cli("filter", "-w", ws.root, "-s", "positive", "-i", "1", "--distinct")
    assert r.exit_code == 2 and "--distinct applies to split-even" in r.stderr


def test_score_counts_the_pref_pairs_it_could_not_score(cli, filled_ws):
    """`curate score` reported "scored 1,145 pairs" of 1,146 and said nothing of the one with no generation."""
    prompts = [r[0] for r in query(filled_ws, "select prompt from pairs order by source_row")][:5]
    gens = write_jsonl(filled_ws.parent / "g.jsonl", [{"prompt": p, "generation": "an answer"} for p in prompts])
    assert cli("generations", "import", gens, "-i", "1", "--policy", "p", "-w", filled_ws, "-q").exit_code == 0
    assert cli("embed", "-w", filled_ws, "-q").exit_code == 0
    r = cli("score", "-i", "1", "-w", filled_ws, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["no_generation"] == 1 and json.loads(r.stdout)["pairs"] == 5
    assert "not scored: 1 pref pairs with no generation in this iteration" in r.stderr


def test_heatmap_percentages_keep_small_shares(tmp_path):
    from curate.report.figures import _percent

    assert [_percent(v) for v in (0.0035, 0.035, 0.35, 0.0, 1.0)] == ["0.35%", "3.5%", "35%", "0%", "100%"]


def test_a_failed_ppo_leaves_no_empty_output_folder(cli, tmp_path, filled_ws):
    r = cli("train", "ppo", "--policy", tmp_path / "no-model", "--reward", tmp_path / "no-rm", "-o", tmp_path / "ppo",
            "-w", filled_ws)
    assert r.exit_code == 1 and not (tmp_path / "ppo").exists()
    r = cli("train", "ppo", "--policy", tmp_path / "no-model", "--reward", tmp_path / "no-rm", "-o", tmp_path / "ppo",
            "--prompts", tmp_path / "missing.jsonl")
    assert r.exit_code == 1 and "--prompts" in r.stderr and "no such file" in r.stderr  # not a traceback
    assert not (tmp_path / "ppo").exists()


def test_no_progress_bars_off_a_terminal_unless_asked(cli, hh_file, tmp_path, monkeypatch):
    from curate import progress

    monkeypatch.delenv("CURATE_PROGRESS", raising=False)
    assert not progress.enabled(False)  # tests run with stderr off a terminal
    r = cli("ingest", hh_file, "-w", tmp_path / "ws")
    assert r.exit_code == 0 and "━" not in r.stderr and "MB" not in r.stderr  # before: garbled bars in logs
    monkeypatch.setenv("CURATE_PROGRESS", "1")
    assert progress.enabled(False) and not progress.enabled(True)  # asked for; --quiet still wins
