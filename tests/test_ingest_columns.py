"""Ingest's columnar reading of JSON Lines (curate.ingest.columns) must give exactly what reading line by line gives:
the same pairs, the same rejects with the same lines, whatever a block holds."""

from __future__ import annotations

import json

import orjson
import polars as pl
import pytest

from curate.ingest import columns, ingest, sources
from curate.workspace import Workspace

from .conftest import hh_row, transcript

GOOD = [json.dumps(hh_row(f"q{i}", "yes", "no")) for i in range(3)]
T, T2 = json.dumps(transcript("q", "a")), json.dumps(transcript("q", "b"))  # JSON text, to build lines by hand
TRICKY = {
    "number": '{"chosen": 5, "rejected": %s}' % T,
    "bool": '{"chosen": %s, "rejected": true}' % T,
    "list": '{"chosen": ["x"], "rejected": %s}' % T,
    "object": '{"chosen": {"a": 1}, "rejected": %s}' % T,
    "null": '{"chosen": null, "rejected": %s}' % T,
    "missing": '{"rejected": %s}' % T,
    "repeated key": '{"chosen": %s, "chosen": %s, "rejected": %s}' % (T, T2, T),
    "escaped key": '{"\\u0063hosen": 7, "rejected": %s}' % T,
    "lone surrogate": '{"chosen": %s, "rejected": "\\ud800 x"}' % T,
    "lone surrogate elsewhere": '{"chosen": %s, "rejected": %s, "note": "\\udbff"}' % (T, T2),
    "blank line": "",
    "whitespace line": "  \t",
    "not json": "{bad",
    "a list": "[1, 2]",
    "null line": "null",
    "nested key": '{"chosen": %s, "rejected": %s, "meta": {"chosen": 1}}' % (T, T2),
}
# strings that look like what polars makes of other types: read as columns, checked with orjson, kept
LOOKALIKES = [json.dumps({"prompt": p, "chosen": c, "rejected": "x"})
              for p, c in (("5", "-1"), ("[x]", "{y}"), ("true", "false"), ("0", "no"))]


def _ingest(tmp_path, name: str, lines: list[str], reference: bool, monkeypatch, fmt: str | None = None) -> tuple:
    src = tmp_path / "d" / "x.jsonl"
    src.parent.mkdir(exist_ok=True)
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with monkeypatch.context() as m:
        if reference:
            m.setattr(columns, "read_block", lambda block, keys: None)
        ws = Workspace(tmp_path / ("ref" if reference else "fast") / name)
        res = ingest(ws, [str(src)], fmt=fmt, skip_invalid=True)
    with ws.connect() as con:
        pairs = con.execute("select * exclude (ingest_id) from pairs order by source_row").fetchall()
        rejects = con.execute("select * exclude (ingest_id) from rejects order by line, reason").fetchall()
    return pairs, rejects, res.read, res.added, dict(res.rejected), dict(res.flags)


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_a_tricky_line_gives_what_reading_line_by_line_gives(tmp_path, monkeypatch, case):
    lines = GOOD[:2] + [TRICKY[case]] + GOOD[2:]
    got = _ingest(tmp_path, "x", lines, False, monkeypatch, fmt="hh")
    assert got == _ingest(tmp_path, "x", lines, True, monkeypatch, fmt="hh")
    assert got[2] == 4 - (case in ("blank line", "whitespace line"))  # blank lines are layout, not rows


def test_lookalike_strings_are_read_as_columns(tmp_path, monkeypatch):
    got = _ingest(tmp_path, "x", LOOKALIKES, False, monkeypatch)
    assert got == _ingest(tmp_path, "x", LOOKALIKES, True, monkeypatch)
    assert got[3] == len(LOOKALIKES)
    keys = columns.keys_read("explicit", {})
    frame = columns.read_block(sources.Lines(1, "".join(x + "\n" for x in LOOKALIKES).encode()), keys)
    assert frame is not None and frame["prompt"].to_list() == [orjson.loads(x)["prompt"] for x in LOOKALIKES]
    with_a_number = "".join(x + "\n" for x in LOOKALIKES + ['{"prompt": 5, "chosen": "a", "rejected": "b"}'])
    assert columns.read_block(sources.Lines(1, with_a_number.encode()), keys) is None


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_read_block_declines_a_block_polars_would_read_differently(case):
    data = "".join(line + "\n" for line in GOOD + [TRICKY[case]]).encode()
    assert columns.read_block(sources.Lines(1, data), columns.keys_read("hh", {})) is None


def test_read_block_numbers_the_lines_of_its_block():
    data = "".join(line + "\n" for line in GOOD).encode()
    frame = columns.read_block(sources.Lines(41, data), columns.keys_read("hh", {}))
    assert frame.columns == ["line", "chosen_full", "rejected_full"]
    assert frame["line"].to_list() == [41, 42, 43]
    assert frame["chosen_full"].to_list() == [json.loads(x)["chosen"] for x in GOOD]


def test_mapped_and_explicit_fields_are_read_as_columns():
    rows = [{"q": f"p{i}", "a": "yes", "b": "no", "extra": [1, {"chosen": 2}]} for i in range(3)]
    keys = columns.keys_read("explicit", {"prompt": "q", "chosen": "a", "rejected": "b"})
    frame = columns.read_block(sources.Lines(1, b"".join(orjson.dumps(r) + b"\n" for r in rows)), keys)
    assert frame.select("prompt", "chosen", "rejected").rows() == [(r["q"], r["a"], r["b"]) for r in rows]
    assert columns.keys_read("conversational", {}) is None  # lists of messages: line by line
    assert columns.keys_read("hh", {"chosen": 'a"b'}) is None  # a key not every encoder writes the same way


def test_blocks_split_at_line_ends_and_keep_line_numbers(tmp_path, monkeypatch):
    long = json.dumps(hh_row("a much longer prompt " * 20, "yes", "no"))
    lines = GOOD + ["", long, "   "] + GOOD + [json.dumps(hh_row("last", "y", "n"))]
    src = tmp_path / "d" / "x.jsonl"
    src.parent.mkdir()
    src.write_bytes("\n".join(lines).encode())  # no newline after the last line
    monkeypatch.setattr(sources, "BLOCK", 100)  # shorter than most lines
    blocks = list(sources.read(sources.Source(str(src), path=src), lines=True))
    assert len(blocks) > 3
    assert b"".join(b.data for b in blocks) == src.read_bytes()
    assert [b.first for b in blocks] == [1] + [b.first + b.count for b in blocks[:-1]]
    assert sum(b.count for b in blocks) == len(lines)


def test_many_blocks_stream_into_one_file_with_the_same_rows(tmp_path, monkeypatch):
    rows = GOOD + [TRICKY["number"], GOOD[0]] + [json.dumps(hh_row(f"more {i}", "a", "b")) for i in range(20)]
    one = _ingest(tmp_path, "one", rows, False, monkeypatch)
    monkeypatch.setattr(sources, "BLOCK", 300)  # a few lines a block: many chunks, the streaming writer
    many = _ingest(tmp_path, "many", rows, False, monkeypatch)
    assert many == one and many[4] == {"non_str_field:chosen": 1, "duplicate_pair": 1}
    import pyarrow.parquet as pq

    files = list((tmp_path / "fast" / "many" / "tables" / "pairs").glob("*.parquet"))
    assert len(files) == 1 and pl.read_parquet(files[0]).height == len(rows) - 2
    assert pq.ParquetFile(files[0]).metadata.num_row_groups > 1  # one per chunk
