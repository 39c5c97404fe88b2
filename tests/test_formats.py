"""Input formats: detection, --format and --field, and how each becomes prompt/chosen/rejected."""

from __future__ import annotations

import pytest

from curate.hashing import pair_id_from_parts
from curate.ingest import formats

from .conftest import hh_row, query, scalar, transcript, write_jsonl

INGEST_FIX_LINE = (
    "Fix the row, map the field names with --field (e.g. --field chosen=response_a), force the format with "
    "--format hh|explicit|conversational, or pass --skip-invalid to ingest the good rows and record the bad "
    "ones in the `rejects` table."
)


def msgs(*pairs):
    """[("user", "hi"), ("assistant", "hello")] -> TRL conversational messages."""
    return [{"role": r, "content": c} for r, c in pairs]


# -- detection ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "row, fields, expected",
    [
        (hh_row("hi", "a", "b"), {}, "hh"),
        ({"prompt": "hi", "chosen": "a", "rejected": "b"}, {}, "explicit"),
        ({"chosen": msgs(("user", "hi"), ("assistant", "a")),
          "rejected": msgs(("user", "hi"), ("assistant", "b"))}, {}, "conversational"),
        ({"prompt": msgs(("user", "hi")), "chosen": msgs(("assistant", "a")),
          "rejected": msgs(("assistant", "b"))}, {}, "conversational"),
        ({"prompt": "hi", "response_a": "a", "response_b": "b"}, {}, None),
        ({"prompt": "hi", "response_a": "a", "response_b": "b"},
         {"chosen": "response_a", "rejected": "response_b"}, "explicit"),
        ({"chosen": "a"}, {}, None),
    ],
    ids=["hh", "explicit", "conversational", "conversational-prompt", "unmapped", "mapped", "no-rejected"],
)
def test_detect(row, fields, expected):
    assert formats.detect(row, fields) == expected


def test_detection_failure_names_the_keys_and_the_fix(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [{"question": "q", "a": "1", "b": "2"}])
    r = cli("ingest", src, "-w", ws, "-q")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr == (
        f"Error: {src}: cannot tell the format: no row in the first 1 has both a chosen and a rejected field "
        "(first row's keys: ['a', 'b', 'question']). Map the field names with --field "
        "(e.g. --field chosen=response_a --field rejected=response_b) and/or pass --format.\n"
    )


# -- HH transcripts -----------------------------------------------------------------------
def test_hh_prompt_is_the_shared_transcript_up_to_the_final_assistant_marker(cli, ws, tmp_path):
    chosen = transcript("hi", "hello", "how are you?", "fine, thanks")
    rejected = transcript("hi", "hello", "how are you?", "go away")
    src = write_jsonl(tmp_path / "harmless-base" / "test.jsonl", [{"chosen": chosen, "rejected": rejected}])
    r = cli("ingest", src, "-w", ws, "-q")
    assert r.exit_code == 0, r.output
    rows = query(ws, "select prompt, chosen, rejected, chosen_full, rejected_full, flags, format, subset, split, "
                     "source, source_row, pair_id from pairs")
    assert rows == [(
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:",
        " fine, thanks",
        " go away",
        chosen,
        rejected,
        [],
        "hh",
        "harmless-base",
        "test",
        str(src),
        0,
        pair_id_from_parts("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:",
                           " fine, thanks", " go away"),
    )]


def test_hh_rows_that_diverge_early_are_split_at_the_last_shared_assistant_marker(cli, ws, tmp_path):
    chosen = transcript("hi", "hello", "tell me a joke", "knock knock")
    rejected = transcript("hi", "hello", "tell me a secret", "no")
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [{"chosen": chosen, "rejected": rejected}])
    r = cli("ingest", src, "-w", ws)
    assert r.exit_code == 0, r.output
    assert "flagged: diverged_early 1" in r.stderr
    prompt, c, rj, flags = query(ws, "select prompt, chosen, rejected, flags from pairs")[0]
    assert prompt == "\n\nHuman: hi\n\nAssistant:"
    assert c == " hello\n\nHuman: tell me a joke\n\nAssistant: knock knock"
    assert rj == " hello\n\nHuman: tell me a secret\n\nAssistant: no"
    assert prompt + c == chosen and prompt + rj == rejected
    assert flags == ["diverged_early"]


@pytest.mark.parametrize(
    "chosen_reply, rejected_reply, flags",
    [
        ("", "I can help", ["empty_response"]),
        ("Sure", "   ", ["empty_response"]),
        (" same ", "same", ["identical_responses"]),
        ("", "", ["empty_response", "identical_responses"]),
    ],
)
def test_hh_response_flags(cli, ws, tmp_path, chosen_reply, rejected_reply, flags):
    row = {"chosen": "\n\nHuman: hi\n\nAssistant:" + chosen_reply, "rejected": "\n\nHuman: hi\n\nAssistant:" + rejected_reply}
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [row])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select chosen, rejected, flags from pairs") == [(chosen_reply, rejected_reply, flags)]


# -- explicit -----------------------------------------------------------------------------
def test_explicit_rows_keep_their_texts(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [{"prompt": "2+2?", "chosen": "4", "rejected": "5", "extra": 1}])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select prompt, chosen, rejected, chosen_full, rejected_full, format, flags from pairs") == [
        ("2+2?", "4", "5", None, None, "explicit", [])
    ]
    assert scalar(ws, "select pair_id from pairs") == pair_id_from_parts("2+2?", "4", "5")


