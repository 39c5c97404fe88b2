"""Ingest: every kind of source, every reject reason (default and --skip-invalid), re-ingest, roles."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from curate.errors import INGEST_FIX
from curate.hashing import assign_roles, pair_id_from_parts
from curate.ingest import ingest
from curate.workspace import Workspace

from .conftest import hh_row, query, scalar, transcript, write_jsonl


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def snapshot(root: Path) -> dict:
    """Everything a failed ingest must leave as it was: state, table files, manifests."""
    return {
        "state": (root / "state.json").read_bytes(),
        "files": sorted(p.relative_to(root).as_posix() for p in (root / "tables").rglob("*")),
        "manifests": sorted(p.name for p in (root / "manifests").iterdir()),
    }


def generation(root: Path) -> int:
    return json.loads((root / "state.json").read_text())["generation"]


# -- sources ------------------------------------------------------------------------------
def test_jsonl(cli, ws, hh_file):
    r = cli("ingest", hh_file, "-w", ws)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # stdout is for data; the summary is for people
    assert "read 6 rows: 6 new pairs, 0 already in the workspace, 0 rejected" in r.stderr
    assert query(ws, "select source, subset, split, format, count(*) from pairs group by all") == [
        (str(hh_file), "helpful-base", "train", "hh", 6)
    ]
    assert query(ws, "select source_row from pairs order by source_row") == [(i,) for i in range(6)]


def test_jsonl_gz(cli, ws, tmp_path, hh_rows):
    src = write_jsonl(tmp_path / "harmless-base" / "test.jsonl.gz", hh_rows)
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select subset, split, count(*) from pairs group by all") == [("harmless-base", "test", 6)]


@pytest.mark.parametrize("name", ["rows.json", "rows.json.gz"])
def test_json_array(cli, ws, tmp_path, hh_rows, name):
    src = tmp_path / "d" / name
    src.parent.mkdir()
    text = json.dumps(hh_rows)
    if name.endswith(".gz"):
        src.write_bytes(gzip.compress(text.encode()))
    else:
        src.write_text(text)
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select split, count(*), min(source_row), max(source_row) from pairs group by all") == [
        ("rows", 6, 0, 5)
    ]


def test_json_object_holding_one_array(cli, ws, tmp_path, hh_rows):
    src = tmp_path / "d" / "rows.json"
    src.parent.mkdir()
    src.write_text(json.dumps({"version": 2, "data": hh_rows}))
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert scalar(ws, "select count(*) from pairs") == 6


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2", "not valid JSON"),
        ("42", "expected a JSON array of rows, found a int."),
        ('{"a": [], "b": []}', "expected a JSON array of rows (or an object holding one array)."),
    ],
)
def test_json_that_is_not_an_array_of_rows(cli, ws, tmp_path, content, message):
    src = tmp_path / "d" / "rows.json"
    src.parent.mkdir()
    src.write_text(content)
    r = cli("ingest", src, "-w", ws, "-q")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {src}: ")
    assert message in r.stderr


def test_parquet(cli, ws, tmp_path, hh_rows):
    src = tmp_path / "helpful-base" / "train.parquet"
    src.parent.mkdir()
    pl.DataFrame(hh_rows).write_parquet(src)
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select subset, split, format, count(*) from pairs group by all") == [
        ("helpful-base", "train", "hh", 6)
    ]


def test_parquet_conversational(cli, ws, tmp_path):
    src = tmp_path / "d" / "conv.parquet"
    src.parent.mkdir()
    pl.DataFrame([{"prompt": msgs(("user", "hi")), "chosen": msgs(("assistant", "hello")),
                   "rejected": msgs(("assistant", "no"))}]).write_parquet(src)
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select prompt, chosen, rejected, format from pairs") == [
        ("\n\nHuman: hi\n\nAssistant:", " hello", " no", "conversational")
    ]


def test_unreadable_parquet(cli, ws, tmp_path):
    src = tmp_path / "d" / "x.parquet"
    src.parent.mkdir()
    src.write_text("not parquet")
    r = cli("ingest", src, "-w", ws, "-q")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {src}: not a readable Parquet file (")


def test_folder_is_read_recursively_with_subsets_from_folder_names(cli, ws, tmp_path):
    root = tmp_path / "hh-rlhf"
    write_jsonl(root / "helpful-base" / "train.jsonl", [hh_row("a", "b", "c")])
    write_jsonl(root / "harmless-base" / "test.jsonl.gz", [hh_row("d", "e", "f"), hh_row("g", "h", "i")])
    (root / "README.md").write_text("not data")
    r = cli("ingest", root, "-w", ws)
    assert r.exit_code == 0, r.output
    assert "read 3 rows: 3 new pairs" in r.stderr
    assert query(ws, "select subset, split, count(*) from pairs group by all order by all") == [
        ("harmless-base", "test", 2), ("helpful-base", "train", 1),
    ]


def test_glob(cli, ws, tmp_path):
    write_jsonl(tmp_path / "d" / "a.jsonl", [hh_row("a", "b", "c")])
    write_jsonl(tmp_path / "d" / "b.jsonl", [hh_row("d", "e", "f")])
    write_jsonl(tmp_path / "d" / "c.json.skip", [hh_row("g", "h", "i")])
    assert cli("ingest", str(tmp_path / "d" / "*.jsonl"), "-w", ws, "-q").exit_code == 0
    assert query(ws, "select split from pairs order by split") == [("a",), ("b",)]


def test_subset_and_split_options_override_the_layout(cli, ws, hh_file):
    assert cli("ingest", hh_file, "-w", ws, "-q", "--subset", "mine", "--split", "dev").exit_code == 0
    assert query(ws, "select distinct subset, split from pairs") == [("mine", "dev")]


def test_a_file_named_twice_is_read_once(cli, ws, hh_file):
    r = cli("ingest", hh_file, hh_file, hh_file.parent, "-w", ws)
    assert r.exit_code == 0, r.output
    assert "read 6 rows: 6 new pairs, 0 already in the workspace, 0 rejected" in r.stderr
    assert scalar(ws, "select count(*) from rejects") == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "nope.jsonl", "{p}: no such file or folder (for a Hub dataset write hf:ID)."),
        (lambda d: (d / "empty").mkdir() or d / "empty",
         "{p}: the folder has no .jsonl, .jsonl.gz, .json, .json.gz, .parquet files."),
        (lambda d: str(d / "*.jsonl"), "{p}: the pattern matches no files."),
        (lambda d: (d / "x.csv").write_text("a,b") and d / "x.csv",
         "{p}: unsupported file type; expected one of .jsonl, .jsonl.gz, .json, .json.gz, .parquet."),
    ],
    ids=["missing", "empty-folder", "glob-no-match", "csv"],
)
def test_bad_inputs(cli, ws, tmp_path, make, message):
    p = make(tmp_path)
    r = cli("ingest", p, "-w", ws, "-q")
    assert r.exit_code == 1
    assert r.stderr == "Error: " + message.format(p=p) + "\n"
    assert not ws.exists()


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [hh_row("a", "b", "c"), "", "   ", "{oops"])
    r = cli("ingest", src, "-w", ws, "-q", "--skip-invalid")
    assert r.exit_code == 0
    assert query(ws, "select line, reason, raw from rejects") == [(4, "invalid_json", "{oops")]
    assert scalar(ws, "select count(*) from pairs") == 1


def test_library_api(tmp_path, hh_file):
    res = ingest(Workspace(tmp_path / "lib"), [str(hh_file)], sft_fraction=1.0)
    assert (res.read, res.added, res.already_present, dict(res.roles)) == (6, 6, 0, {"sft": 6})
    manifest = json.loads(Path(res.manifest).read_text())
    assert manifest["ingest_id"] == res.ingest_id
    assert manifest["options"]["sft_fraction"] == 1.0
    assert manifest["sources"][0]["sha256"] == __import__("hashlib").sha256(hh_file.read_bytes()).hexdigest()
    assert manifest["counts"]["added"] == 6
    assert scalar(tmp_path / "lib", "select count(distinct ingest_id) from pairs") == 1
    assert scalar(tmp_path / "lib", "select any_value(ingest_id) from pairs") == res.ingest_id


# -- rejects --------------------------------------------------------------------------------
GOOD_HH = hh_row("good", "yes", "no")
GOOD_HH_2 = hh_row("also good", "yes", "no")
GOOD_CONV = {"prompt": msgs(("user", "hi")), "chosen": msgs(("assistant", "a")), "rejected": msgs(("assistant", "b"))}
GOOD_CONV_2 = {"prompt": msgs(("user", "yo")), "chosen": msgs(("assistant", "a")), "rejected": msgs(("assistant", "b"))}

# (good first row, which fixes the format; bad row as written; reason; detail)
REJECTS = {
    "invalid_json": (GOOD_HH, '{"chosen": "x", ', "invalid_json", None),
    "not_an_object": (GOOD_HH, "[1, 2]", "not_an_object", "the row is a JSON list, expected an object"),
    "missing_field": (GOOD_HH, json.dumps({"chosen": GOOD_HH["chosen"]}), "missing_field:rejected",
                      "field 'rejected' is missing or null"),
    "null_field": (GOOD_HH, json.dumps({"chosen": None, "rejected": GOOD_HH["rejected"]}), "missing_field:chosen",
                   "field 'chosen' is missing or null"),
    "non_str_field": (GOOD_HH, json.dumps({"chosen": 5, "rejected": "x"}), "non_str_field:chosen",
                      "field 'chosen' is a int, expected a string"),
    "invalid_field": (GOOD_CONV, json.dumps({**GOOD_CONV, "rejected": "b"}), "invalid_field:rejected",
                      "field 'rejected' is a str, expected a list"),
    "invalid_messages": (GOOD_CONV, json.dumps({**GOOD_CONV, "chosen": [{"role": "bot", "content": "a"},
                                                                        {"role": "assistant", "content": "a"}]}),
                         "invalid_messages:chosen",
                         "chosen[0] is not a {role: user|assistant|system, content: string} message"),
    "invalid_prompt_messages": (GOOD_CONV, json.dumps({**GOOD_CONV, "prompt": [{"role": "user", "content": 1}]}),
                                "invalid_messages:prompt",
                                "prompt[0] is not a {role: user|assistant|system, content: string} message"),
    "no_assistant_turn_hh": (GOOD_HH, json.dumps({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hi"}),
                             "no_assistant_turn", "chosen and rejected has no '\\n\\nAssistant:' turn"),
    "no_assistant_turn_conv": (GOOD_CONV, json.dumps({**GOOD_CONV, "chosen": msgs(("user", "more?"))}),
                               "no_assistant_turn", "the last message of chosen is not from the assistant"),
    "no_shared_prompt": (GOOD_HH, json.dumps({"chosen": transcript("hi", "a"), "rejected": transcript("bye", "b")}),
                         "no_shared_prompt", "chosen and rejected share no turn ending in '\\n\\nAssistant:'"),
}


@pytest.fixture(params=sorted(REJECTS))
def bad_file(request, tmp_path):
    good, bad, reason, detail = REJECTS[request.param]
    last = GOOD_CONV_2 if good is GOOD_CONV else GOOD_HH_2
    src = write_jsonl(tmp_path / "bad" / "rows.jsonl", [good, bad, last])
    return src, bad, reason, detail


def test_a_bad_row_stops_ingest_and_leaves_the_workspace_unchanged(cli, filled_ws, bad_file):
    src, bad, reason, detail = bad_file
    before = snapshot(filled_ws)
    r = cli("ingest", src, "-w", filled_ws, "-q")
    assert r.exit_code == 1
    assert r.stdout == ""
    first, *rest = r.stderr.splitlines()
    if detail is None:  # the JSON parser's own words
        assert first.startswith(f"Error: {src}, line 2: invalid JSON (") and first.endswith(") [invalid_json].")
    else:
        assert first == f"Error: {src}, line 2: {detail} [{reason}]."
    assert "\n".join(rest) == f"{INGEST_FIX}\nNothing was written."
    assert snapshot(filled_ws) == before
    assert scalar(filled_ws, "select count(*) from pairs where source = $s", {"s": str(src)}) == 0
    assert scalar(filled_ws, "select count(*) from rejects") == 0


def test_skip_invalid_lands_the_good_rows_and_records_the_bad_one(cli, filled_ws, bad_file):
    src, bad, reason, detail = bad_file
    r = cli("ingest", src, "-w", filled_ws, "--skip-invalid")
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert "read 3 rows: 2 new pairs, 0 already in the workspace, 1 rejected" in r.stderr
    assert f"rejects: {reason} 1  (see: curate sql \"select * from rejects\")" in r.stderr
    assert query(filled_ws, "select source_row from pairs where source = $s order by 1", {"s": str(src)}) == [(0,), (2,)]
    assert query(filled_ws, "select source, line, reason, raw from rejects") == [(str(src), 2, reason, bad)]
    if detail is not None:
        assert scalar(filled_ws, "select detail from rejects") == detail


def test_a_bad_row_in_a_later_chunk_still_writes_nothing(cli, filled_ws, tmp_path, monkeypatch):
    """Rows are parsed and written chunk by chunk; an error in chunk 3 must undo chunks 1 and 2."""
    from curate.ingest import sources

    monkeypatch.setattr(sources, "CHUNK", 2)
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [hh_row(f"q{i}", "a", "b") for i in range(5)] + ["{bad"])
    before = snapshot(filled_ws)
    r = cli("ingest", src, "-w", filled_ws, "-q")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {src}, line 6: invalid JSON (")
    assert snapshot(filled_ws) == before
    r = cli("ingest", src, "-w", filled_ws, "-q", "--skip-invalid")
    assert r.exit_code == 0
    assert query(filled_ws, "select line, reason from rejects") == [(6, "invalid_json")]
    assert query(filled_ws, "select source_row from pairs where source = $s order by 1", {"s": str(src)}) == [
        (i,) for i in range(5)
    ]


def test_a_bad_row_in_the_second_file_writes_nothing_from_the_first(cli, filled_ws, tmp_path):
    good = write_jsonl(tmp_path / "d" / "a.jsonl", [hh_row("new", "a", "b")])
    bad = write_jsonl(tmp_path / "d" / "b.jsonl", [hh_row("newer", "a", "b"), "[]"])
    before = snapshot(filled_ws)
    r = cli("ingest", good, bad, "-w", filled_ws, "-q")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == f"Error: {bad}, line 2: the row is a JSON list, expected an object [not_an_object]."
    assert snapshot(filled_ws) == before


def test_a_failed_first_ingest_leaves_no_workspace(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [GOOD_HH, "{bad"])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 1
    assert not ws.exists()  # not even an empty skeleton (issue 13): the next ingest starts clean
    assert cli("ingest", src, "-w", ws, "-q", "--skip-invalid").exit_code == 0
    assert generation(ws) == 1 and scalar(ws, "select count(*) from pairs") == 1


def test_reject_raw_of_rows_without_a_line_of_text_is_their_json(cli, ws, tmp_path):
    src = tmp_path / "d" / "rows.parquet"
    src.parent.mkdir()
    pl.DataFrame([GOOD_HH, {"chosen": None, "rejected": "x"}]).write_parquet(src)
    assert cli("ingest", src, "-w", ws, "-q", "--skip-invalid").exit_code == 0
    assert query(ws, "select line, reason, raw from rejects") == [
        (2, "missing_field:chosen", '{"chosen":null,"rejected":"x"}')
    ]


def test_duplicate_pairs_in_one_ingest_are_recorded_not_fatal(cli, ws, tmp_path):
    row = hh_row("same", "yes", "no")
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [row, hh_row("other", "a", "b"), row])
    r = cli("ingest", src, "-w", ws)
    assert r.exit_code == 0, r.output
    assert "read 3 rows: 2 new pairs, 0 already in the workspace, 1 rejected" in r.stderr
    pid = pair_id_from_parts("\n\nHuman: same\n\nAssistant:", " yes", " no")
    assert query(ws, "select line, reason, detail, raw from rejects") == [
        (3, "duplicate_pair", f"same pair as {src}, line 1 (pair_id {pid})", json.dumps(row))
    ]


def test_whitespace_only_differences_are_the_same_pair(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [
        {"prompt": "q", "chosen": "yes", "rejected": "no"},
        {"prompt": "q ", "chosen": "\nyes", "rejected": "no\t"},
    ])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select line, reason from rejects") == [(2, "duplicate_pair")]


# -- re-ingest ------------------------------------------------------------------------------
def test_reingest_is_idempotent(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [GOOD_HH, "not json", GOOD_HH_2, GOOD_HH])
    assert cli("ingest", src, "-w", ws, "-q", "--skip-invalid").exit_code == 0
    first = query(ws, "select * from pairs order by pair_id"), query(ws, "select * from rejects order by line")
    gen = generation(ws)
    r = cli("ingest", src, "-w", ws, "--skip-invalid")
    assert r.exit_code == 0
    assert "read 4 rows: 0 new pairs, 3 already in the workspace, 1 rejected" in r.stderr
    assert (query(ws, "select * from pairs order by pair_id"), query(ws, "select * from rejects order by line")) == first
    assert generation(ws) == gen  # nothing new, nothing committed
    assert len(list((ws / "manifests").glob("ingest-*.json"))) == 2  # but the step is on record


def test_reingest_of_a_grown_file_adds_only_the_new_rows(cli, ws, tmp_path, hh_rows):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", hh_rows[:4])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    write_jsonl(src, hh_rows)
    r = cli("ingest", src, "-w", ws)
    assert "read 6 rows: 2 new pairs, 4 already in the workspace, 0 rejected" in r.stderr
    assert scalar(ws, "select count(*), count(distinct pair_id) from pairs") == 6
    assert query(ws, "select count(distinct ingest_id) from pairs") == [(2,)]


# -- roles --------------------------------------------------------------------------------
def explicit_rows(start: int, n: int) -> list[dict]:
    return [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(start, start + n)]


def roles(root: Path) -> dict[str, str]:
    return dict(query(root, "select pair_id, role from pairs"))


def test_default_role_is_pref(cli, filled_ws):
    assert query(filled_ws, "select role, count(*) from pairs group by role") == [("pref", 6)]


def test_sft_fraction_is_deterministic_and_seeded(cli, tmp_path):
    src = write_jsonl(tmp_path / "d" / "a.jsonl", explicit_rows(0, 400))
    for name, seed in (("a", 0), ("b", 0), ("c", 7)):
        assert cli("ingest", src, "-w", tmp_path / name, "-q", "--sft-fraction", "0.5", "--seed", seed).exit_code == 0
    a, b, c = roles(tmp_path / "a"), roles(tmp_path / "b"), roles(tmp_path / "c")
    assert a == b
    assert a != c
    assert 150 < sum(r == "sft" for r in a.values()) < 250
    assert list(a.values()) == assign_roles(list(a), 0.5, 0)
    assert list(c.values()) == assign_roles(list(c), 0.5, 7)


def test_a_pair_keeps_its_role_when_more_data_is_added(cli, tmp_path):
    first = write_jsonl(tmp_path / "d" / "a.jsonl", explicit_rows(0, 100))
    more = write_jsonl(tmp_path / "d" / "b.jsonl", explicit_rows(100, 300))
    opts = ("-q", "--sft-fraction", "0.3", "--seed", "3")
    assert cli("ingest", first, "-w", tmp_path / "small", *opts).exit_code == 0
    assert cli("ingest", more, first, "-w", tmp_path / "big", *opts).exit_code == 0
    assert cli("ingest", first, "-w", tmp_path / "grown", *opts).exit_code == 0
    assert cli("ingest", more, "-w", tmp_path / "grown", *opts).exit_code == 0
    small, big, grown = roles(tmp_path / "small"), roles(tmp_path / "big"), roles(tmp_path / "grown")
    assert len(small) == 100 and len(big) == len(grown) == 400
    assert {k: big[k] for k in small} == small
    assert grown == big


@pytest.mark.parametrize("fraction, expected", [("0", {"pref"}), ("1", {"sft"})])
def test_sft_fraction_bounds(cli, ws, hh_file, fraction, expected):
    assert cli("ingest", hh_file, "-w", ws, "-q", "--sft-fraction", fraction).exit_code == 0
    assert {r for (r,) in query(ws, "select role from pairs")} == expected


def test_sft_fraction_out_of_range(cli, ws, hh_file):
    r = cli("ingest", hh_file, "-w", ws, "-q", "--sft-fraction", "1.5")
    assert r.exit_code == 1
    assert r.stderr == "Error: --sft-fraction 1.5: must be between 0 and 1.\n"
    assert not ws.exists()
