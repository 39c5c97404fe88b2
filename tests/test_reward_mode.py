"""The reward mode (issue #17): an AVA reward model's per-token Gaussian rewards read as `final` (the mean at the
last token) or `dense` (the mean at every response token), everywhere a reward model is read: loading, scoring,
`curate eval rm`, the rm: judge, PPO and `curate run`'s config. Tiny Llamas built here (conftest.tiny_lm)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.errors import CurateError

from .conftest import transcript, write_jsonl

torch = pytest.importorskip("torch")

AVA_META = {"objective": "ava", "outputs": ["mean", "log_scale"]}
PROMPTS = [transcript("how do I bake bread?") + "\n\nAssistant:", transcript("thanks") + "\n\nAssistant:",
           transcript("how do I bake bread number 7? thanks") + "\n\nAssistant:"]
RESPONSES = [" Mix flour, water and yeast, then bake it.", " You're welcome.", " bake"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


def reward_model(policy: Path, folder: Path, ava: bool, seed: int = 0) -> Path:
    """A sequence classifier on the policy's architecture and tokenizer: AVA (2 outputs and curate_reward) or BT."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(policy, num_labels=2 if ava else 1)
    if ava:
        config.curate_reward = AVA_META
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(policy).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from .conftest import tiny_lm

    root = tmp_path_factory.mktemp("reward-mode")
    policy = tiny_lm(root / "policy", seed=1, window=256)[0]
    return {"policy": policy, "ava": reward_model(policy, root / "ava", ava=True, seed=2),
            "bt": reward_model(policy, root / "bt", ava=False, seed=3)}


def hand_mu(model, ids: list[int]) -> torch.Tensor:
    """mu_t of one unpadded row, computed from the backbone and the score head directly."""
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state
        return model.score(hidden)[0, :, 0]


# -- loading -------------------------------------------------------------------------------------------
def test_an_ava_model_needs_a_mode_and_a_bt_model_has_no_dense(models):
    from curate.train.reward import load_reward_model

    with pytest.raises(CurateError) as e:
        load_reward_model(models["ava"], kind="reward")
    assert "is an AVA reward model" in str(e.value) and str(models["ava"]) in str(e.value)
    assert "--reward-mode final" in str(e.value) and "--reward-mode dense" in str(e.value)
    with pytest.raises(CurateError, match=r"--reward-mode dense needs per-token rewards, and .* is a Bradley-Terry"):
        load_reward_model(models["bt"], kind="reward", mode="dense")
    with pytest.raises(CurateError, match=r"\[ppo\] reward_mode final"):  # the caller names its own setting
        load_reward_model(models["ava"], kind="reward", option="[ppo] reward_mode")
    model, _, _ = load_reward_model(models["ava"], kind="reward", mode="final")
    assert model.score.out_features == 2
    model, _, _ = load_reward_model(models["bt"], kind="reward")  # as before: one label, no mode needed
    assert model.score.out_features == 1


def test_an_ava_checkpoint_as_the_base_of_a_bt_model_gets_a_fresh_head(models, tmp_path):
    from transformers import AutoConfig

    from curate.train.reward import load_reward_model, replaced_head, reward_objective

    model, _, _ = load_reward_model(models["ava"], kind="rm-base")
    assert model.score.out_features == 1 and replaced_head(model) == "ava"
    assert reward_objective(model.config) == "bt"  # the new model does not claim to be AVA
    model.save_pretrained(tmp_path / "bt")
    assert "curate_reward" not in json.loads((tmp_path / "bt" / "config.json").read_text())
    assert reward_objective(AutoConfig.from_pretrained(models["ava"])) == "ava"
    for base in (models["bt"], models["policy"]):  # a BT model or a causal LM: as before, nothing replaced
        assert replaced_head(load_reward_model(base, kind="rm-base")[0]) is None


