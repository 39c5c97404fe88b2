"""The reward objectives of issue #17: each loss against its closed form, how the contrastive and meta terms change
the gradient, a planted preference learnt under every objective, the saved AVA model, and the bad inputs."""

from __future__ import annotations

import json
import math

import pytest

from curate.errors import CurateError

from .conftest import write_jsonl
from .test_generate import tiny  # noqa: F401 - the tiny byte-level BPE policy, a session fixture
from .test_rm import base, rm_config, rm_ws  # noqa: F401 - the tiny model and workspace fixtures

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from curate.train import objectives as obj  # noqa: E402 - after the torch skip


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# -- each loss against its closed form ------------------------------------------------------------------
def test_bradley_terry_with_margin_and_smoothing():
    rc, rr, m, a = torch.tensor([1.0, -0.5]), torch.tensor([0.25, 0.5]), torch.tensor([0.5, 0.0]), 0.1
    expected = [-(1 - a) * math.log(sig(d)) - a * math.log(sig(-d)) for d in (1.0 - 0.25 - 0.5, -0.5 - 0.5)]
    torch.testing.assert_close(obj.bradley_terry(rc, rr, m, a), torch.tensor(expected))


def test_simcse_is_eq_9():
    h_s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    h_t = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # cosines: row 0 (0.6, 0), row 1 (0.8, 1)
    tau = 0.5
    cos = [[0.6, 0.0], [0.8, 1.0]]
    expected = sum(-math.log(math.exp(cos[i][i] / tau) / sum(math.exp(c / tau) for c in cos[i])) for i in (0, 1)) / 2
    assert obj.simcse(h_s, h_t, tau).item() == pytest.approx(expected, rel=1e-6)


def test_sinkhorn_equipartitions_and_swav_is_eqs_7_8():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 3, generator=g)
    q = obj.sinkhorn(scores, epsilon=0.05, iterations=50)
    torch.testing.assert_close(q.sum(1), torch.ones(6))  # each sample's code is a distribution
    torch.testing.assert_close(q.sum(0), torch.full((3,), 2.0), atol=1e-3, rtol=0)  # each prototype gets N/K
    h_t, h_s, c = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
    cn = c / c.norm(dim=1, keepdim=True)
    st, ss = (h / h.norm(dim=1, keepdim=True) @ cn.T for h in (h_t, h_s))
    qt, qs = obj.sinkhorn(st, 0.05, 3), obj.sinkhorn(ss, 0.05, 3)
    pt, ps = torch.softmax(st / 0.1, -1), torch.softmax(ss / 0.1, -1)
    expected = (-(qs * pt.log()).sum(1) - (qt * ps.log()).sum(1)).mean()
    torch.testing.assert_close(obj.swav(h_t, h_s, c, 0.1, 0.05, 3), expected)


def test_difference_is_eq_11():
    r = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    first = 2 / 9 * (sig(1.0) + sig(3.0) + sig(2.0))
    second = 2 / 9 * 3 * 0.5
    assert obj.difference(r).item() == pytest.approx((first + second) / 2)


def test_gaussian_terms_match_torch_distributions():
    mu, log_sigma, x = torch.tensor([0.3, -1.0]), torch.tensor([0.2, -0.5]), torch.tensor([1.0, 0.0])
    q, prior = torch.distributions.Normal(mu, log_sigma.exp()), torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(obj.gaussian_kl(mu, log_sigma), torch.distributions.kl_divergence(q, prior))
    torch.testing.assert_close(obj.gaussian_log_prob(x, mu, log_sigma), q.log_prob(x))


