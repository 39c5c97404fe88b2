"""`curate sql`: read-only by default, --write, named parameters, output formats, errors."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from .conftest import query

READ_ONLY = (
    "Error: curate sql is read-only by default, and this query has a statement of type {kind}, which would change "
    "something. Re-run with --write if that is what you want.\n"
)


# -- read-only by default -------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql, kind",
    [
        ("copy (select * from pairs) to '{tmp}/out.csv'", "COPY"),
        ("create table mine as select * from pairs", "CREATE"),
        ("attach '{tmp}/other.duckdb' as other", "ATTACH"),
        ("insert into pairs (pair_id) values ('x')", "INSERT"),
        ("drop view pairs", "DROP"),
        ("select 1; create table mine (a int)", "CREATE"),
        # EXPLAIN ANALYZE runs what it explains
        ("explain analyze copy (select 1) to '{tmp}/out.csv'", "COPY"),
        ("explain (analyze) copy (select 1) to '{tmp}/out.csv'", "COPY"),
    ],
)
def test_statements_that_change_something_are_refused(cli, filled_ws, tmp_path, sql, kind):
    r = cli("sql", sql.format(tmp=tmp_path), "-w", filled_ws)
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr == READ_ONLY.format(kind=kind)
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "other.duckdb").exists()


@pytest.mark.parametrize("sql", ["explain select * from pairs", "explain analyze select count(*) from pairs",
                                 "pragma table_info('pairs')", "with t as (select 1 as a) select * from t"])
def test_reading_statements_are_allowed(cli, filled_ws, sql):
    r = cli("sql", sql, "-w", filled_ws, "-f", "csv")
    assert r.exit_code == 0, r.output


def test_write_allows_create_table_and_later_reads_see_it(cli, filled_ws, hh_file, tmp_path):
    r = cli("sql", "--write", "create table mine as select pair_id from pairs order by pair_id limit 2",
            "-w", filled_ws, "-f", "csv")
    assert (r.exit_code, r.stdout) == (0, "Count\n2\n")
    r = cli("sql", "select count(*) as n from mine", "-w", filled_ws, "-f", "csv")
    assert (r.exit_code, r.stdout) == (0, "n\n2\n")
    # a later ingest refreshes the catalog's views and keeps the user's table
    more = tmp_path / "more" / "x.jsonl"
    more.parent.mkdir()
    more.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    assert cli("ingest", more, "-w", filled_ws, "-q").exit_code == 0
    r = cli("sql", "select (select count(*) from mine) as mine, (select count(*) from pairs) as pairs",
            "-w", filled_ws, "-f", "csv")
    assert (r.exit_code, r.stdout) == (0, "mine,pairs\n2,7\n")


def test_write_allows_copy(cli, filled_ws, tmp_path):
    out = tmp_path / "pairs.csv"
    r = cli("sql", "--write", f"copy (select pair_id from pairs) to '{out}'", "-w", filled_ws)
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 7


# -- parameters -------------------------------------------------------------------------------
def test_named_parameters_are_bound_and_typed(cli, filled_ws):
    r = cli("sql", "select $n + 1 as n, $s as s, $b as b, $x as x, $f * 2 as f", "-w", filled_ws, "-f", "json",
            "-p", "n", "41", "-p", "s", "hello", "-p", "b", "true", "-p", "x", "null", "-p", "f", "0.25")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"n": 42, "s": "hello", "b": True, "x": None, "f": 0.5}]


def test_parameters_filter_the_tables(cli, filled_ws):
    r = cli("sql", "select count(*) as n from pairs where source_row < $k", "-w", filled_ws, "-f", "csv",
            "-p", "k", "4")
    assert (r.exit_code, r.stdout) == (0, "n\n4\n")


def test_missing_parameter(cli, filled_ws):
    r = cli("sql", "select * from pairs where source_row < $k and split = $s", "-w", filled_ws, "-p", "s", "x")
    assert r.exit_code == 1
    assert r.stderr == "Error: The query uses parameter(s) $k with no value: pass -p k VALUE.\n"


def test_unused_parameter(cli, filled_ws):
    r = cli("sql", "select $b, $a", "-w", filled_ws, "-p", "a", "1", "-p", "b", "2", "-p", "zz", "3")
    assert r.exit_code == 1
    assert r.stderr == "Error: Parameter(s) zz are not used by the query (it uses $a, $b).\n"
    r = cli("sql", "select 1", "-w", filled_ws, "-p", "zz", "3")
    assert r.stderr == "Error: Parameter(s) zz are not used by the query (it uses none).\n"


def test_a_parameter_error_changes_nothing_under_write(cli, filled_ws):
    r = cli("sql", "--write", "create table mine as select 1 as a", "-w", filled_ws, "-p", "zz", "3")
    assert r.exit_code == 1
    r = cli("sql", "--write", "create table mine as select 1 as a; select $k", "-w", filled_ws)
    assert r.stderr == "Error: The query uses parameter(s) $k with no value: pass -p k VALUE.\n"
    assert query(filled_ws, "select count(*) from information_schema.tables where table_name = 'mine'") == [(0,)]


def test_query_from_a_file(cli, filled_ws, tmp_path):
    q = tmp_path / "q.sql"
    q.write_text("-- pairs of a split\nselect count(*) as n from pairs where split = $split\n")
    r = cli("sql", "--file", q, "-p", "split", "train", "-w", filled_ws, "-f", "csv")
    assert (r.exit_code, r.stdout) == (0, "n\n6\n")


@pytest.mark.parametrize("args", [(), ("select 1", "--file", "{q}")])
def test_query_or_file_exactly_one(cli, filled_ws, tmp_path, args):
    q = tmp_path / "q.sql"
    q.write_text("select 1")
    r = cli("sql", *(a.format(q=q) for a in args), "-w", filled_ws)
    assert r.exit_code == 2
    assert r.stderr.endswith("Error: give a QUERY or --file FILE (one of them).\n")


def test_empty_query(cli, filled_ws):
    r = cli("sql", " ; ", "-w", filled_ws)
    assert (r.exit_code, r.stderr) == (1, "Error: The query is empty.\n")


# -- output formats -------------------------------------------------------------------------
Q = "select source_row, prompt, flags from pairs where source_row < 2 order by source_row"
ROWS = [
    {"source_row": 0, "prompt": "\n\nHuman: question 0?\n\nAssistant:", "flags": []},
    {"source_row": 1, "prompt": "\n\nHuman: question 1?\n\nAssistant:", "flags": []},
]


def test_csv(cli, filled_ws):
    r = cli("sql", Q, "-w", filled_ws, "--format", "csv")
    assert r.exit_code == 0
    assert r.stderr == ""
    got = list(csv.DictReader(io.StringIO(r.stdout)))
    assert got == [{"source_row": str(x["source_row"]), "prompt": x["prompt"], "flags": "[]"} for x in ROWS]


def test_json(cli, filled_ws):
    r = cli("sql", Q, "-w", filled_ws, "--format", "json")
    assert (r.exit_code, r.stderr) == (0, "")
    assert json.loads(r.stdout) == ROWS


def test_json_of_no_rows(cli, filled_ws):
    r = cli("sql", "select * from pairs where false", "-w", filled_ws, "-f", "json")
    assert (r.exit_code, r.stdout) == (0, "[]\n")


def test_jsonl(cli, filled_ws):
    r = cli("sql", Q, "-w", filled_ws, "-f", "jsonl")
    assert (r.exit_code, r.stderr) == (0, "")
    assert [json.loads(line) for line in r.stdout.splitlines()] == ROWS


def test_table(cli, filled_ws):
    r = cli("sql", "select source_row, split from pairs order by source_row limit 2", "-w", filled_ws)
    assert (r.exit_code, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert "source_row" in lines[1] and "split" in lines[1]
    assert [ln.split("│")[1:3] for ln in lines if ln.startswith("│")] == [
        [" 0          ", " train "], [" 1          ", " train "],
    ]


def test_table_shows_newlines_escaped_and_says_when_it_stops(cli, filled_ws):
    r = cli("sql", "select prompt from pairs order by source_row", "-w", filled_ws, "--max-rows", "2")
    assert r.exit_code == 0
    assert "\\n\\nHuman: question 0?\\n\\nAssistant:" in r.stdout
    assert "question 2" not in r.stdout
    assert r.stderr == (
        "showing the first 2 of 6 rows; use --max-rows, or --format csv/json/parquet for all of them\n"
    )


def test_parquet_output(cli, filled_ws, tmp_path):
    out = tmp_path / "out.parquet"
    r = cli("sql", Q, "-w", filled_ws, "-f", "parquet", "-o", out)
    assert r.exit_code == 0
    assert r.stdout == ""
    assert r.stderr == f"wrote 2 rows to {out}\n"
    assert pq.read_table(out).to_pylist() == ROWS


def test_parquet_needs_an_output_file(cli, filled_ws):
    r = cli("sql", Q, "-w", filled_ws, "-f", "parquet")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == "Error: --format parquet needs --output FILE.\n"


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "table"])
def test_output_file(cli, filled_ws, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    r = cli("sql", Q, "-w", filled_ws, "-f", fmt, "--output", out)
    assert r.exit_code == 0
    assert r.stdout == ""
    assert r.stderr == f"wrote 2 rows to {out}\n"
    assert cli("sql", Q, "-w", filled_ws, "-f", fmt).stdout == out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql, first_line",
    [
        ("select * from nosuch", "Error: Catalog Error: Table with name nosuch does not exist!"),
        ("selec 1", 'Error: Parser Error: syntax error at or near "selec"'),
        ("select nosuch from pairs", 'Error: Binder Error: Referenced column "nosuch" not found in FROM clause!'),
    ],
)
def test_sql_errors_are_duckdbs_message_without_a_traceback(cli, filled_ws, sql, first_line):
    r = cli("sql", sql, "-w", filled_ws)
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr.splitlines()[0] == first_line
    assert "Traceback" not in r.stderr


def test_runtime_errors_too(cli, filled_ws):
    r = cli("sql", "select cast(prompt as integer) from pairs", "-w", filled_ws, "-f", "csv")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: Conversion Error: Could not convert string")
    assert "Traceback" not in r.stderr