# -- scoring -------------------------------------------------------------------------------------------
def test_final_is_the_classifier_logit_and_dense_the_sum_of_mu_over_the_response(models):
    from curate.train.reward import load_reward_model, response_span, score, token_ids

    model, tok, _ = load_reward_model(models["ava"], kind="reward", mode="dense")
    final = score(model, tok, PROMPTS, RESPONSES, batch_size=8, mode="final")
    dense = score(model, tok, PROMPTS, RESPONSES, batch_size=8, mode="dense")
    alone = score(model, tok, PROMPTS, RESPONSES, batch_size=1, mode="dense")  # the batch does not matter
    assert torch.allclose(dense, alone, atol=1e-5)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        ids = token_ids(tok, p, r, None)
        with torch.no_grad():
            logit = model(input_ids=torch.tensor([ids])).logits[0, 0]
        assert torch.allclose(final[i], logit, atol=1e-5)
        start = len(tok(p)["input_ids"])  # the prompt ends at "Assistant:": its tokens are a prefix of the row
        assert ids[:start] == tok(p)["input_ids"] and ids[-1] == tok.eos_token_id
        mu = hand_mu(model, ids)
        assert torch.allclose(dense[i], mu[start:].sum(), atol=1e-4)
        assert torch.allclose(mu[-1], logit, atol=1e-5)  # final is mu at the last token (the eos)
        assert response_span(tok, p, r, None) == (ids, start)
    with pytest.raises(CurateError, match="is an AVA reward model"):
        score(model, tok, PROMPTS, RESPONSES)  # no mode: no silent default


def test_the_response_span_under_truncation_and_merged_tokens(models):
    from transformers import AutoTokenizer

    from curate.train.reward import response_span, token_ids

    tok = AutoTokenizer.from_pretrained(models["ava"])
    p, r = PROMPTS[0], RESPONSES[0]
    ids, start = response_span(tok, p, r, None)
    cut, cut_start = response_span(tok, p, r, 12)
    assert cut == token_ids(tok, p, r, 12) == ids[-12:] and cut_start == max(start - (len(ids) - 12), 0)
    short, short_start = response_span(tok, p, r, 3)  # the response alone is longer: it starts at 0
    assert len(short) == 3 and short_start == 0
    _, empty_start = response_span(tok, p, "", None)  # an empty response still has its eos
    assert empty_start == len(tok(p + tok.eos_token)["input_ids"]) - 1


# -- curate eval rm and the rm: judge ---------------------------------------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    rows = [{"prompt": "how do I bake bread?", "chosen": RESPONSES[0], "rejected": "no", "subset": "s"},
            {"prompt": "thanks", "chosen": RESPONSES[1], "rejected": "bake", "subset": "s"}]
    return write_jsonl(tmp_path_factory.mktemp("bench") / "bench.jsonl", rows)


def test_eval_rm_records_the_mode_and_explains_a_missing_one(models, bench, cli):
    from curate.train.evaluate import evaluate_rm

    with pytest.raises(CurateError, match="is an AVA reward model"):
        evaluate_rm(models["ava"], rewardbench=bench, n_boot=0)
    r = cli("eval", "rm", "--reward", models["ava"], "--rewardbench", bench, "--bootstrap", "0")
    assert r.exit_code == 1 and "is an AVA reward model" in r.output and "--reward-mode dense" in r.output
    r = cli("eval", "rm", "--reward", models["bt"], "--rewardbench", bench, "--reward-mode", "dense")
    assert r.exit_code == 1 and "is a Bradley-Terry reward model" in r.output
    res = {}
    for mode in ("final", "dense"):
        r = cli("eval", "rm", "--reward", models["ava"], "--rewardbench", bench, "--reward-mode", mode,
                "--bootstrap", "0", "--json")
        assert r.exit_code == 0, r.output
        res[mode] = json.loads(r.output)
        assert res[mode]["reward_mode"] == mode and res[mode]["pairs"] == 2
    assert res["final"]["mean_margin"] != res["dense"]["mean_margin"]
    assert evaluate_rm(models["bt"], rewardbench=bench, n_boot=0)["reward_mode"] == "final"