def test_ava_terms_by_hand():
    # one sequence of 4 positions, the last 3 response tokens; Q(s_t, a_t) = log pi of each
    q = torch.tensor([[9.0, -1.0, -2.0, -0.5]])  # the prompt position's 9 must not count
    mask = torch.tensor([[False, True, True, True]])
    mu, ls = torch.tensor([[5.0, 0.1, -0.2, 0.3]]), torch.tensor([[1.0, 0.0, 0.5, -0.5]])
    gamma = 0.9
    td = [-1.0 - gamma * -2.0, -2.0 - gamma * -0.5, -0.5 - 0.0]  # the episode ends after the last token
    normal = torch.distributions.Normal
    t = obj.ava_sequence_terms(q, mu, ls, mask, gamma)
    assert t["loglik"].item() == pytest.approx((-1.0 - 2.0 - 0.5) / 3)
    assert t["td_error"].item() == pytest.approx(sum(td) / 3)
    kl = sum(torch.distributions.kl_divergence(normal(mu[0, i], ls[0, i].exp()), normal(0.0, 1.0)).item()
             for i in (1, 2, 3)) / 3
    assert t["kl"].item() == pytest.approx(kl, rel=1e-5)
    lp = sum(normal(mu[0, i], ls[0, i].exp()).log_prob(torch.tensor(td[i - 1])).item() for i in (1, 2, 3)) / 3
    assert t["td"].item() == pytest.approx(lp, rel=1e-5)

    one = {k: v for k, v in t.items()}
    p = obj.ava_preference(one, one, torch.tensor([1.0]), torch.tensor([0.0]), kl_weight=2.0, td_weight=0.5,
                           negative_weight=0.25, cer_weight=3.0)
    expected = (-t["loglik"] + 0.25 * t["loglik"] + 2.0 * 2 * t["kl"] - 0.5 * 2 * t["td"] - 3.0 * math.log(sig(1.0)))
    torch.testing.assert_close(p["loss"], expected)


# -- the terms in the trainer change the gradient as their formulas say ---------------------------------
def _trainer(base_dir, tmp_path, **config):  # noqa: F811 - base is the fixture's folder here
    import datasets
    from trl import RewardConfig

    from curate.train import ava
    from curate.train.reward import load_reward_model
    from curate.train.rm import tokenize_rows
    from curate.train.rm_trainer import build_terms, make_trainer

    torch.manual_seed(0)
    model, tok, _ = load_reward_model(base_dir)
    cfg = rm_config(base_dir, tmp_path / "o", **config)
    q_head, owned = None, []
    if cfg.objective == "ava":
        model, q_head, owned = ava.prepare(model, base_dir)
    rows = datasets.Dataset.from_list([{"prompt": f"question {i} ?", "chosen": f" answer {i} is good",
                                        "rejected": f" answer {i} is bad"} for i in range(4)])
    ds, _ = tokenize_rows(rows, tok, 64, prompt_len=cfg.objective == "ava")
    terms, extra = build_terms(cfg, model, config.get("_meta"))
    args = RewardConfig(output_dir=str(tmp_path / "t"), report_to="none", bf16=False, use_cpu=True,
                        activation_checkpointing=False, per_device_train_batch_size=4,
                        train_sampling_strategy="sequential")
    trainer = make_trainer(model, tok, ds, args, terms, owned + extra, q_head)
    return trainer, next(iter(trainer.get_train_dataloader()))


def _grads(model):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()])


def test_contrastive_term_adds_beta_times_its_gradient(base, tmp_path):  # noqa: F811
    trainer, batch = _trainer(base, tmp_path, contrastive="simcse", contrastive_weight=0.7)
    model = trainer.model.eval()  # no dropout: both views are the same, so the two losses can be taken apart
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    composed = _grads(model)
    model.zero_grad()
    trainer.terms.contrastive = "none"  # switched off: TRL's own loss
    trainer.compute_loss(model, dict(batch)).backward()
    plain = _grads(model)
    model.zero_grad()
    from curate.train.rm_trainer import last_token, token_outputs

    hidden, _ = token_outputs(model, batch["input_ids"], batch["attention_mask"])
    h = hidden[torch.arange(8), last_token(batch["input_ids"], trainer.processing_class.pad_token_id)]
    obj.simcse(torch.cat([h[:4], h[4:]]), torch.cat([h[:4], h[4:]]), 0.05).backward()
    torch.testing.assert_close(composed, plain + 0.7 * _grads(model), atol=1e-5, rtol=1e-4)
    assert (0.7 * _grads(model)).abs().max() > 1e-4  # the term is not nothing


