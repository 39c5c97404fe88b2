"""Judges that run here: a causal LM read at its next token (`hf:MODEL`) and a reward model's scores (`rm:FOLDER`).

hf: the verdict compares the model's probabilities of " A" and " B" (and "A"/"B") as the next token after the
rendered prompt and "\\n\\nOutput:" (where the template's examples put their answer). Nothing is sampled, so a
verdict is a function of the inputs. Every prompt starts with the same few-shot prefix (Appendix A's ~900 tokens):
its KV cache is computed once and each batch of suffixes (question and two answers) runs on a copy of it, instead of
a full forward pass per judgment (benchmarks/bench_judge.py measures both).

rm: the verdict compares the reward of prompt + answer A with that of prompt + answer B (curate.train.reward scores
them as the RM was trained; an AVA model in the reward mode given, which is part of the judge's identity, so
verdicts of another mode are not reused); the template plays no part. Both orders cost one scoring: rewards are
cached per text.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

from ..errors import CurateError
from .base import Answer, Request, identity_hash
from .template import Template

ANSWER_CUE = "\n\nOutput:"


class LocalLMJudge:
    def __init__(self, spec: str, template: Template, batch_size: int = 8, device: str | None = None,
                 dtype: str = "auto", cache_prefix: bool = True):
        from ..models import resolve_policy
        from ..policy import load_policy

        ref = resolve_policy(spec, option="--judge hf:")
        lp = load_policy(ref, device, dtype)
        self.model, self.tokenizer, self.template = lp.model, lp.tokenizer, template
        self.batch_size, self.cache_prefix = max(1, batch_size), cache_prefix
        self.identity = {"kind": "hf", "model": ref.name, "model_id": ref.model_id, "revision": ref.revision,
                         "dtype": lp.dtype, "answer_cue": ANSWER_CUE, "verdict": "argmax of p(A), p(B) next token"}
        self.judge_id = f"hf:{ref.model_id}#{identity_hash(self.identity)}"
        self.label_ids = {label: self._single_tokens(label) for label in ("A", "B")}
        if not all(self.label_ids.values()):
            raise CurateError(f"The tokenizer of {ref.name} has no single token for 'A' or 'B' (with or without a "
                              "leading space), so its next-token probabilities cannot give a verdict.")
        self._prefix_ids: list[int] = []
        self._prefix_cache = None

    def _single_tokens(self, label: str) -> list[int]:
        ids = set()
        for variant in (" " + label, label):
            enc = self.tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.add(enc[0])
        return sorted(ids)

    def prompt(self, r: Request) -> str:
        return r.text.rstrip("\n") + ANSWER_CUE

    def _verdict(self, logits) -> Answer:
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        a = torch.logsumexp(logp[self.label_ids["A"]], 0).item()
        b = torch.logsumexp(logp[self.label_ids["B"]], 0).item()
        verdict = "A" if a > b else "B" if b > a else "tie"
        return Answer(json.dumps({"logprob_a": round(a, 6), "logprob_b": round(b, 6)}), verdict)

    def _prefix(self, first_ids: list[int]):
        """The shared prefix's token ids and KV cache, computed on first use. The ids are those the whole prompt
        tokenizes to (a BPE merge may cross the prefix's end): the tokens both agree on, less the last."""
        import torch

        if self._prefix_cache is None:
            alone = self.tokenizer(self.template.prefix)["input_ids"]
            same = next((k for k, (x, y) in enumerate(zip(alone, first_ids)) if x != y),
                        min(len(alone), len(first_ids)))
            self._prefix_ids = first_ids[:max(same - 1, 0)]
            if not self._prefix_ids:  # a template that starts with the question: nothing to share
                return self._prefix_ids, None
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([self._prefix_ids], device=self.model.device), use_cache=True)
            self._prefix_cache = out.past_key_values
        return self._prefix_ids, self._prefix_cache

    def judge(self, requests: list[Request], on_answer: Callable[[int, Answer], None]) -> None:
        if not self.cache_prefix:
            return self.judge_naive(requests, on_answer)
        import torch

        full = [self.tokenizer(self.prompt(r))["input_ids"] for r in requests]
        if not full:
            return
        prefix_ids, prefix_cache = self._prefix(full[0])
        if prefix_cache is None:
            return self.judge_naive(requests, on_answer)
        n = len(prefix_ids)
        # the same tokens as a full pass: a prompt whose tokens do not start with the cached ones runs on its own
        alone = [i for i, ids in enumerate(full) if ids[:n] != prefix_ids or len(ids) == n]
        if alone:
            self.judge_naive([requests[i] for i in alone], lambda k, a: on_answer(alone[k], a))
        skip = set(alone)
        suffixes = {i: ids[n:] for i, ids in enumerate(full) if i not in skip}
        order = sorted(suffixes, key=lambda i: len(suffixes[i]))  # similar lengths share a batch
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        base, head = self.model.base_model, self.model.get_output_embeddings()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(suffixes[i]) for i in idx)
            # right padding: causal attention keeps each row's real tokens from seeing the pads after them, and
            # their positions follow the prefix's as in a single full pass
            ids = torch.tensor([suffixes[i] + [pad] * (width - len(suffixes[i])) for i in idx],
                               device=self.model.device)
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(idx))
            with torch.no_grad():
                hidden = base(input_ids=ids, past_key_values=cache, use_cache=True).last_hidden_state
                last = hidden[torch.arange(len(idx)), torch.tensor([len(suffixes[i]) - 1 for i in idx])]
                logits = head(last)
            for row, i in enumerate(idx):
                on_answer(i, self._verdict(logits[row]))

    def judge_naive(self, requests: list[Request], on_answer: Callable[[int, Answer], None]) -> None:
        """One full forward pass per judgment, the whole prompt each time: the benchmark's baseline."""
        import torch

        for i, r in enumerate(requests):
            ids = self.tokenizer(self.prompt(r))["input_ids"]
            with torch.no_grad():
                logits = self.model(input_ids=torch.tensor([ids], device=self.model.device)).logits[0, -1]
            on_answer(i, self._verdict(logits))


