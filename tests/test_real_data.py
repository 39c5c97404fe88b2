"""The shared HH-RLHF harmless-base test file (2,312 pairs): nothing lost, prompts split as specified."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from curate.hashing import assign_roles, pair_id_from_parts

from .conftest import query, scalar

MARKER = "\n\nAssistant:"
N = 2312


@pytest.fixture(scope="module")
def source_rows(shared_hh) -> list[dict]:
    with gzip.open(shared_hh, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def pairs(real_ws) -> list[dict]:
    cols = ["pair_id", "prompt", "chosen", "rejected", "chosen_full", "rejected_full", "source_row", "flags", "role"]
    return [dict(zip(cols, r)) for r in query(real_ws, f"select {', '.join(cols)} from pairs order by source_row")]


def test_nothing_is_lost(real_ws, source_rows):
    assert len(source_rows) == N
    assert scalar(real_ws, "select count(*) from pairs") == N
    assert scalar(real_ws, "select count(*) from rejects") == 0
    assert scalar(real_ws, "select (select count(*) from pairs) + (select count(*) from rejects)") == len(source_rows)
    assert query(real_ws, "select count(distinct pair_id), min(source_row), max(source_row) from pairs") == [
        (N, 0, N - 1)
    ]
    assert query(real_ws, "select distinct subset, split, format from pairs") == [("harmless-base", "test", "hh")]


def test_flags(real_ws):
    assert query(real_ws, "select flag, count(*) from (select unnest(flags) as flag from pairs) "
                          "group by flag order by flag") == [("diverged_early", 5), ("empty_response", 4)]


def test_pairs_are_the_source_rows_in_order(pairs, source_rows):
    assert [(p["chosen_full"], p["rejected_full"]) for p in pairs] == [(r["chosen"], r["rejected"]) for r in source_rows]


def test_prompt_plus_response_is_the_transcript(pairs):
    for p in pairs:
        assert p["prompt"] + p["chosen"] == p["chosen_full"], p["source_row"]
        assert p["prompt"] + p["rejected"] == p["rejected_full"], p["source_row"]


def test_prompt_is_everything_up_to_the_final_assistant_marker(pairs):
    """Every row that is not diverged_early: prompt = transcript up to and including the last marker."""
    plain = [p for p in pairs if "diverged_early" not in p["flags"]]
    assert len(plain) == N - 5
    for p in plain:
        for full in (p["chosen_full"], p["rejected_full"]):
            assert p["prompt"] == full[: full.rindex(MARKER) + len(MARKER)], p["source_row"]


def test_diverged_rows_split_at_the_longest_shared_prefix_ending_in_a_marker(pairs):
    diverged = [p for p in pairs if "diverged_early" in p["flags"]]
    assert len(diverged) == 5
    for p in diverged:
        c, r = p["chosen_full"], p["rejected_full"]
        shared = os.path.commonprefix([c, r])
        assert p["prompt"] == shared[: shared.rindex(MARKER) + len(MARKER)]
        # they really do diverge before the last turn: a response still holds an assistant turn
        assert MARKER in p["chosen"] or MARKER in p["rejected"]


def test_empty_responses(pairs):
    empty = [p for p in pairs if "empty_response" in p["flags"]]
    assert len(empty) == 4
    assert all(not p["chosen"].strip() or not p["rejected"].strip() for p in empty)


def test_pair_id_is_the_documented_hash(pairs):
    for p in pairs[:5] + pairs[-5:]:
        assert p["pair_id"] == pair_id_from_parts(p["prompt"], p["chosen"], p["rejected"])
    assert all(p["pair_id"] == pair_id_from_parts(p["prompt"], p["chosen"], p["rejected"]) for p in pairs)


def test_roles_follow_pair_id_and_seed(pairs):
    assert [p["role"] for p in pairs] == assign_roles([p["pair_id"] for p in pairs], 0.5, 0)
    assert 0.45 < sum(p["role"] == "sft" for p in pairs) / N < 0.55


def test_cli_ingest_and_reingest(cli, ws, shared_hh):
    r = cli("ingest", shared_hh, "-w", ws, "--sft-fraction", "0.5")
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert "read 2,312 rows: 2,312 new pairs, 0 already in the workspace, 0 rejected" in r.stderr
    assert "  flagged: diverged_early 5, empty_response 4" in r.stderr
    r = cli("ingest", shared_hh, "-w", ws, "--sft-fraction", "0.5")
    assert "read 2,312 rows: 0 new pairs, 2,312 already in the workspace, 0 rejected" in r.stderr
    assert scalar(ws, "select count(*) from pairs") == N
