"""Reward model training and evaluation (issue #6) on tiny models built here, on real workspaces on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from curate.errors import CurateError
from curate.filters import run_filter
from curate.workspace import Workspace

from .conftest import hh_row, query, write_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

N_PAIRS = 64


def tiny_lm(folder: Path, corpus: list[str], pad: bool = True) -> Path:
    """A one-layer Llama causal LM with a word-level tokenizer trained on `corpus` (eos </s>, pad <pad>)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "</s>"] + (["<pad>"] if pad else [])
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>",
                                   **({"pad_token": "<pad>"} if pad else {}))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def good_bad_rows(n: int, start: int = 0) -> list[dict]:
    """The learnable signal: the chosen answer ends with 'good', the rejected one with 'bad'."""
    return [hh_row(f"question {i} about topic {i % 7}?", f"answer {i % 5} is good", f"answer {i % 5} is bad")
            for i in range(start, start + n)]


CORPUS = ["Human: Assistant: question about topic answer is good bad ? " + " ".join(map(str, range(200)))]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_lm(tmp_path_factory.mktemp("base") / "lm", CORPUS)


@pytest.fixture(scope="module")
def rm_ws(tmp_path_factory) -> Workspace:
    """64 training pairs (split train) in subset 'gb', 16 held-out pairs (split test), and an empty subset."""
    from curate.ingest import ingest

    tmp = tmp_path_factory.mktemp("rmws")
    train = write_jsonl(tmp / "data" / "harmless-base" / "train.jsonl", good_bad_rows(N_PAIRS))
    test = write_jsonl(tmp / "data" / "harmless-base" / "test.jsonl", good_bad_rows(16, start=1000))
    ws = Workspace(tmp / "ws")
    ingest(ws, [str(train), str(test)])
    ids = [r[0] for r in query(ws.root, "select pair_id from pairs where split = 'train' order by pair_id")]
    sims = pl.DataFrame({"branch": "main", "iteration": 1, "pair_id": ids, "model_id": "m-1", "pos_sim": 0.9,
                         "neg_sim": 0.5, "pos_sim_max": 0.9, "neg_sim_max": 0.5, "n_samples": 1})
    with ws.transaction() as tx:
        tx.add("similarities", sims, key="main-it1-m-1")
    run_filter(ws, "positive", eps=0.2, size=1000, iteration=1, name="gb")
    run_filter(ws, "positive", eps=0.01, size=1000, iteration=1, name="empty")  # floor 0.99: nothing passes
    return ws


def rm_config(base, out, **kw):
    from curate.train.rm import RMConfig

    defaults = {"base": str(base), "output": str(out), "lr": 3e-3, "epochs": 4, "batch_size": 8,
                "max_length": 64, "quiet": True}
    return RMConfig(**(defaults | kw))


# -- training --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(base, rm_ws, tmp_path_factory):
    from curate.train.rm import train_rm

    return train_rm(rm_config(base, tmp_path_factory.mktemp("rm") / "rm", subset="gb",
                              workspace=str(rm_ws.root)))


def test_reward_model_learns_the_signal(trained, rm_ws):
    from curate.train.data import load_preferences
    from curate.train.evaluate import score_pairs

    assert (trained.rows, trained.trained_rows, trained.dropped_long) == (N_PAIRS, N_PAIRS, 0)
    rows = load_preferences(str(rm_ws.root), subset="gb").dataset
    rc, rr = score_pairs(trained.output, rows)
    acc = sum(c > r for c, r in zip(rc, rr)) / len(rc)
    assert acc >= 0.8, acc
    assert trained.metrics["accuracy"] >= 0.8  # RewardTrainer's own metric, still logged by the override