def test_the_rm_judge_mode_is_part_of_its_identity(models):
    from curate.judge.base import Request
    from curate.judge.template import load_template
    from curate.judge.winrate import make_judge

    tpl = load_template()
    with pytest.raises(CurateError, match="is an AVA reward model"):
        make_judge(f"rm:{models['ava']}", tpl)
    with pytest.raises(CurateError, match="--reward-mode is for rm: judges"):
        make_judge("hf:smollm2-135m", tpl, reward_mode="final")
    final = make_judge(f"rm:{models['ava']}", tpl, reward_mode="final")
    dense = make_judge(f"rm:{models['ava']}", tpl, reward_mode="dense")
    assert final.judge_id != dense.judge_id and dense.identity["reward_mode"] == "dense"
    # a Bradley-Terry judge keeps the id it had (its stored verdicts stay valid); final is what it always gave
    bt = make_judge(f"rm:{models['bt']}", tpl)
    assert make_judge(f"rm:{models['bt']}", tpl, reward_mode="final").judge_id == bt.judge_id
    assert "reward_mode" not in bt.identity
    answers = []
    dense.judge([Request("", PROMPTS[0], RESPONSES[0].strip(), "no")], lambda i, a: answers.append(a))
    assert answers[0].verdict in ("A", "B", "tie") and "reward_a" in answers[0].raw


# -- PPO -------------------------------------------------------------------------------------------
def test_reward_model_rows_are_prompt_response_eos_padded_right():
    from curate.train.ppo_algo import reward_model_rows

    pad, eos = 0, 1
    # row 0: 2 left pads, prompt 7 8 9, response 4 5 eos then junk after it; row 1: prompt 6 7 8 9 5, response
    # 4 5 4 cut at max_new_tokens (no eos: one is appended); row 2: an immediate eos
    seqs = torch.tensor([[0, 0, 7, 8, 9, 4, 5, 1, 3], [6, 7, 8, 9, 5, 4, 5, 4, 4], [0, 0, 0, 7, 8, 1, 0, 0, 0]])
    attn = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]).bool()
    ids, rm_mask, first, added = reward_model_rows(seqs, attn, 5, mask, eos, pad)
    assert ids.tolist() == [[7, 8, 9, 4, 5, 1, 0, 0, 0, 0], [6, 7, 8, 9, 5, 4, 5, 4, 4, 1],
                            [7, 8, 1, 0, 0, 0, 0, 0, 0, 0]]
    assert rm_mask.sum(1).tolist() == [6, 10, 3] and first == [3, 5, 2] and added == [False, True, False]


def test_dense_rewards_reach_the_advantages_as_the_rms_mu(models):
    """A real rollout of the tiny policy against the AVA model: the per-token rewards are -beta * KL + mu_t of each
    sampled token, mu_t computed here by hand on prompt + response (+ eos where cut), and with gamma 1, lambda 0
    and zero values GAE's advantages are exactly those rewards."""
    from curate.models import resolve_model, resolve_policy
    from curate.policy import load_policy
    from curate.train.ppo import PPOConfig, token_reward_model_fn
    from curate.train.ppo_algo import ValueHead, compute_gae, rollout
    from curate.train.reward import load_reward_model

    policy = load_policy(resolve_policy(str(models["policy"])), device="cpu", dtype="float32")
    tok = policy.tokenizer
    config = PPOConfig(max_new_tokens=6, mini_batch_size=2, max_prompt_length=64)
    fn = token_reward_model_fn(resolve_model(str(models["ava"]), kind="reward"), "cpu", 2, tok, PROMPTS)
    torch.manual_seed(0)
    roll = rollout(policy.model, policy.model, ValueHead(policy.model.config.hidden_size), tok, PROMPTS, None, config,
                   0.1, "cpu", fn)
    rm, _, _ = load_reward_model(models["ava"], kind="reward", mode="dense")
    kl = torch.where(roll["mask"], roll["logprobs"] - roll["ref_logprobs"], 0.0)
    expected = torch.zeros_like(roll["rewards"])
    for i, p in enumerate(PROMPTS):
        response = roll["sequences"][i, roll["prompt_len"]:][roll["mask"][i]].tolist()
        cut = response[-1] != tok.eos_token_id
        prompt_ids = tok(p)["input_ids"]
        mu = hand_mu(rm, prompt_ids + response + [tok.eos_token_id] * cut)
        n = len(response)
        expected[i, :n] = mu[len(prompt_ids):len(prompt_ids) + n]
        if cut:
            expected[i, n - 1] += mu[-1]
    assert expected.abs().sum() > 0 and len({len(tok(p)["input_ids"]) for p in PROMPTS}) == 3  # left padding
    assert torch.allclose(roll["rewards"], -0.1 * kl + expected, atol=1e-5)
    assert torch.allclose(roll["scores"], expected.sum(1), atol=1e-5)
    advantages, _ = compute_gae(roll["rewards"], torch.zeros_like(roll["rewards"]), roll["mask"], gamma=1.0, lam=0.0)
    assert torch.allclose(advantages, torch.where(roll["mask"], -0.1 * kl + expected, 0.0), atol=1e-5)