class RewardModelJudge:
    def __init__(self, spec: str, batch_size: int = 8, max_length: int | None = 1024, reward_mode: str | None = None,
                 mode_option: str = "--reward-mode"):
        from ..models import resolve_model
        from ..train.reward import load_reward_model, reward_objective

        ref = resolve_model(spec, kind="reward", option="--judge rm:")
        self.model, self.tokenizer, _ = load_reward_model(ref, kind="reward", mode=reward_mode, option=mode_option)
        self.model.eval()
        self.batch_size, self.max_length, self.reward_mode = batch_size, max_length, reward_mode
        self.identity = {"kind": "rm", "model": ref.name, "model_id": ref.model_id, "revision": ref.revision,
                         "max_length": max_length, "verdict": "the higher reward of prompt + answer"}
        if reward_objective(self.model.config) != "bt":  # a Bradley-Terry judge keeps the identity (and cache) it had
            self.identity["reward_mode"] = reward_mode
        self.judge_id = f"rm:{ref.model_id}#{identity_hash(self.identity)}"

    def judge(self, requests: list[Request], on_answer: Callable[[int, Answer], None]) -> None:
        from ..train.reward import score, spaced

        texts = sorted({(r.question, a) for r in requests for a in (r.answer_a, r.answer_b)})
        scores = score(self.model, self.tokenizer, [q for q, _ in texts], [spaced(a) for _, a in texts],
                       self.batch_size, self.max_length, mode=self.reward_mode)
        rewards = dict(zip(texts, scores.tolist()))
        for i, r in enumerate(requests):
            a, b = rewards[(r.question, r.answer_a)], rewards[(r.question, r.answer_b)]
            verdict = "A" if a > b else "B" if b > a else "tie"
            on_answer(i, Answer(json.dumps({"reward_a": round(a, 6), "reward_b": round(b, 6)}), verdict))
