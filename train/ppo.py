"""PPO for a causal LM policy against a reward model: a thin trainer on transformers + accelerate.

TRL dropped its PPOTrainer in 1.13 (issue #6), so this file is the whole algorithm, top to bottom:

    python -m train.ppo --policy sft/ --reward rm/ --output ppo/ --prompts prompts.jsonl
    python -m train.ppo --policy sft/ --reward rm/ --output ppo/ --workspace workspace   # the `pref` prompts
    accelerate launch -m train.ppo --policy sft/ --reward rm/ --output ppo/ ...          # several GPUs

Rerunning with the same --output resumes from `<output>/trainer_state.json`. From Python:
`train_ppo(PPOConfig(...), prompts=[...], reward_fn=f)` where `f(prompts, responses) -> tensor of scores`.

The models: the actor (the policy being trained), a frozen reference (a copy of its initial weights, for the KL
penalty), the critic (a linear value head on the actor's last hidden states, detached: the value loss trains the
head only, so the actor's and critic's learning rates stay separate), and the reward model (a sequence
classifier with one label, or a Python function). Each step: sample responses for a batch of prompts (rollout),
score them, turn score - KL into per-token rewards, estimate advantages with GAE, then run a few epochs of the
clipped PPO objective over minibatches of that batch.
"""

from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from curate.errors import CurateError

RewardFn = Callable[[list[str], list[str]], torch.Tensor]


# ---------------------------------------------------------------------------------------------- config


@dataclass
class PPOConfig:
    """Every knob of the run. Defaults after InstructGPT (Ouyang et al. 2022, appendix C.4) unless noted."""

    policy: str = "smollm2-135m"  # a curate policy spec: a model folder, a Hub id or the packaged default
    output: str = "ppo"  # checkpoints, log.jsonl and curate_train.json go here
    reward: str | None = None  # a sequence-classification model folder (num_labels=1); or pass reward_fn
    # the frozen KL reference; default: the initial policy. FRFT's later iterations continue from the previous
    # PPO policy and keep the SFT model as the reference (pi_ref)
    reference: str | None = None
    prompts_file: str | None = None  # a .jsonl with a `prompt` field
    workspace: str | None = None  # or: the distinct prompts of the workspace's `pref` pairs
    # rollout
    batch_size: int = 64  # prompts per step (per process)
    mini_batch_size: int = 16
    max_prompt_length: int = 512
    max_new_tokens: int = 64
    top_k: int = 50
    temperature: float = 1.0
    # rewards and advantages
    kl_coef: float = 0.02  # InstructGPT's beta
    kl_target: float | None = None  # set to turn on the adaptive controller (Ziegler et al. 2019, 2.2: 6.0)
    kl_horizon: int = 10000  # Ziegler et al. 2019
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    # update
    ppo_epochs: int = 4
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    actor_lr: float = 5e-6  # InstructGPT's 1.3B/6B value range; critic slightly higher, as there
    critic_lr: float = 9e-6
    adam_betas: tuple[float, float] = (0.9, 0.95)
    max_grad_norm: float = 1.0
    train_dropout: bool = False  # dropout off: the first minibatch sees exactly the rollout policy
    # run
    steps: int = 100
    save_every: int = 50
    seed: int = 0
    dtype: str = "float32"  # float32, bfloat16 or float16
    resume: bool = False  # require a checkpoint to resume from (resuming is automatic when one exists)
    quiet: bool = False


# ---------------------------------------------------------------------------------------------- data


