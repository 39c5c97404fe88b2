"""The PPO algorithm's pieces, each small enough to check against its formula (tests/test_ppo.py does).

The critic is a value head on the actor's hidden states; a rollout samples responses and scores them (reward
model score at the last token, -beta * KL at every token: InstructGPT eq. 2; with dense rewards, an AVA model's
mean reward of every response token in place of the last-token score); GAE turns rewards into advantages
(Schulman et al. 2016); the update minimises the clipped surrogate and the clipped value loss (Schulman et al.
2017, eq. 7). curate.train.ppo runs them in a loop with checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

RewardFn = Callable[[list[str], list[str]], torch.Tensor]
# (input_ids, attention_mask) of right-padded rows -> a reward per position, [batch, tokens] (dense reward mode)
TokenRewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
        self.value, self.target, self.horizon = value, target or None, horizon  # target 0: a fixed coefficient

    def update(self, kl: float, n_samples: int) -> None:
        if self.target is None:
            return
        error = float(np.clip(kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + error * n_samples / self.horizon


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
def rollout(actor, ref, value_head, tokenizer, prompts: list[str], reward_fn: RewardFn | None, config,
            kl_coef: float, device, token_reward_fn: TokenRewardFn | None = None) -> dict:
    """Sample one response per prompt and compute everything the update needs from the rollout policy.

    config: the run's PPOConfig (max_prompt_length, top_k, temperature, max_new_tokens, mini_batch_size).
    reward_fn scores the decoded texts; token_reward_fn, if given instead, the sampled tokens themselves.
    """
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
    # Per-token reward: -beta * KL at every token, plus the RM score at the last token (InstructGPT eq. 2), or
    # with token_reward_fn (dense mode) the RM's reward of every response token; scores: the RM's sum per response
    kl = torch.where(mask, logprobs - ref_logprobs, 0.0)
    rewards = -kl_coef * kl
    if token_reward_fn is not None:
        dense = dense_rewards(token_reward_fn, sequences, attention_mask, prompt_len, mask, tokenizer.eos_token_id,
                              tokenizer.pad_token_id)
        rewards = rewards + dense
        scores = dense.sum(1)
    else:
        scores = torch.as_tensor(reward_fn(prompts, texts), dtype=torch.float32).to(device).reshape(-1)
        last = mask.sum(1) - 1  # >= 0: the first response token is always valid
        rewards[torch.arange(len(prompts), device=device), last] += scores
    return {"sequences": sequences, "attention_mask": attention_mask, "prompt_len": prompt_len, "mask": mask,
            "logprobs": logprobs, "ref_logprobs": ref_logprobs, "values": torch.where(mask, values, 0.0),
            "rewards": rewards, "scores": scores, "kl": kl.sum(1), "texts": texts}


def reward_model_rows(sequences: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int, mask: torch.Tensor,
                      eos_token_id: int, pad_token_id: int):
    """The rollout's rows as a reward model was trained on them: prompt + response + eos, padded on the right.

    A rollout row is [left pads, prompt, response up to its first eos, what generate padded after it]; the RM
    reads the real prompt tokens, then the response tokens (mask), then an eos where the response was cut at
    max_new_tokens (the RM never saw a text without one). Returns (input_ids, attention_mask, first, added_eos):
    first[i] is the position of row i's first response token, added_eos[i] whether an eos was appended to it.
    """
    rows, first, added = [], [], []
    for i in range(len(sequences)):
        prompt = sequences[i, :prompt_len][attention_mask[i, :prompt_len].bool()]
        response = sequences[i, prompt_len:][mask[i]]
        cut = bool(response[-1] != eos_token_id)
        rows.append(torch.cat([prompt, response, response.new_tensor([eos_token_id] * cut)]))
        first.append(len(prompt))
        added.append(cut)
    width = max(len(r) for r in rows)
    input_ids = sequences.new_full((len(rows), width), pad_token_id)
    rm_mask = torch.zeros_like(input_ids)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = r
        rm_mask[i, :len(r)] = 1
    return input_ids, rm_mask, first, added


def dense_rewards(token_reward_fn: TokenRewardFn, sequences: torch.Tensor, attention_mask: torch.Tensor,
                  prompt_len: int, mask: torch.Tensor, eos_token_id: int, pad_token_id: int) -> torch.Tensor:
    """[batch, response tokens] rewards: the RM's reward of each sampled response token (the mean mu_t of the state
    after it, AVA paper Eq. 19), 0 on masked tokens. A response cut at max_new_tokens is scored with an eos appended,
    as the RM was trained; that eos's reward goes to the last sampled token, so every response's sum is its
    `curate eval rm --reward-mode dense` score. The tokens before it do not see it (causal attention)."""
    input_ids, rm_mask, first, added = reward_model_rows(sequences, attention_mask, prompt_len, mask, eos_token_id,
                                                         pad_token_id)
    mu = token_reward_fn(input_ids, rm_mask).to(device=mask.device, dtype=torch.float32)
    out = torch.zeros(mask.shape, device=mask.device)
    for i, n in enumerate(mask.sum(1).tolist()):
        out[i, :n] = mu[i, first[i]:first[i] + n]
        if added[i]:
            out[i, n - 1] += mu[i, first[i] + n]
    return out


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


def masked_mean(x: torch.Tensor, mask: torch.Tensor, n_tokens: torch.Tensor | float | None = None) -> torch.Tensor:
    """The mean over the valid tokens; n_tokens, if given, is the denominator instead of this mask's count (data
    parallel: the global count over the number of processes, so that the processes' mean is the global mean)."""
    # where, not x * mask: a masked entry may be inf or nan and must not leak into the mean or its gradient
    total = torch.where(mask, x, 0.0).sum()
    return total / (mask.sum().clamp(min=1) if n_tokens is None else n_tokens)


def whiten(x: torch.Tensor, mask: torch.Tensor, sum_all: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """Zero mean, unit variance over the valid tokens; masked tokens become 0.

    sum_all (data parallel): sums a tensor over the processes, so the statistics are those of the global batch."""
    sum_all = sum_all or (lambda t: t)
    count = sum_all(mask.sum().float()).clamp(min=1)
    mean = sum_all(torch.where(mask, x, 0.0).sum()) / count
    var = sum_all(torch.where(mask, (x - mean) ** 2, 0.0).sum()) / count
    return torch.where(mask, (x - mean) * torch.rsqrt(var + 1e-8), 0.0)


def ppo_loss(logprobs, old_logprobs, values, old_values, advantages, returns, mask, cliprange: float,
             cliprange_value: float, n_tokens: torch.Tensor | float | None = None):
    """The clipped surrogate and the clipped value loss (Schulman et al. 2017, eq. 7), averaged over valid tokens
    (over n_tokens of them when given: see masked_mean)."""
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask, n_tokens)

    values_clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    vf_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask, n_tokens)

    stats = {
        "clipfrac": masked_mean((pg_losses_clipped > pg_losses).float(), mask, n_tokens).item(),
        "approx_kl": 0.5 * masked_mean(log_ratio**2, mask, n_tokens).item(),
        "ratio_max_dev": torch.where(mask, (ratio - 1).abs(), 0.0).max().item(),
    }
    return pg_loss, vf_loss, stats


def entropy(logits: torch.Tensor, mask: torch.Tensor, n_tokens: torch.Tensor | float | None = None) -> float:
    logp = torch.log_softmax(logits, -1)
    return masked_mean(-(logp.exp() * logp).sum(-1), mask, n_tokens).item()
