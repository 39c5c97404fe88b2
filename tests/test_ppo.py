"""curate/train/ppo.py (and ppo_algo.py) on a tiny Llama built here (hidden 32, one layer) with a word-level
tokenizer trained on the spot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curate.train.ppo import PPOConfig, load_prompts, main, train_ppo
from curate.train.ppo_algo import compute_gae, forward, ppo_loss, response_mask, whiten

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "good", "bad", "big", "small", "red", "blue", "one",
         "two", "three", "four", "five", "six"]
PROMPTS = ["the cat sat", "a dog ran on the mat", "one two", "red blue big", "the small dog", "five six four three"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=["<pad>", "<eos>",
                                                                                            "<unk>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>",
                                        unk_token="<unk>", padding_side="left")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None)
    folder = tmp_path_factory.mktemp("policy")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reward_dir(policy_dir, tmp_path_factory) -> Path:
    """A tiny untrained reward model: the same architecture with a one-label classification head."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(policy_dir, num_labels=1)
    folder = tmp_path_factory.mktemp("reward")
    LlamaForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(policy_dir).save_pretrained(folder)
    return folder


def count_good(prompts: list[str], responses: list[str]) -> torch.Tensor:
    """+1 per occurrence of the word `good` in the response."""
    return torch.tensor([float(r.split().count("good")) for r in responses])


def small_config(policy_dir: Path, output: Path, **kw) -> PPOConfig:
    base = {"policy": str(policy_dir), "output": str(output), "batch_size": 16, "mini_batch_size": 8,
            "max_new_tokens": 8, "steps": 2, "save_every": 2, "quiet": True, "seed": 0}
    return PPOConfig(**{**base, **kw})


def test_gae_matches_hand_computation():
    # gamma 1, lam 0.5; rewards (0, 0, 1, junk), values (0.5, 0.4, 0.3, junk), 4th token masked out.
    # deltas: d2 = 1 + 0 - 0.3 = 0.7 (episode ends: next value 0); d1 = 0 + 0.3 - 0.4 = -0.1; d0 = 0 + 0.4 - 0.5 = -0.1
    # A2 = 0.7; A1 = -0.1 + 0.5 * 0.7 = 0.25; A0 = -0.1 + 0.5 * 0.25 = 0.025; returns = A + V = 0.525, 0.65, 1.0
    rewards = torch.tensor([[0.0, 0.0, 1.0, 9.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 7.0]])
    mask = torch.tensor([[True, True, True, False]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.025, 0.25, 0.7, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.525, 0.65, 1.0, 0.0]]))
    # gamma 0.9, lam 1: A2 = 1 - 0.3 = 0.7; A1 = (0.9 * 0.3 - 0.4) + 0.9 * 0.7 = 0.5; A0 = (0.9 * 0.4 - 0.5) + 0.9 * 0.5 = 0.31
    adv, _ = compute_gae(rewards, values, mask, gamma=0.9, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.31, 0.5, 0.7, 0.0]]))


def test_response_mask_stops_after_first_eos():
    eos = 1
    responses = torch.tensor([[5, 6, 1, 0, 0], [5, 1, 1, 7, 0], [5, 6, 7, 8, 9], [1, 0, 0, 0, 0]])
    assert response_mask(responses, eos).tolist() == [
        [True, True, True, False, False],  # the EOS itself counts: it is the action that ends the episode
        [True, True, False, False, False],
        [True, True, True, True, True],  # never stopped
        [True, False, False, False, False],
    ]