def test_record_beside_the_checkpoint(trained, rm_ws):
    from curate.fingerprint import sha256_file

    rec = json.loads((trained.output / "curate_train.json").read_text())
    (sid,) = query(rm_ws.root, "select subset_id from subsets where name = 'gb'")[0]
    assert rec["subset"] == "gb" and rec["subset_id"] == sid
    assert rec["manifest_sha256"] == sha256_file(rm_ws.manifests_dir / f"filter-{sid}.json")
    assert rec["config"]["lr"] == 3e-3 and rec["counts"]["dropped_long"] == 0
    assert rec["base_model"].endswith("lm") and {"torch", "transformers", "trl"} <= set(rec["versions"])
    assert (trained.output / "config.json").is_file()


def test_default_learning_rate_is_the_papers():
    from curate.train.rm import RMConfig

    assert RMConfig(base="b", output="o").lr == 9e-6


# -- the loss override -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trainer(base, tmp_path_factory):
    import datasets
    from trl import RewardConfig

    from curate.train.reward import load_reward_model
    from curate.train.rm import tokenize_rows
    from curate.train.rm_trainer import make_trainer

    model, tok, _ = load_reward_model(base)
    rows = datasets.Dataset.from_list([{"prompt": "question 1 ?", "chosen": " good", "rejected": " bad"}])
    ds, _ = tokenize_rows(rows, tok, 64)
    args = RewardConfig(output_dir=str(tmp_path_factory.mktemp("loss")), report_to="none", bf16=False,
                        activation_checkpointing=False, use_cpu=True)
    return make_trainer(model, tok, ds, args)


def stub_model(logits):
    """A model whose rewards we choose: chosen rows first, then rejected (DataCollatorForPreference's order)."""
    return lambda **inputs: SimpleNamespace(logits=torch.tensor(logits).unsqueeze(-1))


def closed_form(rc, rr, margin, a):
    d = torch.tensor(rc) - torch.tensor(rr) - torch.tensor(margin)
    return (-(1 - a) * torch.log(torch.sigmoid(d)) - a * torch.log(torch.sigmoid(-d))).mean()


@pytest.mark.parametrize("margin, a", [([0.5, 0.0, 2.0], 0.0), ([0.0, 0.0, 0.0], 0.1), ([1.0, -0.5, 0.25], 0.2)],
                         ids=["margin", "label-smoothing", "both"])
def test_loss_is_the_formula(trainer, margin, a):
    rc, rr = [1.5, -0.25, 0.75], [0.5, 0.5, -1.0]
    trainer.terms.label_smoothing = a
    inputs = {"input_ids": torch.zeros(6, 3, dtype=torch.long), "attention_mask": torch.ones(6, 3, dtype=torch.long),
              "margin": torch.tensor(margin)}
    loss = trainer.compute_loss(stub_model(rc + rr), inputs)
    torch.testing.assert_close(loss, closed_form(rc, rr, margin, a))
    mode = "train" if trainer.model.training else "eval"
    assert trainer._metrics[mode]["accuracy"][-1] == pytest.approx(2 / 3)
    assert trainer._metrics[mode]["margin"][-1] == pytest.approx((1.0 - 0.75 + 1.75) / 3)


def test_loss_without_margin_column_is_plain_bradley_terry(trainer):
    trainer.terms.label_smoothing = 0.0
    inputs = {"input_ids": torch.zeros(4, 2, dtype=torch.long), "attention_mask": torch.ones(4, 2, dtype=torch.long)}
    loss = trainer.compute_loss(stub_model([2.0, 0.0, 1.0, 1.0]), inputs)
    torch.testing.assert_close(loss, closed_form([2.0, 0.0], [1.0, 1.0], [0.0, 0.0], 0.0))


# -- long rows, pad token, bad input -----------------------------------------------------------------
@pytest.fixture
def long_data(tmp_path) -> Path:
    """10 rows: 7 short (about 12 tokens), 3 whose prompt alone is 100 tokens."""
    rows = [{"prompt": f"question {i} ?", "chosen": " answer is good", "rejected": " answer is bad"} for i in range(7)]
    rows += [{"prompt": " ".join(["topic"] * 100), "chosen": " good", "rejected": " bad"} for _ in range(3)]
    return write_jsonl(tmp_path / "long.jsonl", rows)