def test_dense_needs_the_policys_tokenizer(models, tmp_path):
    from transformers import AutoTokenizer

    from curate.models import resolve_model
    from curate.train.ppo import token_reward_model_fn

    other = reward_model(models["policy"], tmp_path / "other", ava=True)
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra>"])
    tok.save_pretrained(other)
    policy_tok = AutoTokenizer.from_pretrained(models["policy"])
    with pytest.raises(CurateError, match="different vocabularies .* --reward-mode final"):
        token_reward_model_fn(resolve_model(str(other), kind="reward"), "cpu", 2, policy_tok, PROMPTS)


def test_train_ppo_dense_records_the_mode(models, tmp_path, cli):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    common = ["train", "ppo", "--policy", models["policy"], "--prompts", prompts, "--batch-size", "2",
              "--mini-batch-size", "2", "--max-new-tokens", "4", "--steps", "1", "--ppo-epochs", "1", "-q"]
    r = cli(*common, "--reward", models["ava"], "-o", tmp_path / "none")
    assert r.exit_code == 1 and "is an AVA reward model" in r.output and "--reward-mode" in r.output
    assert not (tmp_path / "none").exists()
    r = cli(*common, "--reward", models["bt"], "-o", tmp_path / "bt", "--reward-mode", "dense")
    assert r.exit_code == 1 and "is a Bradley-Terry reward model" in r.output
    r = cli(*common, "--reward", models["ava"], "-o", tmp_path / "dense", "--reward-mode", "dense")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "dense" / "log.jsonl").read_text().splitlines()]
    assert [row["reward_mode"] for row in rows] == ["dense"] and isinstance(rows[0]["reward"], float)
    record = json.loads((tmp_path / "dense" / "curate_train.json").read_text())
    assert record["reward_mode"] == "dense" and record["config"]["reward_mode"] == "dense"
    # resuming it for a second step in the other mode (the last --steps wins)
    r = cli(*common, "--steps", "2", "--reward", models["ava"], "-o", tmp_path / "dense", "--reward-mode", "final")
    assert r.exit_code == 1 and "was trained with reward mode dense" in r.output


# -- curate run ------------------------------------------------------------------------------------
def test_run_config_with_ava_reward_models_needs_a_ppo_reward_mode(tmp_path):
    from curate.run import config as run_config

    path = tmp_path / "c.toml"
    path.write_text('[data]\nsources = ["demo"]\n\n[rm]\nobjective = "ava"\n', encoding="utf-8")
    with pytest.raises(CurateError, match=r"c.toml: \[ppo\] reward_mode is missing: \[rm\] objective = \"ava\""):
        run_config.load(path)
    path.write_text('[data]\nsources = ["demo"]\n\n[rm]\nobjective = "ava"\n\n[ppo]\nreward_mode = "dense"\n',
                    encoding="utf-8")
    cfg = run_config.load(path)
    assert cfg.ppo.reward_mode == "dense" and cfg.eval.judge_reward_mode(cfg.ppo.reward_mode) is None
    cfg.eval.judge = "rm:checkpoints/rm-all"
    assert cfg.eval.judge_reward_mode(cfg.ppo.reward_mode) == "dense"
    path.write_text('[data]\nsources = ["demo"]\n\n[ppo]\nreward_mode = "dense"\n', encoding="utf-8")
    with pytest.raises(CurateError, match=r"c.toml, line 5: \[ppo\] reward_mode \"dense\" needs per-token"):
        run_config.load(path)