def test_left_padding_and_post_eos_tokens_do_not_change_logprobs(policy_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    # row 0: 2 pad tokens on the left, response (4, 5, eos) and 2 tokens after EOS; row 1: the same alone, unpadded
    prompt, response = [7, 8, 9], [4, 5, 1, 6, 6]
    padded = torch.tensor([[0, 0, *prompt, *response]])
    alone = torch.tensor([[*prompt, *response]])
    resp_mask = response_mask(torch.tensor([response]), eos_token_id=1)
    padded_attn = torch.cat([torch.tensor([[False, False, True, True, True]]), resp_mask], 1)
    alone_attn = torch.cat([torch.ones(1, 3, dtype=torch.bool), resp_mask], 1)
    with torch.no_grad():
        lp_padded, _, _ = forward(model, padded, padded_attn, prompt_len=5)
        lp_alone, _, _ = forward(model, alone, alone_attn, prompt_len=3)
        # different tokens under the left padding and after EOS: the valid log-probs do not move
        junk = padded.clone()
        junk[0, :2] = torch.tensor([12, 13])
        junk[0, -2:] = torch.tensor([14, 15])
        lp_junk, _, _ = forward(model, junk, padded_attn, prompt_len=5)
    assert torch.allclose(lp_padded[resp_mask], lp_alone[resp_mask], atol=1e-5)
    assert torch.equal(lp_padded[resp_mask], lp_junk[resp_mask])


def test_masked_tokens_do_not_change_the_loss():
    torch.manual_seed(0)
    shape = (2, 5)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    logprobs, old, values, old_values, returns = (torch.randn(shape) for _ in range(5))
    advantages = whiten(torch.randn(shape), mask)
    logprobs.requires_grad_(True)
    pg, vf, _ = ppo_loss(logprobs, old, values, old_values, advantages, returns, mask, 0.2, 0.2)
    pg.backward()
    grad = logprobs.grad.clone()

    def garbage(x):
        return torch.where(mask, x, torch.full_like(x, 1e4))

    logprobs2 = garbage(logprobs.detach()).requires_grad_(True)
    pg2, vf2, _ = ppo_loss(logprobs2, torch.where(mask, old, -3e4), garbage(values), garbage(old_values),
                           garbage(advantages), garbage(returns), mask, 0.2, 0.2)
    pg2.backward()
    assert torch.equal(pg, pg2) and torch.equal(vf, vf2)
    assert torch.equal(logprobs2.grad, grad) and not grad[~mask].any()


def test_first_minibatch_has_zero_kl_and_clipfrac(policy_dir, tmp_path):
    result = train_ppo(small_config(policy_dir, tmp_path / "out", steps=1), prompts=PROMPTS, reward_fn=count_good)
    row = result.history[0]
    assert row["kl"] == 0.0  # actor == reference on the first rollout, dropout off
    assert row["clipfrac_first"] == 0.0
    assert row["ratio_max_dev_first"] < 1e-5  # the first minibatch sees the rollout policy
    for key in ("reward", "kl", "entropy", "clipfrac", "vf_loss", "pg_loss", "response_length"):
        assert key in row


def test_reward_rises_with_a_token_favouring_reward(policy_dir, tmp_path):
    config = small_config(policy_dir, tmp_path / "out", steps=30, save_every=100, actor_lr=3e-3, critic_lr=1e-2,
                          kl_coef=0.01, batch_size=32, mini_batch_size=16, ppo_epochs=2)
    history = train_ppo(config, prompts=PROMPTS, reward_fn=count_good).history
    first = sum(r["reward"] for r in history[:3]) / 3
    last = sum(r["reward"] for r in history[-3:]) / 3
    assert last > first + 0.5, [r["reward"] for r in history]
    assert all(torch.isfinite(torch.tensor(r["kl"])) for r in history)


def test_resume_continues_from_the_saved_step(policy_dir, tmp_path):
    out = tmp_path / "out"
    train_ppo(small_config(policy_dir, out, steps=2, save_every=2), prompts=PROMPTS, reward_fn=count_good)
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 2
    for name in ("model.safetensors", "tokenizer.json", "value_head.pt", "optimizer.pt", "curate_train.json"):
        assert (out / name).is_file(), name
    result = train_ppo(small_config(policy_dir, out, steps=4, save_every=2, resume=True), prompts=PROMPTS,
                       reward_fn=count_good)
    assert result.step == 4
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 4
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    record = json.loads((out / "curate_train.json").read_text())
    assert record["resumed_from_step"] == 2 and record["config"]["policy"] == str(policy_dir)

    # the same run without the interruption gives the same numbers: model, optimizer and RNG states all came back
    straight = train_ppo(small_config(policy_dir, tmp_path / "straight", steps=4, save_every=100), prompts=PROMPTS,
                         reward_fn=count_good).history
    assert [r["reward"] for r in straight] == [r["reward"] for r in result.history]


def test_a_finished_run_can_leave_its_optimizer_state_out(policy_dir, tmp_path):
    """--no-final-optimizer (what `curate run` uses): the last checkpoint drops optimizer.pt (twice the weights),
    an earlier one's included; a rerun of the finished run still resumes (nothing to train), extending it is refused."""
    from curate.errors import CurateError

    out = tmp_path / "out"
    config = small_config(policy_dir, out, steps=2, save_every=1, final_optimizer=False)
    first = train_ppo(config, prompts=PROMPTS, reward_fn=count_good)
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 2
    assert not (out / "optimizer.pt").exists() and (out / "model.safetensors").is_file()
    again = train_ppo(config, prompts=PROMPTS, reward_fn=count_good)  # an interrupted `curate run` step, rerun
    assert again.step == 2 and [r["reward"] for r in again.history] == [r["reward"] for r in first.history]
    with pytest.raises(CurateError, match="without its optimizer state"):
        train_ppo(small_config(policy_dir, out, steps=3, save_every=1), prompts=PROMPTS, reward_fn=count_good)


def test_cli_trains_from_a_prompts_file(policy_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    # no reward model folder here: the CLI must say so without a traceback
    rc = main(["--policy", str(policy_dir), "--output", str(tmp_path / "out"), "--prompts", str(prompts), "--quiet"])
    assert rc == 1
    assert "No reward: pass --reward DIR" in capsys.readouterr().err
    rc = main(["--policy", str(policy_dir), "--output", str(tmp_path / "new"), "--prompts", str(prompts), "--resume",
               "--quiet"])
    assert rc == 1
    assert "--resume: there is no checkpoint to resume from" in capsys.readouterr().err


def test_cli_with_a_reward_model(policy_dir, reward_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    out = tmp_path / "out"
    rc = main(["--policy", str(policy_dir), "--reward", str(reward_dir), "--output", str(out), "--prompts",
               str(prompts), "--steps", "1", "--batch-size", "4", "--mini-batch-size", "2", "--max-new-tokens", "4",
               "--quiet"])
    assert rc == 0
    row = json.loads(capsys.readouterr().out.strip())  # stdout: one JSON line per step
    assert row["step"] == 1 and row["kl"] == 0.0
    record = json.loads((out / "curate_train.json").read_text())
    assert record["reward"] == str(reward_dir)
    assert record["prompts"] == {"source": f"file:{prompts.resolve()}", "count": len(PROMPTS)}
    assert record["config"]["batch_size"] == 4 and record["versions"]["transformers"]


def test_prompts_from_a_workspace(filled_ws):
    prompts, source = load_prompts(workspace=str(filled_ws))
    assert sorted(prompts) == sorted(f"\n\nHuman: question {i}?\n\nAssistant:" for i in range(6))
    assert source.startswith("workspace:")