def load_prompts(prompts_file: str | None = None, workspace: str | None = None) -> tuple[list[str], str]:
    """The training prompts and a description of where they came from."""
    if prompts_file:
        prompts = []
        with open(prompts_file, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise CurateError(f"{prompts_file}, line {n}: not valid JSON. Each line needs an object with a "
                                      f"`prompt` string.") from None
                if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                    raise CurateError(f"{prompts_file}, line {n}: expected an object with a `prompt` string.")
                prompts.append(row["prompt"])
        source = f"file:{Path(prompts_file).resolve()}"
    elif workspace:
        from curate.workspace import Workspace

        con = Workspace(workspace).connect()
        try:
            rows = con.execute("select distinct prompt from pairs where role='pref' order by prompt").fetchall()
        finally:
            con.close()
        prompts = [r[0] for r in rows]
        source = f"workspace:{Path(workspace).resolve()}"  # a str or a Path (curate's --workspace option)
    else:
        raise CurateError("No prompts: pass --prompts FILE.jsonl (a `prompt` field per line) or --workspace W "
                          "(the prompts of its pref pairs).")
    if not prompts:
        raise CurateError(f"No prompts found in {source}.")
    return prompts, source


# ---------------------------------------------------------------------------------------------- model


class ValueHead(nn.Module):
    """The critic: one linear layer from the actor's last hidden state to a scalar value per token."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)  # start at V = 0: no made-up baseline before any return is seen
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.detach().float()).squeeze(-1)


class KLController:
    """The KL coefficient: fixed, or adapted towards a target KL (Ziegler et al. 2019, section 2.2)."""

    def __init__(self, value: float, target: float | None, horizon: int):
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, kl: float, n_samples: int) -> None:
        if self.target is None:
            return
        error = float(np.clip(kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + error * n_samples / self.horizon


def load_reward_model(folder: str, device: torch.device):
    """The reward model (num_labels=1) and its tokenizer, frozen."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 - a missing folder, a broken checkpoint, no tokenizer: all end here
        raise CurateError(f"Could not load the reward model from {folder}: {type(e).__name__}: {e}. --reward needs "
                          f"a sequence-classification checkpoint with one label and its tokenizer.") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:  # the classifier finds each row's last token by the pad id
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval().requires_grad_(False).to(device), tokenizer


def reward_model_fn(model, tokenizer, max_length: int = 1024) -> RewardFn:
    """Wrap a reward model as reward_fn: the scalar score of each prompt + response."""

    @torch.no_grad()
    def score(prompts: list[str], responses: list[str]) -> torch.Tensor:
        enc = tokenizer([p + r for p, r in zip(prompts, responses, strict=True)], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(model.device)
        return model(**enc).logits[:, 0].float()

    return score


# ---------------------------------------------------------------------------------------------- rollout


def response_mask(responses: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """True for the response tokens up to and including the first EOS; what generate pads after it is False."""
    is_eos = responses == eos_token_id
    eos_before = is_eos.long().cumsum(1) - is_eos.long()  # EOS tokens strictly before each position
    return eos_before == 0


def forward(model, input_ids, attention_mask, prompt_len: int, value_head: ValueHead | None = None,
            temperature: float = 1.0):
    """Log-probs of the response tokens input_ids[:, prompt_len:], their logits, and the critic's values.

    Position ids count real tokens only, so a left-padded prompt sees the positions it would see alone. The
    logits at position t predict token t + 1, hence the shift by one; the value of emitting token t is read
    from the same hidden state.
    """
    position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                output_hidden_states=value_head is not None, use_cache=False)
    logits = out.logits[:, prompt_len - 1 : -1].float() / temperature
    logprobs = torch.log_softmax(logits, -1).gather(-1, input_ids[:, prompt_len:, None]).squeeze(-1)
    values = value_head(out.hidden_states[-1][:, prompt_len - 1 : -1]) if value_head is not None else None
    return logprobs, logits, values


@torch.no_grad()
def rollout(actor, ref, value_head, tokenizer, prompts: list[str], reward_fn: RewardFn, config: PPOConfig,
            kl_coef: float, device) -> dict:
    """Sample one response per prompt and compute everything the update needs from the rollout policy."""
    from transformers import GenerationConfig

    enc = tokenizer(prompts, padding=True, truncation=True, max_length=config.max_prompt_length,
                    return_tensors="pt").to(device)
    prompt_len = enc.input_ids.shape[1]
    # A fresh generation config: a checkpoint's repetition penalty or top_p would sample from a distribution
    # other than the one whose log-probs the update uses.
    gen = GenerationConfig(do_sample=True, top_k=config.top_k, top_p=1.0, temperature=config.temperature,
                           max_new_tokens=config.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    sequences = actor.generate(**enc, generation_config=gen)
    responses = sequences[:, prompt_len:]
    mask = response_mask(responses, tokenizer.eos_token_id)
    attention_mask = torch.cat([enc.attention_mask.bool(), mask], 1)

    logprobs, ref_logprobs, values = [], [], []
    for i in range(0, len(prompts), config.mini_batch_size):  # chunks: full-vocabulary logits are large
        chunk = slice(i, i + config.mini_batch_size)
        lp, _, v = forward(actor, sequences[chunk], attention_mask[chunk], prompt_len, value_head,
                           config.temperature)
        rlp, _, _ = forward(ref, sequences[chunk], attention_mask[chunk], prompt_len, None, config.temperature)
        logprobs.append(lp)
        ref_logprobs.append(rlp)
        values.append(v)
    logprobs, ref_logprobs, values = torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)

    texts = tokenizer.batch_decode(torch.where(mask, responses, tokenizer.pad_token_id), skip_special_tokens=True)
    scores = torch.as_tensor(reward_fn(prompts, texts), dtype=torch.float32).to(device).reshape(-1)

    # Per-token reward: -beta * KL at every token, plus the RM score at the last token (InstructGPT eq. 2).
    kl = torch.where(mask, logprobs - ref_logprobs, 0.0)
    rewards = -kl_coef * kl
    last = mask.sum(1) - 1  # >= 0: the first response token is always valid
    rewards[torch.arange(len(prompts), device=device), last] += scores
    return {"sequences": sequences, "attention_mask": attention_mask, "prompt_len": prompt_len, "mask": mask,
            "logprobs": logprobs, "ref_logprobs": ref_logprobs, "values": torch.where(mask, values, 0.0),
            "rewards": rewards, "scores": scores, "kl": kl.sum(1), "texts": texts}


# ---------------------------------------------------------------------------------------------- advantages


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al. 2016) over [batch, tokens]; returns (advantages, returns).

    Masked tokens get reward and value 0, so the value after the last valid token is 0 (the episode ends there).
    """
    rewards = torch.where(mask.bool(), rewards, 0.0)
    values = torch.where(mask.bool(), values, 0.0)
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    advantages = torch.where(mask.bool(), advantages, 0.0)
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # where, not x * mask: a masked entry may be inf or nan and must not leak into the mean or its gradient
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the valid tokens; masked tokens become 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return torch.where(mask, (x - mean) * torch.rsqrt(var + 1e-8), 0.0)


# ---------------------------------------------------------------------------------------------- loss


def ppo_loss(logprobs, old_logprobs, values, old_values, advantages, returns, mask, cliprange: float,
             cliprange_value: float):
    """The clipped surrogate and the clipped value loss (Schulman et al. 2017, eq. 7), averaged over valid tokens."""
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)

    values_clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    vf_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask)

    stats = {
        "clipfrac": masked_mean((pg_losses_clipped > pg_losses).float(), mask).item(),
        "approx_kl": 0.5 * masked_mean(log_ratio**2, mask).item(),
        "ratio_max_dev": torch.where(mask, (ratio - 1).abs(), 0.0).max().item(),
    }
    return pg_loss, vf_loss, stats


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> float:
    logp = torch.log_softmax(logits, -1)
    return masked_mean(-(logp.exp() * logp).sum(-1), mask).item()


# ---------------------------------------------------------------------------------------------- save


STATE_FILE, LOG_FILE, RECORD_FILE = "trainer_state.json", "log.jsonl", "curate_train.json"


def _rng_state(prompt_rng: torch.Generator) -> dict:
    def b64(t: torch.Tensor) -> str:  # torch's RNG states are byte tensors; JSON holds them as base64
        return base64.b64encode(t.cpu().numpy().tobytes()).decode()

    np_state = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *map(float, np_state[2:])],
        "torch": b64(torch.get_rng_state()),
        "cuda": [b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "prompts": b64(prompt_rng.get_state()),
    }


def _set_rng_state(state: dict, prompt_rng: torch.Generator) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(tensor(state["torch"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensor(s) for s in state["cuda"]])
    prompt_rng.set_state(tensor(state["prompts"]))


def save_checkpoint(out: Path, step: int, accelerator, actor, value_head, tokenizer, actor_opt, critic_opt,
                    kl_ctl: KLController, prompt_rng: torch.Generator) -> None:
    """Weights, optimizer states and the step into `out`; trainer_state.json last, so its presence means complete."""
    from accelerate.utils import gather_object

    rng = gather_object([_rng_state(prompt_rng)])  # one per process
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(actor).save_pretrained(out)
        tokenizer.save_pretrained(out)
        torch.save(accelerator.unwrap_model(value_head).state_dict(), out / "value_head.pt")
        torch.save({"actor": actor_opt.state_dict(), "critic": critic_opt.state_dict()}, out / "optimizer.pt")
        state = {"step": step, "kl_coef": kl_ctl.value, "rng": rng}
        (out / STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in ("curate", "torch", "transformers", "accelerate", "tokenizers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ---------------------------------------------------------------------------------------------- train


@dataclass
class PPOResult:
    output: Path
    step: int  # the last step trained
    history: list[dict] = field(default_factory=list)  # the log.jsonl rows of this run (resumed rows included)


def train_ppo(config: PPOConfig, prompts: list[str] | None = None, reward_fn: RewardFn | None = None,
              on_step: Callable[[dict], None] | None = None) -> PPOResult:
    """Train the policy with PPO; checkpoints and logs go to config.output. Resumes when a checkpoint is there."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM

    from curate.policy import load_policy, resolve_policy

    accelerator = Accelerator()
    device = accelerator.device
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    resuming = (out / STATE_FILE).is_file()
    if config.resume and not resuming:
        raise CurateError(f"--resume: there is no checkpoint to resume from ({out / STATE_FILE} does not exist).")
    if config.mini_batch_size <= 0 or config.batch_size % config.mini_batch_size:
        raise CurateError(f"--batch-size {config.batch_size} must be a multiple of --mini-batch-size "
                          f"{config.mini_batch_size}.")
    if reward_fn is None and not config.reward:
        raise CurateError("No reward: pass --reward DIR (a sequence-classification model with one label).")
    set_seed(config.seed, device_specific=True)

    # data
    if prompts is not None:
        source = "argument"
    else:
        prompts, source = load_prompts(config.prompts_file, config.workspace)
    prompt_rng = torch.Generator().manual_seed(config.seed + accelerator.process_index)

    # model
    ref_spec = resolve_policy(config.policy)
    base = load_policy(ref_spec, device="cpu", dtype=config.dtype)
    tokenizer = base.tokenizer  # left padding and a pad token
    if config.reference:
        ref_model = load_policy(resolve_policy(config.reference), device="cpu", dtype=config.dtype).model
        if ref_model.get_input_embeddings().num_embeddings != base.model.get_input_embeddings().num_embeddings:
            raise CurateError(f"The reference {config.reference} and the policy {config.policy} have different "
                              "vocabularies; the KL penalty needs the same tokenizer.")
    else:
        ref_model = copy.deepcopy(base.model)  # the initial weights
    reference = ref_model.eval().requires_grad_(False).to(device)  # frozen
    if resuming:
        actor = AutoModelForCausalLM.from_pretrained(out, dtype=getattr(torch, base.dtype))
        actor.generation_config = base.model.generation_config
        del base
    else:
        actor = base.model
    actor.config.use_cache = True
    value_head = ValueHead(actor.config.hidden_size)
    if reward_fn is None:
        reward_fn = reward_model_fn(*load_reward_model(config.reward, device))

    actor_opt = torch.optim.Adam(actor.parameters(), lr=config.actor_lr, betas=config.adam_betas)
    critic_opt = torch.optim.Adam(value_head.parameters(), lr=config.critic_lr, betas=config.adam_betas)
    actor, value_head, actor_opt, critic_opt = accelerator.prepare(actor, value_head, actor_opt, critic_opt)
    kl_ctl = KLController(config.kl_coef, config.kl_target, config.kl_horizon)

    start, history = 0, []
    if resuming:
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
        start, kl_ctl.value = state["step"], state["kl_coef"]
        accelerator.unwrap_model(value_head).load_state_dict(torch.load(out / "value_head.pt", map_location=device))
        opt_state = torch.load(out / "optimizer.pt", map_location=device, weights_only=False)
        actor_opt.load_state_dict(opt_state["actor"])
        critic_opt.load_state_dict(opt_state["critic"])
        _set_rng_state(state["rng"][accelerator.process_index], prompt_rng)
        if (out / LOG_FILE).is_file():  # rows logged after the checkpoint belong to steps that will be redone
            rows = [json.loads(line) for line in (out / LOG_FILE).read_text(encoding="utf-8").splitlines() if line]
            history = [r for r in rows if r["step"] <= start]
    if accelerator.is_main_process:
        record = {
            "config": dataclasses.asdict(config),
            "policy": {"spec": config.policy, "folder": str(ref_spec.folder), "policy_id": ref_spec.policy_id},
            "reference": config.reference or config.policy,
            "reward": config.reward or f"python:{getattr(reward_fn, '__qualname__', 'reward_fn')}",
            "prompts": {"source": source, "count": len(prompts)},
            "versions": _versions(),
            "processes": accelerator.num_processes,
            "resumed_from_step": start if resuming else None,
        }
        (out / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        (out / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")

    unwrapped = accelerator.unwrap_model(actor)
    progress = _Progress(config.steps, start, config.quiet or not accelerator.is_main_process)
    for step in range(start + 1, config.steps + 1):
        t0 = time.perf_counter()
        # rollout: dropout off, so the sampled tokens' log-probs are exactly the policy's
        unwrapped.eval()
        batch_prompts = [prompts[i] for i in torch.randint(len(prompts), (config.batch_size,), generator=prompt_rng)]
        roll = rollout(unwrapped, reference, value_head, tokenizer, batch_prompts, reward_fn, config, kl_ctl.value,
                       device)
        mask = roll["mask"]
        advantages, returns = compute_gae(roll["rewards"], roll["values"], mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = whiten(advantages, mask)

        # update: several epochs of minibatches over this one batch
        actor.train(config.train_dropout)
        mb_stats = []
        for _ in range(config.ppo_epochs):
            for idx in torch.randperm(config.batch_size, device=device).split(config.mini_batch_size):
                logprobs, logits, values = forward(actor, roll["sequences"][idx], roll["attention_mask"][idx],
                                                   roll["prompt_len"], value_head, config.temperature)
                pg_loss, vf_loss, stats = ppo_loss(logprobs, roll["logprobs"][idx], values, roll["values"][idx],
                                                   advantages[idx], returns[idx], mask[idx], config.cliprange,
                                                   config.cliprange_value)
                # the value head sees detached hidden states: vf_loss trains only it, pg_loss only the actor
                accelerator.backward(pg_loss + vf_loss)
                if config.max_grad_norm:
                    accelerator.clip_grad_norm_(actor.parameters(), config.max_grad_norm)
                    accelerator.clip_grad_norm_(value_head.parameters(), config.max_grad_norm)
                for optimizer in (actor_opt, critic_opt):
                    optimizer.step()
                    optimizer.zero_grad()
                stats["entropy"] = entropy(logits.detach(), mask[idx])
                mb_stats.append({"pg_loss": pg_loss.item(), "vf_loss": vf_loss.item(), **stats})

        # log: means over processes; *_first is the first minibatch, where the policy is still the rollout policy
        local = {
            "reward": roll["scores"].mean().item(),  # the reward model's score, before the KL penalty
            "kl": roll["kl"].mean().item(),  # per response: the sum over its tokens of logp_actor - logp_ref
            "response_length": mask.sum(1).float().mean().item(),
            **{k: float(np.mean([s[k] for s in mb_stats])) for k in ("entropy", "clipfrac", "approx_kl", "vf_loss",
                                                                    "pg_loss")},
            "clipfrac_first": mb_stats[0]["clipfrac"],
            "ratio_max_dev_first": mb_stats[0]["ratio_max_dev"],
        }
        reduced = accelerator.reduce(torch.tensor(list(local.values()), device=device), reduction="mean")
        row = {"step": step, **{k: round(v, 6) for k, v in zip(local, reduced.tolist(), strict=True)},
               "kl_coef": kl_ctl.value, "seconds": round(time.perf_counter() - t0, 3)}
        kl_ctl.update(row["kl"], config.batch_size * accelerator.num_processes)
        history.append(row)
        if accelerator.is_main_process:
            with open(out / LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if on_step:
                on_step(row)
        progress.update(row)

        # save
        if step % config.save_every == 0 or step == config.steps:
            save_checkpoint(out, step, accelerator, actor, value_head, tokenizer, actor_opt, critic_opt, kl_ctl,
                            prompt_rng)
    progress.close()
    return PPOResult(out, max(start, config.steps), history)


class _Progress:
    """A rich progress bar on stderr showing the latest reward and KL; nothing when quiet."""

    def __init__(self, total: int, done: int, quiet: bool):
        self.bar = None
        if not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("ppo"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                                TimeRemainingColumn(), console=Console(stderr=True))
            self.task = self.bar.add_task("", total=total, completed=done)
            self.bar.start()

    def update(self, row: dict) -> None:
        if self.bar:
            self.bar.update(self.task, advance=1, description=f"reward {row['reward']:.3f} kl {row['kl']:.3f}")

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


# ---------------------------------------------------------------------------------------------- cli


def main(argv: list[str] | None = None) -> int:
    """`python -m train.ppo`: every PPOConfig field is an option (--kl-coef 0.05); per-step JSON on stdout."""
    parser = argparse.ArgumentParser(prog="python -m train.ppo", description=__doc__.split("\n\n")[0])
    defaults = PPOConfig()
    renamed = {"prompts_file": "--prompts"}
    for f in dataclasses.fields(PPOConfig):
        flag = renamed.get(f.name, "--" + f.name.replace("_", "-"))
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            parser.add_argument(flag, dest=f.name, type=float, nargs=len(default), default=default)
        else:
            kind = {"kl_target": float}.get(f.name, type(default) if default is not None else str)
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=f"default: {default}")
    args = vars(parser.parse_args(argv))
    args["adam_betas"] = tuple(args["adam_betas"])
    config = PPOConfig(**args)
    try:
        result = train_ppo(config, on_step=lambda row: print(json.dumps(row), flush=True))
    except CurateError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    if not config.quiet:
        print(f"trained to step {result.step}; checkpoint in {result.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
