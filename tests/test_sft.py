"""SFT on the workspace's sft pairs (issue #6): a couple of steps on a tiny model, a checkpoint that loads."""

from __future__ import annotations

import json

import pytest

from curate.errors import CurateError

from .conftest import write_jsonl
from .test_rm import CORPUS, good_bad_rows, tiny_lm

pytest.importorskip("trl")


@pytest.fixture
def sft_ws(cli, tmp_path):
    src = write_jsonl(tmp_path / "data" / "harmless-base" / "train.jsonl", good_bad_rows(12))
    root = tmp_path / "ws"
    assert cli("ingest", src, "-w", root, "-q", "--sft-fraction", "1").exit_code == 0
    return root


def test_sft_runs_and_saves_a_checkpoint_that_loads(tmp_path, sft_ws):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.train.sft import SFTConfig, train_sft

    base = tiny_lm(tmp_path / "base", CORPUS)
    r = train_sft(SFTConfig(model=str(base), output=str(tmp_path / "sft"), workspace=str(sft_ws), max_steps=2,
                               batch_size=4, lr=1e-3, quiet=True))
    assert (r.rows, r.truncated, r.metrics["steps"]) == (12, 0, 2)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    tok = AutoTokenizer.from_pretrained(tmp_path / "sft")
    assert model(**tok("question 1 about topic 1 ?", return_tensors="pt")).logits.shape[-1] == len(tok)
    rec = json.loads((tmp_path / "sft" / "curate_train.json").read_text())
    assert rec["kind"] == "sft" and rec["counts"]["rows"] == 12 and rec["data"]["kind"] == "sft_pairs"
    assert rec["base_model"] == str(base) and "trl" in rec["versions"]


def test_sft_cli_and_no_sft_pairs(cli, tmp_path, sft_ws):
    base = tiny_lm(tmp_path / "base", CORPUS)
    r = cli("train", "sft", "--model", base, "-o", tmp_path / "sft", "-w", sft_ws, "--max-steps", "1",
            "--batch-size", "4")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"{tmp_path / 'sft'}\n"
    # what the optimiser saw (1 step of 4 rows), not just the pairs there are (issue 13)
    assert "fine-tuned for 1 step on 4 rows (of 12 sft pairs, 0 truncated)" in r.stderr
    r = cli("train", "sft", "--model", base, "-o", tmp_path / "sft", "-w", sft_ws, "--max-steps", "1")
    assert r.exit_code == 1 and "already exists" in r.stderr  # a second run does not overwrite silently
    r = cli("train", "sft", "--model", base, "-o", tmp_path / "sft", "-w", sft_ws, "--max-steps", "1", "--force")
    assert r.exit_code == 0, r.output

    src = write_jsonl(tmp_path / "pref" / "harmless-base" / "train.jsonl", good_bad_rows(3))
    assert cli("ingest", src, "-w", tmp_path / "pref-ws", "-q").exit_code == 0
    r = cli("train", "sft", "--model", base, "-o", tmp_path / "x", "-w", tmp_path / "pref-ws")
    assert r.exit_code == 1
    assert "has no pairs with role 'sft'" in r.stderr and "--sft-fraction 0.5" in r.stderr


def test_load_sft_needs_a_workspace(tmp_path):
    from curate.train.data import load_sft

    with pytest.raises(CurateError, match="No curate workspace at"):
        load_sft(str(tmp_path / "none"))
