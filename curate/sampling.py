"""How the policy is sampled: prompts to token ids, the batch plan and its seeds, and the two backends.

    from curate.sampling import GenerateParams, TransformersBackend, batch_plan, tokenize_prompts
    tokenize_prompts(prompts, tokenizer, chat_template=True, max_prompt_tokens=2048 - 64)
    for b, batch in enumerate(batch_plan(prompts, 32)):
        texts, n_tokens = engine.generate(batch, GenerateParams(max_new_tokens=64), batch_seed(0, b))

curate.generate runs the step (selection, resume, commits, provenance) over these; a backend only turns one
batch of token-id prompts into texts. TransformersBackend samples in this process; VllmBackend sends each batch
to vLLM's OpenAI-compatible server (curate.vllm_server) with the batch's own seed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import CurateError
from .settings import setting

STOP = "\n\nHuman:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


@dataclass
class GenerateParams:
    """How each response is sampled; stored with every generations row (its `params` column)."""

    top_k: int = setting(50, "Top-k sampling (0: off).", paper="FRFT paper, section 5.2")
    top_p: float = setting(1.0, "Nucleus sampling threshold.")
    temperature: float = setting(1.0, "Sampling temperature (0: greedy).")
    max_new_tokens: int = setting(128, "Tokens per response at most.")
    samples: int = setting(1, "Samples per prompt.")
    seed: int = setting(0, "Seed: same seed, model and inputs give the same generations on the same backend.",
                        toml=False)
    chat_template: bool = setting(False, "Format prompts with the model's chat template (Human -> user, Assistant "
                                  "-> assistant) instead of the HH transcript.")

    def check(self) -> None:
        if self.top_k < 0:
            raise CurateError(f"--top-k must be 0 (off) or more; got {self.top_k}.")
        if not 0 < self.top_p <= 1:
            raise CurateError(f"--top-p must be in (0, 1]; got {self.top_p}.")
        if self.temperature < 0:
            raise CurateError(f"--temperature must be 0 (greedy) or more; got {self.temperature}.")
        if self.max_new_tokens < 1:
            raise CurateError(f"--max-new-tokens must be at least 1; got {self.max_new_tokens}.")
        if self.samples < 1:
            raise CurateError(f"--samples must be at least 1; got {self.samples}.")


@dataclass
class Prompt:
    key: str  # the smallest pair_id that has this prompt: stable across workspaces
    text: str
    pair_ids: list[str]
    ids: list[int] = field(default_factory=list)  # token ids after formatting and truncation
    truncated: bool = False


# -- prompts ----------------------------------------------------------------------------------------
def hh_messages(prompt: str) -> list[dict]:
    """An HH transcript as chat messages: Human -> user, Assistant -> assistant; the open final
    `Assistant:` turn is left for the generation prompt; consecutive turns of one role are merged."""
    parts = _TURN.split(prompt)
    msgs: list[dict] = []
    if parts[0].strip():
        msgs.append({"role": "user", "content": parts[0].strip()})
    for role, text in zip(parts[1::2], parts[2::2]):
        r = "user" if role == "Human" else "assistant"
        if msgs and msgs[-1]["role"] == r:
            msgs[-1]["content"] = (msgs[-1]["content"] + "\n\n" + text.strip()).strip()
        else:
            msgs.append({"role": r, "content": text.strip()})
    if msgs and msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
        msgs.pop()
    return msgs


def as_transcript(text: str) -> str:
    """A prompt as an HH transcript: one already ("\n\nHuman: ...\n\nAssistant:") as it is, plain text (an
    instruction from another dataset) as a single human turn."""
    if "\n\nHuman:" in text and text.rstrip().endswith("Assistant:"):
        return text
    return f"\n\nHuman: {text.strip()}\n\nAssistant:"


def format_prompt(prompt: str, tokenizer, chat_template: bool) -> str:
    if not chat_template:
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise CurateError("--chat-template: this model's tokenizer has no chat template; drop the flag to use "
                          "the HH transcript as is.")
    return tokenizer.apply_chat_template(hh_messages(prompt), tokenize=False, add_generation_prompt=True)


def window(model) -> int | None:
    cfg = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def tokenize_prompts(prompts: list[Prompt], tokenizer, chat_template: bool, max_prompt_tokens: int | None) -> int:
    """Fill Prompt.ids (truncated from the left to max_prompt_tokens); returns how many were truncated."""
    texts = [format_prompt(p.text, tokenizer, chat_template) for p in prompts]
    enc = tokenizer(texts, add_special_tokens=not chat_template)["input_ids"]
    n = 0
    for p, ids in zip(prompts, enc):
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            ids, p.truncated = ids[len(ids) - max_prompt_tokens:], True
            n += 1
        p.ids = list(ids)
    return n


def batch_plan(prompts: list[Prompt], batch_size: int) -> list[list[Prompt]]:
    """Length-bucketed batches: sorted by token length (ties by key), so padding waste stays small."""
    ordered = sorted(prompts, key=lambda p: (len(p.ids), p.key))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def batch_seed(seed: int, b: int) -> int:
    return int(hashlib.sha256(f"curate-generate:{seed}:{b}".encode()).hexdigest()[:8], 16)


def response_text(text: str) -> str:
    """The response only: cut at the next human turn, trimmed."""
    cut = text.find(STOP)
    return (text if cut < 0 else text[:cut]).strip()


# -- backends ---------------------------------------------------------------------------------------
class TransformersBackend:
    name = "transformers"

    def __init__(self, model, tokenizer, device: str, dtype: str):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype

    def window(self) -> int | None:
        return window(self.model)

    def open(self, batches: list[list[Prompt]], p: GenerateParams) -> None:  # loaded already
        pass

    def close(self) -> None:
        pass

    def provenance(self) -> None:
        return None

    def generate(self, batch: list[Prompt], p: GenerateParams, seed: int) -> tuple[list[list[str]], int]:
        """Samples per prompt (p.samples each, in order) and the number of new tokens."""
        import torch

        tok = self.tokenizer
        enc = tok.pad({"input_ids": [x.ids for x in batch]}, padding=True, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        width = enc["input_ids"].shape[1]
        kwargs: dict[str, Any] = dict(max_new_tokens=p.max_new_tokens, num_return_sequences=p.samples,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, use_cache=True,
                                      stop_strings=[STOP], tokenizer=tok)
        if p.temperature == 0:
            kwargs.update(do_sample=False)
        else:
            kwargs.update(do_sample=True, top_k=p.top_k or None, top_p=p.top_p, temperature=p.temperature)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, width:]
        ends = {tok.pad_token_id, tok.eos_token_id} - {None}
        n_tokens = 0
        for row in new.tolist():
            n_tokens += next((i for i, t in enumerate(row) if t in ends), len(row))
        texts = tok.batch_decode(new, skip_special_tokens=True)
        out = [[response_text(texts[i * p.samples + s]) for s in range(p.samples)] for i in range(len(batch))]
        return out, n_tokens


class VllmBackend:
    """vLLM behind its OpenAI-compatible server (curate.vllm_server): one started for this step on the policy's
    folder, or --vllm-url's. Prompts go as token ids (curate tokenizes, so both backends see the same ids), one
    request per batch of the plan with that batch's seed: the same rows, resume and provenance as the
    transformers backend."""

    name = "vllm"

    def __init__(self, ref, tokenizer, dtype: str, seed: int, python: str | None = None, url: str | None = None,
                 extra_args: str = "", status=None):
        self.ref, self.tokenizer, self.seed = ref, tokenizer, seed
        self.python, self.url, self.extra_args, self.status = python, url, extra_args, status
        self.requested_dtype = dtype
        self.server = None
        self.served = ref.model_id
        # a server elsewhere: its device and dtype are its own
        self._probed, self._device, self._dtype = None, "remote", dtype
        if not url:  # found and asked now (seconds), so a resumed run's settings are checked before vLLM starts
            from .vllm_server import NO_VLLM, find_python, probe, vllm_dtype

            self.python = python or find_python()
            if self.python is None:
                raise CurateError(NO_VLLM)
            self._probed = probe(self.python)
            self._device = self._probed["device"]
            self._dtype = vllm_dtype(dtype, self._device)
        if url:
            from .vllm_server import VllmServer

            self.server = VllmServer.connect(url)
            m = self.server.model(None if len(self.server.models) == 1 else ref.model_id)
            self.served = m["id"]

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> str:
        return self._dtype

    def window(self) -> int | None:
        if self.server is not None:
            return self.server.model(self.served).get("max_model_len")
        from types import SimpleNamespace

        config = json.loads((self.ref.folder / "config.json").read_text())
        return window(SimpleNamespace(config=SimpleNamespace(**config)))

    def open(self, batches: list[list[Prompt]], p: GenerateParams) -> None:
        """Start the server (unless --vllm-url gave one), sized so a whole batch runs in one step."""
        if self.server is None:
            from .vllm_server import VllmServer

            most = max(sum(len(x.ids) for x in b) for b in batches) * p.samples
            self.server = VllmServer.start(self.ref.folder, self.served, seed=self.seed, python=self.python,
                                           dtype=self._dtype, max_model_len=self.window(),
                                           max_batch_tokens=most, max_seqs=max(len(b) for b in batches) * p.samples,
                                           extra_args=self.extra_args, status=self.status, probed=self._probed)
        elif not self.server.wait_idle(status=self.status):
            self.server.info["busy_at_start"] = self.server.load()  # recorded: its samples may differ from a rerun's
            if self.status:
                self.status(f"the vLLM server at {self.server.base_url} is still busy: generating anyway; samples made "
                            "beside other requests may differ from an idle server's")

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def provenance(self) -> dict:
        return {**(self.server.info if self.server else {}), "url": self.server.base_url if self.server else None,
                "served_model": self.served}

    def generate(self, batch: list[Prompt], p: GenerateParams, seed: int) -> tuple[list[list[str]], int]:
        texts, n_tokens = self.server.complete(self.served, [x.ids for x in batch], n=p.samples, seed=seed,
                                               max_tokens=p.max_new_tokens, temperature=p.temperature,
                                               top_p=p.top_p, top_k=p.top_k, stop=[STOP])
        return [[response_text(t) for t in samples] for samples in texts], n_tokens


def resolve_backend(backend: str, vllm_url: str | None = None) -> str:
    """auto: vLLM when --vllm-url names a server or a python with vLLM is found (curate.vllm_server.find_python),
    else transformers."""
    if backend != "auto":
        return backend
    from .vllm_server import find_python

    return "vllm" if vllm_url or find_python() else "transformers"


def vllm_engine(ref, dtype: str, seed: int, python: str | None, url: str | None, extra_args: str, status):
    from transformers import AutoTokenizer

    return VllmBackend(ref, AutoTokenizer.from_pretrained(str(ref.folder)), dtype, seed, python=python, url=url,
                       extra_args=extra_args, status=status)


def transformers_engine(ref, device: str | None, dtype: str):
    from .policy import load_policy

    lp = load_policy(ref, device, dtype)
    return TransformersBackend(lp.model, lp.tokenizer, lp.device, lp.dtype)