# -- conversational -----------------------------------------------------------------------
def test_conversational_with_a_prompt_list(cli, ws, tmp_path):
    row = {
        "prompt": msgs(("system", "be brief"), ("user", "hi")),
        "chosen": msgs(("assistant", "hello")),
        "rejected": msgs(("assistant", "go away")),
    }
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [row])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select prompt, chosen, rejected, chosen_full, format, flags from pairs") == [(
        "\n\nSystem: be brief\n\nHuman: hi\n\nAssistant:",
        " hello",
        " go away",
        "\n\nSystem: be brief\n\nHuman: hi\n\nAssistant: hello",
        "conversational",
        [],
    )]


def test_conversational_without_a_prompt_list_shares_the_common_turns(cli, ws, tmp_path):
    row = {
        "chosen": msgs(("user", "hi"), ("assistant", "hello"), ("user", "joke?"), ("assistant", "knock knock")),
        "rejected": msgs(("user", "hi"), ("assistant", "hello"), ("user", "joke?"), ("assistant", "no")),
    }
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [row])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select prompt, chosen, rejected, flags from pairs") == [
        (transcript("hi", "hello", "joke?") + "\n\nAssistant:", " knock knock", " no", [])
    ]


def test_the_same_pair_in_any_format_has_the_same_pair_id(cli, ws, tmp_path):
    """Conversational rows are rendered to HH transcripts, so the formats agree on prompt and pair_id."""
    hh = write_jsonl(tmp_path / "a" / "hh.jsonl", [hh_row("hi", "hello", "go away")])
    conv = write_jsonl(tmp_path / "b" / "conv.jsonl", [{
        "prompt": msgs(("user", "hi")), "chosen": msgs(("assistant", "hello")), "rejected": msgs(("assistant", "go away")),
    }])
    assert cli("ingest", hh, "-w", ws, "-q").exit_code == 0
    r = cli("ingest", conv, "-w", ws)
    assert r.exit_code == 0
    assert "read 1 rows: 0 new pairs, 1 already in the workspace, 0 rejected" in r.stderr
    assert scalar(ws, "select count(*) from pairs") == 1


# -- --format override ----------------------------------------------------------------------
def test_format_override_reads_transcripts_despite_a_prompt_field(cli, ws, tmp_path):
    row = {"prompt": "metadata, not the prompt", **hh_row("hi", "hello", "go away")}
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [row])
    assert cli("ingest", src, "-w", ws, "-q").exit_code == 0
    assert query(ws, "select prompt, format from pairs") == [("metadata, not the prompt", "explicit")]

    ws2 = ws.with_name("ws2")
    assert cli("ingest", src, "-w", ws2, "-q", "--format", "hh").exit_code == 0
    assert query(ws2, "select prompt, chosen, format from pairs") == [("\n\nHuman: hi\n\nAssistant:", " hello", "hh")]


def test_format_override_that_does_not_fit_stops_at_the_first_row(cli, ws, hh_file):
    r = cli("ingest", hh_file, "-w", ws, "-q", "--format", "explicit")
    assert r.exit_code == 1
    assert r.stderr == (
        f"Error: {hh_file}, line 1: field 'prompt' is missing or null [missing_field:prompt].\n"
        f"{INGEST_FIX_LINE}\nNothing was written.\n"
    )


def test_unknown_format_is_a_usage_error(cli, ws, hh_file):
    r = cli("ingest", hh_file, "-w", ws, "--format", "csv")
    assert r.exit_code == 2
    assert "Invalid value for '--format': 'csv' is not one of 'hh', 'explicit', 'conversational'." in r.stderr


# -- --field mapping --------------------------------------------------------------------------
def test_field_mapping_reads_other_column_names(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [
        {"question": "2+2?", "response_a": "4", "response_b": "5"},
        {"question": "3+3?", "response_a": "6", "response_b": "7"},
    ])
    r = cli("ingest", src, "-w", ws, "-q", "--field", "prompt=question", "--field", "chosen=response_a",
            "--field", "rejected=response_b")
    assert r.exit_code == 0, r.output
    assert query(ws, "select prompt, chosen, rejected, format from pairs order by source_row") == [
        ("2+2?", "4", "5", "explicit"), ("3+3?", "6", "7", "explicit"),
    ]


def test_field_mapping_for_hh_transcripts(cli, ws, tmp_path):
    row = hh_row("hi", "hello", "go away")
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [{"good": row["chosen"], "bad": row["rejected"]}])
    assert cli("ingest", src, "-w", ws, "-q", "--field", "chosen=good", "--field", "rejected=bad").exit_code == 0
    assert query(ws, "select prompt, chosen, rejected, format from pairs") == [
        ("\n\nHuman: hi\n\nAssistant:", " hello", " go away", "hh")
    ]


def test_a_missing_mapped_field_names_the_mapping(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [
        {"prompt": "p", "response_a": "a", "response_b": "b"},
        {"prompt": "p", "response_b": "b"},
    ])
    r = cli("ingest", src, "-w", ws, "-q", "--field", "chosen=response_a", "--field", "rejected=response_b")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == (
        f"Error: {src}, line 2: field 'response_a' (--field chosen=response_a) is missing or null "
        "[missing_field:chosen]."
    )


@pytest.mark.parametrize("bad", ["chosen", "answer=response_a", "chosen="])
def test_field_syntax_errors(cli, ws, hh_file, bad):
    r = cli("ingest", hh_file, "-w", ws, "-q", "--field", bad)
    assert r.exit_code == 1
    assert r.stderr == f"Error: --field {bad!r}: write NAME=KEY with NAME one of prompt, chosen, rejected.\n"
    assert not ws.exists()