def test_rows_longer_than_max_length_are_counted(base, long_data, tmp_path):
    from curate.train.rm import train_rm

    r = train_rm(rm_config(base, tmp_path / "drop", data=str(long_data), epochs=1, max_length=40))
    assert (r.rows, r.trained_rows, r.dropped_long, r.truncated) == (10, 7, 3, 0)
    assert any("3 of 10 rows are longer than max_length 40" in m for m in r.messages)
    rec = json.loads((tmp_path / "drop" / "curate_train.json").read_text())
    assert rec["counts"]["dropped_long"] == 3 and rec["counts"]["trained_rows"] == 7
    assert rec["data"]["kind"] == "data" and len(rec["data"]["sha256"]) == 64

    r = train_rm(rm_config(base, tmp_path / "trunc", data=str(long_data), epochs=1, max_length=40,
                           long_rows="truncate"))
    assert (r.trained_rows, r.dropped_long, r.truncated) == (10, 0, 3)


def test_base_without_pad_token_gets_eos_and_says_so(tmp_path, rm_ws):
    from transformers import AutoConfig

    from curate.train.rm import train_rm

    nopad = tiny_lm(tmp_path / "nopad", CORPUS, pad=False)
    r = train_rm(rm_config(nopad, tmp_path / "out", subset="gb", workspace=str(rm_ws.root), epochs=1))
    assert r.pad_token_set
    assert any("has no pad token: using its eos token '</s>' as pad" in m for m in r.messages)
    rec = json.loads((tmp_path / "out" / "curate_train.json").read_text())
    assert rec["pad_token"]["set_to_eos"] is True and rec["pad_token"]["token"] == "</s>"
    assert AutoConfig.from_pretrained(tmp_path / "out").pad_token_id == rec["pad_token"]["id"]