class FixedMeta:
    """A meta batch that is always the same k = 3 samples of one prompt."""

    def __init__(self, ids, mask):
        self.ids, self.mask = ids, mask

    def next(self, device):
        return {"input_ids": self.ids, "attention_mask": self.mask, "groups": [(0, 3)]}


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_meta_step_takes_the_gradient_at_theta_prime(base, tmp_path, eta):  # noqa: F811
    import copy

    trainer, batch = _trainer(base, tmp_path, meta=True, shifted_generations="it2", meta_lr=eta)
    ids = batch["input_ids"][:3]
    trainer.terms.meta = FixedMeta(ids, batch["attention_mask"][:3])
    model = trainer.model.eval()
    before = copy.deepcopy(model)
    trainer.current_gradient_accumulation_steps = 1  # what train() sets before its first step
    trainer.training_step(model, dict(batch))
    got = _grads(model)
    for p, q in zip(model.parameters(), before.parameters()):  # theta is restored: only the optimizer moves it
        torch.testing.assert_close(p, q)

    # by hand: theta' = theta + eta dJ/dtheta (eq. 12), then dL/dtheta' (eq. 13)
    shifted = copy.deepcopy(before)
    r = trainer._rewards(shifted, ids, batch["attention_mask"][:3]).unsqueeze(0)
    grads = torch.autograd.grad(obj.difference(r), list(shifted.parameters()), allow_unused=True)
    with torch.no_grad():
        for p, g in zip(shifted.parameters(), grads):
            if g is not None:
                p.add_(eta * g)
    trainer.compute_loss(shifted, dict(batch)).backward()
    torch.testing.assert_close(got, _grads(shifted))
    plain = copy.deepcopy(before)
    trainer.compute_loss(plain, dict(batch)).backward()
    if eta == 0.0:  # switched off: the plain gradient
        torch.testing.assert_close(got, _grads(plain))
    else:
        assert not torch.allclose(got, _grads(plain))


# -- a planted preference is learnt under every objective ------------------------------------------------
@pytest.fixture(scope="module")
def shifted(rm_ws):  # noqa: F811
    """Generations of iteration 2: three samples for each of the training prompts."""
    from curate.generations import import_generations

    from .conftest import query

    prompts = [r[0] for r in query(rm_ws.root, "select distinct prompt from pairs where split = 'train'")]
    rows = [{"prompt": p, "sample": s, "generation": f"answer {s} is {'good' if s % 2 else 'bad'}"}
            for p in prompts for s in range(3)]
    path = write_jsonl(rm_ws.root.parent / "gens-it2.jsonl", rows)
    import_generations(rm_ws, path, iteration=2, policy="shifted")
    return rm_ws


