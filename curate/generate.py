"""`curate generate`: sample the policy's response to every preference prompt, batched and resumable.

    from curate.generate import generate, GenerateParams
    generate(Workspace("workspace"), "smollm2-135m", iteration=1, params=GenerateParams(max_new_tokens=64))

Prompts are the distinct prompts of the selected `pref` pairs (a prompt shared by several pairs is
sampled once and its samples go to each pair). They are formatted (HH transcript as is, or the model's
chat template), tokenized, truncated from the left to fit the model's window, and sorted by length into
a fixed *batch plan*: batch b is seeded from (seed, b), so a run gives the same generations whether it
ran in one go or was interrupted and resumed (same backend and machine). Finished batches are committed
in shards; a rerun with the same arguments skips every batch whose pairs already have their samples.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from .errors import CurateError
from .provenance import versions
from .settings import setting
from .workspace import Workspace, new_id, utcnow

STOP = "\n\nHuman:"
BACKENDS = ("transformers", "vllm")
_TURN = re.compile(r"\n\n(Human|Assistant):")

# {where} is the user's own SQL predicate (--where); every value curate supplies is a bound parameter
SELECT_SQL = """
select prompt, list(pair_id order by pair_id) as pair_ids
from pairs
where ($role is null or role = $role) and trim(prompt) <> '' and ($split is null or split = $split) and ({where})
group by prompt
"""


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
class GenerateSettings(GenerateParams):
    """GenerateParams plus how the step runs (not stored per row): `curate generate`'s options and `curate run`'s
    [generate] section."""

    batch_size: int = setting(16, "Prompts per forward batch.")
    limit: int = setting(0, "At most N prompts, a deterministic sample by --seed (0: all).")
    sample_fraction: float = setting(1.0, "A deterministic fraction of the prompts (1: all).")
    dtype: str = setting("auto", "auto (bfloat16 on CUDA and on CPUs with bfloat16 instructions, else float32), "
                         "float32, float16 or bfloat16.")
    backend: str = setting("transformers", "transformers (CPU or GPU) or vllm (GPU, when installed).",
                           choices=BACKENDS)

    def sampling(self) -> GenerateParams:
        """The sampling part alone: what is stored with every generations row."""
        return GenerateParams(**{f.name: getattr(self, f.name) for f in fields(GenerateParams)})


@dataclass
class Prompt:
    key: str  # the smallest pair_id that has this prompt: stable across workspaces
    text: str
    pair_ids: list[str]
    ids: list[int] = field(default_factory=list)  # token ids after formatting and truncation
    truncated: bool = False


@dataclass
class GenerateResult:
    policy: str
    branch: str
    iteration: int
    backend: str
    prompts: int = 0
    pairs: int = 0
    batches: int = 0
    batches_done_before: int = 0
    generated_prompts: int = 0
    rows: int = 0
    new_tokens: int = 0
    truncated: int = 0
    replaced: int = 0
    seconds: float = 0.0  # the whole step: selection, model load, generation, commits
    generate_seconds: float = 0.0  # inside the backend's generate calls only
    manifest: str = ""


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


# -- selection --------------------------------------------------------------------------------------
def select_prompts(ws: Workspace, where: str | None, limit: int | None, fraction: float | None,
                   seed: int, split: str | None = None, role: str | None = "pref") -> list[Prompt]:
    """The distinct prompts of the pref pairs (of `split`, matching `where`), a deterministic sample by seed.
    role None: the pairs of either role (held-out prompts to evaluate policies on)."""
    import duckdb

    if limit is not None and limit < 1:
        raise CurateError(f"--limit must be at least 1; got {limit}.")
    if fraction is not None and not 0 < fraction <= 1:
        raise CurateError(f"--sample-fraction must be in (0, 1]; got {fraction}.")
    with ws.connect() as con:
        try:
            rows = con.execute(SELECT_SQL.format(where=where or "true"), {"split": split, "role": role}).fetchall()
        except duckdb.Error as e:
            raise CurateError(f"--where {where!r} failed: {str(e).strip()} (it is a SQL predicate on the pairs "
                              "table, e.g. \"len(prompt) < 2000 and source like '%harmless%'\").") from None
    prompts = [Prompt(ids[0], text, ids) for text, ids in rows]
    # a deterministic sample: order by a hash of (key, seed); the first N, or those under the fraction
    rank = {p.key: hashlib.sha256(f"{seed}:{p.key}".encode()).hexdigest() for p in prompts}
    prompts.sort(key=lambda p: rank[p.key])
    if fraction is not None:
        prompts = [p for p in prompts if int(rank[p.key][:12], 16) / 16**12 < fraction]
    if limit is not None:
        prompts = prompts[:limit]
    return prompts


# -- backends ---------------------------------------------------------------------------------------
class TransformersBackend:
    name = "transformers"

    def __init__(self, model, tokenizer, device: str, dtype: str):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype

    def window(self) -> int | None:
        return window(self.model)

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
        return [[response_text(texts[i * p.samples + s]) for s in range(p.samples)] for i in range(len(batch))], n_tokens


class VllmBackend:
    """vLLM on a GPU machine: it schedules its own batches; we hand it one batch of the plan at a time."""

    name = "vllm"

    def __init__(self, folder: str, tokenizer, dtype: str, seed: int):
        try:
            from vllm import LLM
        except ImportError:
            raise CurateError("--backend vllm needs vLLM (pip install vllm) on a machine with a supported GPU; "
                              "the default --backend transformers runs anywhere.") from None
        self.tokenizer = tokenizer
        self.dtype = "auto" if dtype == "auto" else dtype
        self.llm = LLM(model=folder, dtype=self.dtype, seed=seed)
        self.device = "cuda"

    def window(self) -> int | None:
        return self.llm.llm_engine.model_config.max_model_len

    def generate(self, batch: list[Prompt], p: GenerateParams, seed: int) -> tuple[list[list[str]], int]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sp = SamplingParams(n=p.samples, max_tokens=p.max_new_tokens, stop=[STOP], seed=seed,
                            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k if p.top_k else -1)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=x.ids) for x in batch], sp, use_tqdm=False)
        texts = [[response_text(c.text) for c in o.outputs] for o in outs]
        return texts, sum(len(c.token_ids) for o in outs for c in o.outputs)


# -- the step ---------------------------------------------------------------------------------------
def generate(
    ws: Workspace,
    model: str = "smollm2-135m",
    *,
    iteration: int,
    branch: str = "main",
    params: GenerateParams | None = None,
    revision: str | None = None,
    backend: str = GenerateSettings.backend,
    device: str | None = None,
    dtype: str = GenerateSettings.dtype,
    batch_size: int = GenerateSettings.batch_size,
    shard_size: int = 256,
    where: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    sample_fraction: float | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], Callable[[int, int], None]] | None = None,
    loaded=None,
    prompts: list[Prompt] | None = None,
) -> GenerateResult:
    """Generate for every selected prompt that has no samples yet in (branch, iteration); see the module doc.

    `loaded` (a (PolicyRef, model, tokenizer) triple) skips resolving and loading, for tests and callers
    that hold the model already. `prompts` replaces the selection (where, split, limit, sample_fraction): the
    held-out prompts `curate eval winrate` compares policies on (their pair_ids may be prompt keys, not pairs).
    """
    import polars as pl

    from .generations import _drop_iteration, _existing

    p = params or GenerateParams()
    p.check()
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
        raise CurateError(f"--iteration {iteration!r}: iterations are numbered from 1.")
    if backend not in BACKENDS:
        raise CurateError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}.")
    if batch_size < 1 or shard_size < 1:
        raise CurateError("--batch-size and --shard-size must be at least 1.")
    ws.require()
    t0 = time.perf_counter()
    if prompts is None:
        prompts = select_prompts(ws, where, limit, sample_fraction, p.seed, split)
    else:
        prompts = [Prompt(x.key, x.text, list(x.pair_ids)) for x in prompts]  # tokenizing fills them in
    if not prompts:
        raise CurateError("No pref prompts selected" + (f" by --where {where!r}" if where else "")
                          + ": nothing to generate (ingest pairs first, or widen the selection).")

    with ws.lock("curate generate"):
        if loaded is not None:
            ref, mdl, tok = loaded
        else:
            from .models import resolve_policy

            ref = resolve_policy(model, revision)
        policy = ref.model_id
        existing = _existing(ws, branch, iteration)
        others = sorted(set(existing["policy"].unique().to_list()) - {policy}) if existing.height else []
        if others and not overwrite:  # checked before the model loads
            raise CurateError(_other_policy(branch, iteration, existing.height, others, model, ref))
        if loaded is not None:
            engine = TransformersBackend(mdl, tok, str(mdl.device), str(mdl.dtype).replace("torch.", ""))
        elif backend == "vllm":
            from transformers import AutoTokenizer

            engine = VllmBackend(str(ref.folder), AutoTokenizer.from_pretrained(str(ref.folder)), dtype, p.seed)
        else:
            from .policy import load_policy

            lp = load_policy(ref, device, dtype)
            engine = TransformersBackend(lp.model, lp.tokenizer, lp.device, lp.dtype)
        row_params = {**asdict(p), "backend": engine.name, "dtype": engine.dtype}
        res = GenerateResult(policy, branch, iteration, engine.name, prompts=len(prompts),
                             pairs=sum(len(x.pair_ids) for x in prompts))
        mine = existing.filter(pl.col("policy") == policy) if existing.height else existing
        if mine.height and not overwrite:
            old = _stored_params(ws, branch, iteration, policy)
            differ = {k: (old.get(k), v) for k, v in row_params.items() if k in old and old.get(k) != v}
            if differ:
                raise CurateError(
                    f"branch {branch!r}, iteration {iteration} holds generations of this policy made with other "
                    "settings (" + ", ".join(f"{k}: {a} then, {b} now" for k, (a, b) in differ.items())
                    + "). Rerun with the same arguments to resume, or pass --overwrite to start again.")

        window_ = engine.window()
        max_prompt = None if window_ is None else window_ - p.max_new_tokens
        if max_prompt is not None and max_prompt < 1:
            raise CurateError(f"--max-new-tokens {p.max_new_tokens} does not fit the model's window of {window_} "
                              "tokens.")
        res.truncated = tokenize_prompts(prompts, engine.tokenizer, p.chat_template, max_prompt)
        plan = batch_plan(prompts, batch_size)
        res.batches = len(plan)
        done_pairs = set() if overwrite else set(mine["pair_id"].unique().to_list()) if mine.height else set()
        todo = [(b, batch) for b, batch in enumerate(plan)
                if overwrite or not all(pid in done_pairs for x in batch for pid in x.pair_ids)]
        res.batches_done_before = len(plan) - len(todo)
        advance = progress(sum(len(batch) for _, batch in todo), res.batches_done_before) if progress else None
        replace_first = overwrite and existing.height > 0
        res.replaced = existing.height if replace_first else 0
        pending: list[dict] = []

        def commit() -> None:
            nonlocal replace_first
            if not pending and not replace_first:
                return
            with ws.transaction("curate generate") as tx:
                if replace_first:
                    _drop_iteration(ws, tx, branch, iteration)
                    replace_first = False
                if pending:
                    tx.add("generations", pl.DataFrame(pending).select(
                        "branch", pl.col("iteration").cast(pl.Int32), "pair_id", pl.col("sample").cast(pl.Int32),
                        "text", "policy", "params").sort("pair_id", "sample"))
            pending.clear()

        in_shard = 0
        for b, batch in todo:
            tb = time.perf_counter()
            texts, n_tok = engine.generate(batch, p, batch_seed(p.seed, b))
            res.generate_seconds += time.perf_counter() - tb
            res.new_tokens += n_tok
            for x, samples in zip(batch, texts):
                rp = json.dumps({**row_params, "prompt_truncated": x.truncated, "prompt_tokens": len(x.ids)},
                                sort_keys=True)
                for pid in x.pair_ids:
                    for s, text in enumerate(samples):
                        pending.append({"branch": branch, "iteration": iteration, "pair_id": pid, "sample": s,
                                        "text": text, "policy": policy, "params": rp})
            res.generated_prompts += len(batch)
            res.rows += sum(len(x.pair_ids) for x in batch) * p.samples
            in_shard += len(batch)
            if advance:
                advance(len(batch), n_tok)
            if in_shard >= shard_size:
                commit()
                in_shard = 0
        commit()
        res.seconds = time.perf_counter() - t0
        res.manifest = str(ws.write_manifest("generate", new_id(), {
            "step": "generate", "created_at": utcnow(), "branch": branch, "iteration": iteration,
            "policy": {"policy_id": policy, "name": ref.name, "source": ref.source, "revision": ref.revision,
                       "identity": ref.identity},
            "backend": engine.name, "device": engine.device, "dtype": engine.dtype, "params": asdict(p),
            "selection": {"split": split, "where": where, "limit": limit, "sample_fraction": sample_fraction},
            "batch_size": batch_size, "shard_size": shard_size, "overwrite": overwrite,
            "counts": {"prompts": res.prompts, "pairs": res.pairs, "batches": res.batches,
                       "batches_done_before": res.batches_done_before, "generated_prompts": res.generated_prompts,
                       "rows": res.rows, "new_tokens": res.new_tokens, "truncated_prompts": res.truncated,
                       "replaced": res.replaced},
            "seconds": round(res.seconds, 3), "generate_seconds": round(res.generate_seconds, 3),
            "versions": versions(),
        }))
    return res


def _other_policy(branch: str, iteration: int, n: int, others: list[str], model: str, ref) -> str:
    """Why (branch, iteration) refuses this model's samples, and how the stored policy differs from it."""
    head = f"branch {branch!r}, iteration {iteration} already has {n:,} generations from policy {', '.join(others)}"
    fix = "Generate into another --iteration or --branch, or pass --overwrite to replace them."
    named = [o for o in others if o in (model, ref.name)]
    if named:  # `generations import --policy NAME` stored the label NAME; a model resolves to name + identity hash
        return (f"{head}: a label given to `curate generations import --policy {named[0]}`. --model {model} resolves "
                f"to the model {ref.model_id} (its name and the hashes of its weights, config and tokenizer), and one "
                f"iteration holds one policy's samples. {fix} Importing with --policy {ref.model_id} records the same "
                "identity.")
    return f"{head}, not {ref.model_id}. {fix}"


def _stored_params(ws: Workspace, branch: str, iteration: int, policy: str) -> dict:
    """The sampling settings an earlier run of this policy stored (without the per-row fields)."""
    with ws.connect() as con:
        row = con.execute("select params from generations where branch = $b and iteration = $i and policy = $p "
                          "limit 1", {"b": branch, "i": iteration, "p": policy}).fetchall()
    if not row:
        return {}
    try:
        old = json.loads(row[0][0])
    except (TypeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in old.items() if k not in ("prompt_truncated", "prompt_tokens")}