def test_base_without_a_tokenizer_is_a_clear_error(cli, base, rm_ws, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(base, bare)
    for f in bare.glob("*token*"):
        f.unlink()
    r = cli("train", "rm", "--base", bare, "--subset", "gb", "-w", rm_ws.root, "-o", tmp_path / "o", "-q")
    assert r.exit_code == 1 and f"{bare} has no usable tokenizer" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_empty_subset_is_a_clear_error(cli, base, rm_ws, tmp_path):
    r = cli("train", "rm", "--base", base, "--subset", "empty", "-w", rm_ws.root, "-o", tmp_path / "o", "-q")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: Subset 'empty' (subset_id ")
    assert "has 0 rows: there is nothing to train on" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_subset_and_folder_without_columns(base, rm_ws, tmp_path):
    from curate.train.data import load_preferences

    with pytest.raises(CurateError, match="No subset named 'nosuch'. Known subsets: empty, gb."):
        load_preferences(str(rm_ws.root), subset="nosuch")
    folder = tmp_path / "export"
    write_jsonl(folder / "data" / "train.jsonl", [{"prompt": "a", "response": "b"}])
    with pytest.raises(CurateError, match=r"has no column\(s\) chosen, rejected \(it has prompt, response\)"):
        load_preferences(data=str(folder))


def test_exported_folder_trains_and_is_recorded(base, rm_ws, tmp_path):
    from curate.export import export_subset
    from curate.train.rm import train_rm

    folder = export_subset(rm_ws, "gb", to=tmp_path / "gb").path
    r = train_rm(rm_config(base, tmp_path / "rm", data=str(folder), epochs=1))
    assert r.trained_rows == N_PAIRS
    assert r.record["subset"] == "gb" and r.record["data"]["provenance_sha256"]


# -- the command line --------------------------------------------------------------------------------
def test_cli_train_and_eval(cli, trained, rm_ws, base, tmp_path):
    r = cli("train", "rm", "--base", base, "--subset", "gb", "-w", rm_ws.root, "-o", tmp_path / "rm",
            "--epochs", "1", "--max-length", "64", "--label-smoothing", "0.1")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"{tmp_path / 'rm'}\n"
    assert "trained on 64 of 64 rows (0 dropped as too long, 0 truncated)" in r.stderr
    assert json.loads((tmp_path / "rm" / "curate_train.json").read_text())["config"]["label_smoothing"] == 0.1
    # off a terminal: no tqdm bars and no printed metric dictionaries among curate's lines (issue 13)
    assert "it/s]" not in r.stderr and "{'loss'" not in r.stderr and "'train_runtime'" not in r.stderr

    r = cli("eval", "rm", "--reward", trained.output, "-w", rm_ws.root)
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.stdout and "mean margin" in r.stdout and "split = 'test'" in r.stdout
    r = cli("eval", "rm", "--reward", trained.output, "-w", rm_ws.root, "--json")
    res = json.loads(r.stdout)
    assert res["pairs"] == 16 and res["accuracy"] >= 0.8 and res["mean_margin"] > 0
    r = cli("eval", "rm", "--reward", trained.output, "-w", rm_ws.root, "--json", "--where", "split = 'train'")
    assert json.loads(r.stdout)["pairs"] == N_PAIRS
    r = cli("eval", "rm", "--reward", trained.output, "-w", rm_ws.root, "--where", "split = 'nope'")
    assert r.exit_code == 1 and "No pairs match \"split = 'nope'\"" in r.stderr


def test_cli_train_ppo_runs_a_step_against_the_reward_model(cli, trained, base, tmp_path):
    pytest.importorskip("curate.train.ppo")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"question {i} about topic 1 ?"} for i in range(2)])
    r = cli("train", "ppo", "--policy", base, "--reward", trained.output, "-o", tmp_path / "ppo", "--prompts", prompts,
            "--steps", "1", "--batch-size", "2", "--mini-batch-size", "1", "--max-new-tokens", "3", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["step"] == 1


# -- the output folder -------------------------------------------------------------------------------
def test_existing_output_is_refused_without_force_and_replaced_with_it(cli, base, rm_ws, tmp_path):
    out = tmp_path / "rm"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier model")
    args = ("train", "rm", "--base", base, "--subset", "gb", "-w", rm_ws.root, "-o", out, "--epochs", "1",
            "--max-length", "64", "-q")
    r = cli(*args)
    assert r.exit_code == 1 and "already exists and is not empty" in r.stderr and "--force" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # untouched

    r = cli(*args, "--force")
    assert r.exit_code == 0, r.output
    names = {p.name for p in out.iterdir()}
    assert "keep.txt" not in names and {"config.json", "model.safetensors", "curate_train.json"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rm.")]  # no staging folder left behind


def test_a_failed_run_leaves_the_old_checkpoint_and_no_staging_folder(base, rm_ws, tmp_path, monkeypatch):
    import curate.train.rm as rm_mod

    out = tmp_path / "rm"
    first = rm_mod.train_rm(rm_config(base, out, subset="gb", workspace=str(rm_ws.root), epochs=1))
    before = (out / "curate_train.json").read_text()

    def boom(*a, **k):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-training

    monkeypatch.setattr(rm_mod, "_fit", boom)
    with pytest.raises(KeyboardInterrupt):
        rm_mod.train_rm(rm_config(base, out, subset="gb", workspace=str(rm_ws.root), overwrite=True))
    assert (out / "curate_train.json").read_text() == before and first.output == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]


def test_activation_checkpointing_is_on_by_default_and_recorded(trained):
    assert trained.record["config"]["activation_checkpointing"] is True


# -- eval rm: intervals, length, the policy's distribution, RewardBench files ----------------------------
def test_accuracy_counts_ties_as_half_and_splits_by_length():
    from curate.stats import bootstrap_interval, wilson
    from curate.train.evaluate import accuracy_stats

    # pair 0 right, pair 1 a tie, pairs 2-3 wrong; chosen longer in pairs 0 and 2
    s = accuracy_stats([2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 2.0, 1.0], [10, 5, 9, 3], [4, 5, 2, 8], n_boot=500, seed=3)
    assert (s["pairs"], s["accuracy"], s["ties"]) == (4, 0.375, 1)
    assert (s["wilson_low"], s["wilson_high"]) == wilson(1.5, 4)
    assert (s["ci_low"], s["ci_high"]) == bootstrap_interval(__import__("numpy").array([1, 0.5, 0, 0.0]), 500, 3)
    assert s["mean_margin"] == (1 + 0 - 1 - 1) / 4
    bl = s["by_length"]
    assert (bl["chosen_longer"]["pairs"], bl["chosen_longer"]["accuracy"]) == (2, 0.5)
    assert (bl["rejected_longer"]["pairs"], bl["rejected_longer"]["accuracy"]) == (1, 0.0)
    assert (bl["same_length"]["pairs"], bl["same_length"]["accuracy"]) == (1, 0.5)


def test_eval_rm_on_the_policys_pairs_and_a_rewardbench_file(cli, trained, rm_ws, tmp_path):
    from curate.filters import run_filter

    # the held-out pairs "the filter selects for the policy": 8 of the 16 scored on an eval branch
    ids = [r[0] for r in query(rm_ws.root, "select pair_id from pairs where split = 'test' order by pair_id")][:8]
    sims = pl.DataFrame({"branch": "heldout", "iteration": 1, "pair_id": ids, "model_id": "m-1", "pos_sim": 0.9,
                         "neg_sim": 0.5, "pos_sim_max": 0.9, "neg_sim_max": 0.5, "n_samples": 1})
    with rm_ws.transaction() as tx:
        tx.add("similarities", sims, key="heldout-it1-m-1")
    run_filter(rm_ws, "all", iteration=1, branch="heldout", name="heldout-all")
    bench = tmp_path / "rewardbench.jsonl"
    rows = [{"prompt": f"question {i} about topic {i % 7}?", "chosen": f"answer {i % 5} is good",
             "rejected": f"answer {i % 5} is bad", "subset": "easy" if i % 2 else "hard"} for i in range(12)]
    write_jsonl(bench, rows)
    r = cli("eval", "rm", "--reward", trained.output, "-w", rm_ws.root, "--filtered", "heldout-all",
            "--rewardbench", bench, "--split", "test", "--bootstrap", "200", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    names = [d["distribution"] for d in res["distributions"]]
    assert names == ["held-out: split = 'test'", "selected for the policy (heldout-all)", "rewardbench easy",
                     "rewardbench hard"]
    pairs = [d["pairs"] for d in res["distributions"]]
    assert pairs == [16, 8, 6, 6]
    for d in res["distributions"]:
        assert d["accuracy"] >= 0.8 and d["ci_low"] <= d["accuracy"] <= d["ci_high"], d["distribution"]
    r = cli("eval", "rm", "--reward", trained.output, "-w", rm_ws.root, "--rewardbench", bench)
    assert r.exit_code == 0 and "rewardbench easy" in r.stdout and "95% bootstrap" in r.stdout
    write_jsonl(bad := tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    r = cli("eval", "rm", "--reward", trained.output, "-w", rm_ws.root, "--rewardbench", bad)
    assert r.exit_code == 1 and "lacks column(s) subset" in r.stderr


# -- preference strength: flipped rows, the margin, per-row smoothing (issue 16) --------------------------------------
N_STRENGTH = 16


@pytest.fixture(scope="module")
def strength_ws(tmp_path_factory) -> Workspace:
    """16 good/bad pref pairs; in pair_id order pair i has mean strength i - 3.5 (pairs 0-3 incorrect) and percentile
    i / 15. The subset `flip` (--bottom 0.1) flips pairs 0 and 1, whose means in the flipped orientation are 3.5 and
    2.5; pairs 2 and 3 (-1.5, -0.5) stay incorrect."""
    from datetime import datetime

    from curate.ingest import ingest

    tmp = tmp_path_factory.mktemp("strengthws")
    src = write_jsonl(tmp / "data" / "harmless-base" / "train.jsonl", good_bad_rows(N_STRENGTH))
    ws = Workspace(tmp / "ws")
    ingest(ws, [str(src)])
    ids = [r[0] for r in query(ws.root, "select pair_id from pairs order by pair_id")]
    means = [i - 3.5 for i in range(N_STRENGTH)]
    rows = pl.DataFrame({"pair_id": ids, "method": "probe", "identity": "probe-test", "n_models": 4, "folds": 5,
                         "mean": means, "std": 0.5, "percentile": [i / 15 for i in range(N_STRENGTH)],
                         "category": ["incorrect" if m < 0 else "strong" for m in means],
                         "created_at": datetime(2025, 1, 1), "features": "test"})
    with ws.transaction() as tx:
        tx.add("strength", rows)
    run_filter(ws, "flip", bottom=0.1)
    ws.ids = ids
    return ws


def oriented(i: int) -> float:
    return -(i - 3.5) if i < 2 else i - 3.5


def test_strength_columns_follow_the_flipped_orientation(strength_ws):
    from curate.train.data import load_preferences, with_strength

    rows = load_preferences(str(strength_ws.root), subset="flip")
    ds, record = with_strength(rows, str(strength_ws.root), None, margin_scale=0.5, smooth_incorrect=0.1)
    by_id = {r["pair_id"]: r for r in ds}
    for i, pid in enumerate(strength_ws.ids):
        r = by_id[pid]
        assert r["flipped"] is (i < 2)
        assert r["chosen"].endswith("bad" if i < 2 else "good")  # flipped rows arrive swapped
        assert r["margin"] == max(oriented(i), 0) * 0.5
        assert r["smoothing"] == (0.1 if i in (2, 3) else 0.0)
    assert record["identity"] == "probe-test" and record["smooth_incorrect"] == {"alpha": 0.1, "rows": 2}


def test_per_row_smoothing_is_the_formula(trainer):
    rc, rr, margin, a = [1.5, -0.25, 0.75], [0.5, 0.5, -1.0], [0.5, 0.0, 1.0], [0.1, 0.0, 0.2]
    trainer.terms.label_smoothing = 0.0
    inputs = {"input_ids": torch.zeros(6, 3, dtype=torch.long), "attention_mask": torch.ones(6, 3, dtype=torch.long),
              "margin": torch.tensor(margin), "smoothing": torch.tensor(a)}
    loss = trainer.compute_loss(stub_model(rc + rr), inputs)
    d = [c - r - m for c, r, m in zip(rc, rr, margin)]  # 0.5, -0.75, 0.75
    by_hand = sum(-(1 - ai) * math.log(1 / (1 + math.exp(-di))) - ai * math.log(1 / (1 + math.exp(di)))
                  for ai, di in zip(a, d)) / 3
    assert loss.item() == pytest.approx(by_hand, abs=1e-6)
    assert "smoothing" not in inputs  # taken out before the model sees the batch


def test_smoothing_and_margin_reach_the_loss_through_the_collator(base, strength_ws, tmp_path):
    """The real path: tokenize_rows -> the Trainer's dataloader (column pruning, collator) -> compute_loss."""
    from trl import RewardConfig

    from curate.train.data import load_preferences, with_strength
    from curate.train.reward import load_reward_model
    from curate.train.rm import tokenize_rows
    from curate.train.rm_trainer import make_trainer

    rows = load_preferences(str(strength_ws.root), subset="flip")
    rows.dataset, _ = with_strength(rows, str(strength_ws.root), None, margin_scale=0.5, smooth_incorrect=0.1)
    model, tok, _ = load_reward_model(base)
    ds, _ = tokenize_rows(rows.dataset, tok, 64)
    assert ds.column_names == ["chosen_ids", "rejected_ids", "margin", "smoothing"]
    args = RewardConfig(output_dir=str(tmp_path), report_to="none", bf16=False, use_cpu=True, max_length=64,
                        activation_checkpointing=False,
                        per_device_train_batch_size=N_STRENGTH, train_sampling_strategy="sequential")
    trainer = make_trainer(model, tok, ds, args)
    batch = next(iter(trainer.get_train_dataloader()))
    order = [strength_ws.ids.index(p) for p in rows.dataset["pair_id"]]  # the subset's rank order
    assert batch["smoothing"].tolist() == pytest.approx([0.1 if i in (2, 3) else 0.0 for i in order])
    assert batch["margin"].tolist() == pytest.approx([max(oriented(i), 0) * 0.5 for i in order])
    with torch.no_grad():
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
        rc, rr = rewards.chunk(2)
        d = rc - rr - batch["margin"]
        a = batch["smoothing"]
        by_hand = (-(1 - a) * torch.nn.functional.logsigmoid(d) - a * torch.nn.functional.logsigmoid(-d)).mean()
        loss = trainer.compute_loss(model, dict(batch))
    torch.testing.assert_close(loss, by_hand)


def test_train_on_flipped_labels_with_margin_and_smoothing(cli, base, strength_ws, tmp_path):
    r = cli("train", "rm", "--base", base, "--subset", "flip", "-w", strength_ws.root, "-o", tmp_path / "rm",
            "--epochs", "1", "--max-length", "64", "--margin", "strength", "--margin-scale", "0.5",
            "--smooth-incorrect", "0.1")
    assert r.exit_code == 0, r.output
    assert "label smoothing 0.1 on the 2 incorrect rows (mean strength < 0) of 16" in r.stderr
    rec = json.loads((tmp_path / "rm" / "curate_train.json").read_text())
    assert rec["strength"]["identity"] == "probe-test" and rec["strength"]["margin"]["scale"] == 0.5
    assert rec["config"]["margin"] == "strength" and rec["counts"]["margin_column"] is True
    assert rec["counts"]["trained_rows"] == N_STRENGTH


def test_strength_options_bad_input(base, rm_ws, strength_ws, tmp_path):
    from curate.train.rm import train_rm

    ws = str(strength_ws.root)
    for kw, message in [
        ({"smooth_incorrect": 0.5}, r"--smooth-incorrect must be in \[0, 0.5\)"),
        ({"smooth_incorrect": 0.1, "label_smoothing": 0.1}, "give one of them"),
        ({"strength": "probe"}, "--strength picks the strength rows of --margin strength and --smooth-incorrect"),
        ({"margin": "strength", "strength": "zz"}, "--strength 'zz' is not an identity"),
        ({"margin": "strength", "margin_scale": -1.0}, "--margin-scale must be above 0"),
        ({"margin_scale": 2.0}, "--margin-scale applies to --margin strength"),
    ]:
        with pytest.raises(CurateError, match=message):
            train_rm(rm_config(base, tmp_path / "o", subset="flip", workspace=ws, **kw))
    with pytest.raises(CurateError, match="run `curate strength` first"):
        train_rm(rm_config(base, tmp_path / "o", subset="gb", workspace=str(rm_ws.root), margin="strength"))
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q ?", "chosen": " good", "rejected": " bad"}])
    with pytest.raises(CurateError, match="this data has no pair_id column"):
        train_rm(rm_config(base, tmp_path / "o", data=str(data), workspace=ws, smooth_incorrect=0.1))
    assert not (tmp_path / "o").exists()