OBJECTIVES = {
    "bt": {},
    "bt+smoothing": {"label_smoothing": 0.1},
    "bt+simcse": {"contrastive": "simcse"},
    "bt+swav": {"contrastive": "swav", "swav_prototypes": 8},
    "metarm": {"meta": True, "shifted_generations": "it2", "meta_lr": 1e-3},
    "ava": {"objective": "ava"},
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_learns_the_planted_preference(name, base, shifted, tmp_path):  # noqa: F811
    from curate.train.evaluate import evaluate_rm
    from curate.train.rm import train_rm

    result = train_rm(rm_config(base, tmp_path / name, subset="gb", workspace=str(shifted.root),
                                **OBJECTIVES[name]))
    mode = {"reward_mode": "final"} if name == "ava" else {}
    ev = evaluate_rm(result.output, str(shifted.root), split="test", n_boot=0, **mode)
    assert ev["accuracy"] >= 0.8, (name, ev["accuracy"])
    rec = json.loads((result.output / "curate_train.json").read_text())
    assert rec["objective"]["name"] == OBJECTIVES[name].get("objective", "bt")
    for key in set(OBJECTIVES[name]) - {"label_smoothing"}:  # the objective's own settings (smoothing is bt's)
        assert key in rec["objective"]["settings"], key
    if name == "metarm":
        assert rec["objective"]["meta"]["prompts"] > 0 and "meta_difference" in rec["metrics"]
    if name in ("bt+simcse", "bt+swav"):
        assert "contrastive" in rec["metrics"]


@pytest.fixture(scope="module")
def tied(base, tmp_path_factory):  # noqa: F811
    """The tiny base with its output layer tied to the input embeddings, as SmolLM2's is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("tied") / "lm"
    model = AutoModelForCausalLM.from_pretrained(base, tie_word_embeddings=True)
    model.tie_weights()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def test_ava_model_is_saved_with_two_outputs_and_says_so(tied, rm_ws, tmp_path):  # noqa: F811
    from transformers import AutoModelForSequenceClassification

    from curate.train.ava import is_ava
    from curate.train.rm import train_rm

    out = train_rm(rm_config(tied, tmp_path / "ava", subset="gb", workspace=str(rm_ws.root), objective="ava",
                             epochs=1)).output
    assert is_ava(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["curate_reward"]["outputs"] == ["mean", "log_scale"]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 2
    assert model.score.weight.shape[0] == 2
    again = train_rm(rm_config(out, tmp_path / "ava2", subset="gb", workspace=str(rm_ws.root), objective="ava",
                               epochs=1, lr=0.0))  # continuing from an AVA model keeps its head
    torch.testing.assert_close(AutoModelForSequenceClassification.from_pretrained(again.output).score.weight,
                               model.score.weight)


def test_ava_on_an_untied_reward_model_has_no_q_values(base, rm_ws, tmp_path):  # noqa: F811
    from curate.train.rm import train_rm

    bt = train_rm(rm_config(base, tmp_path / "bt", subset="gb", workspace=str(rm_ws.root), epochs=1)).output
    with pytest.raises(CurateError, match="takes its Q-values from the base's language-model head"):
        train_rm(rm_config(bt, tmp_path / "ava", subset="gb", workspace=str(rm_ws.root), objective="ava"))


# -- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config, message", [
    ({"contrastive_weight": 0.5}, "--contrastive-weight belongs to --contrastive simcse"),
    ({"contrastive": "simcse", "swav_prototypes": 8}, "--swav-prototypes belongs to --contrastive swav"),
    ({"meta_lr": 0.1}, "--meta-lr belongs to --meta"),
    ({"shifted_generations": "it2"}, "--shifted-generations belongs to --meta"),
    ({"meta": True}, "--meta needs the shifted policy's samples"),
    ({"ava_td_weight": 2.0}, "--ava-td-weight belongs to --objective ava"),
    ({"objective": "ava", "label_smoothing": 0.1}, "--label-smoothing change(s) the Bradley-Terry loss"),
    ({"contrastive": "simcse", "contrastive_dropout": 0.0}, "--contrastive-dropout must be in (0, 1)"),
])
def test_options_without_their_objective_are_errors(base, tmp_path, config, message):  # noqa: F811
    from curate.train.rm import train_rm

    with pytest.raises(CurateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_rm(rm_config(base, tmp_path / "x", data=str(tmp_path / "none.jsonl"), **config))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("spec, message", [("it7", "has no generations of branch 'main', iteration 7"),
                                           ("it1x", "give the generations' iteration as it<N>"),
                                           ("it3", "none of its .* prompts has two or more distinct samples")])
def test_metarm_without_usable_shifted_generations(spec, message, base, shifted, tmp_path):  # noqa: F811
    from curate.generations import import_generations
    from curate.train.rm import train_rm

    from .conftest import query

    if spec == "it3":  # one sample per prompt
        prompts = [r[0] for r in query(shifted.root, "select distinct prompt from pairs where split = 'train'")]
        path = write_jsonl(tmp_path / "one.jsonl", [{"prompt": p, "generation": "answer 1 is good"} for p in prompts])
        import_generations(shifted, path, iteration=3, policy="single", overwrite=True)
    with pytest.raises(CurateError, match=message):
        train_rm(rm_config(base, tmp_path / "x", subset="gb", workspace=str(shifted.root), meta=True,
                           shifted_generations=spec))


# -- curate run with the objectives ----------------------------------------------------------------------
def test_a_run_trains_ava_with_metarm_and_ppo_reads_its_dense_rewards(tmp_path, tiny):  # noqa: F811
    """[rm] objective = "ava", meta = true and [ppo] reward_mode = "dense" through one FRFT iteration: the reward
    model is AVA's, its MetaRM samples are the iteration's own generations, PPO logs the dense mode."""
    from curate.run import Runner
    from curate.run.config import load

    from .conftest import hh_row
    from .test_run import toml

    rows = [hh_row(f"question {i} about topic {i % 7} ?", f"answer {i % 5} is good", f"answer {i % 5} is bad")
            for i in range(40)]
    data = write_jsonl(tmp_path / "data" / "toy" / "train.jsonl", rows[:32])
    held = write_jsonl(tmp_path / "data" / "toy" / "test.jsonl", rows[32:])
    cfg = {
        "run": {"name": "obj", "workspace": str(tmp_path / "ws"), "alpha": 1, "strategies": ["positive"],
                "baseline": "", "seed": 0},
        "data": {"sources": [str(data), str(held)], "sft_fraction": 0.25, "split": "train", "eval_split": "test"},
        "sft": {"model": str(tiny[0]), "max_steps": 1, "batch_size": 4, "max_length": 64, "lr": 1e-3},
        "generate": {"max_new_tokens": 6, "batch_size": 8, "chat_template": False, "limit": 8, "samples": 2},
        "filter": {"eps": 2.0, "size": 6},
        "rm": {"batch_size": 4, "max_length": 64, "lr": 1e-3, "eval_pairs": 4, "objective": "ava", "meta": True,
               "meta_lr": 1e-3},
        "ppo": {"steps": 1, "batch_size": 2, "mini_batch_size": 1, "max_new_tokens": 4, "ppo_epochs": 1,
                "dtype": "float32", "reward_mode": "dense"},
    }
    path = tmp_path / "obj.toml"
    path.write_text(toml(cfg), encoding="utf-8")
    runner = Runner(load(path), quiet=True)
    runner.execute()
    rm_dir = next((tmp_path / "ws").rglob("rm-it1"))
    rec = json.loads((rm_dir / "curate_train.json").read_text())
    assert rec["objective"]["name"] == "ava" and rec["objective"]["meta"]["iteration"] == 1
    assert rec["objective"]["meta"]["prompts"] > 0
    log = [json.loads(x) for x in next((tmp_path / "ws").rglob("ppo-it1/log.jsonl")).read_text().splitlines()]
    assert log and all(r["reward_mode"] == "dense" for r in log)


def test_ava_with_swav_keeps_its_q_head_out_of_the_prototypes(base, shifted, tmp_path):  # noqa: F811
    """AVA's untied Q head and SwAV's prototypes are both trainer-owned parameters; only the prototypes are
    renormalized onto the unit sphere each step (normalizing the Q head in place broke its backward)."""
    from curate.train.rm import train_rm

    result = train_rm(rm_config(base, tmp_path / "ava-swav", subset="gb", workspace=str(shifted.root),
                                objective="ava", contrastive="swav", swav_prototypes=8))
    rec = json.loads((result.output / "curate_train.json").read_text())
    assert rec["objective"]["name"] == "ava" and "contrastive" in rec["metrics"]
