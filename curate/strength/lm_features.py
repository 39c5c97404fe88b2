"""`curate strength --features lm:MODEL`: a causal LM's view of prompt + response, for the probe.

Response embeddings never see the question. Here each side of a pair is the transcript prompt + response run
through a causal LM (the packaged SmolLM2-135M, the SFT policy, any Hub id), and phi is the last hidden layer
averaged over the response's tokens (on the shared file's first 800 pairs this found planted flips better than
the last token's state: AUROC 0.671 against 0.622; README, Benchmarks). Prompts are cut from the left so a
transcript fits `MAX_TOKENS` (or the model's context, if shorter); a longer response keeps its first tokens.

The vectors are cached like the embeddings, by text and model identity: Parquet shards of (text_hash, vector)
under <workspace>/strength/representations/<model_id>/, text_hash = md5(prompt || '\\x1f' || response). A shard
is written whole (temp file, rename) every SHARD texts, so an interrupted run keeps its finished shards and a
rerun computes only what is missing.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..atomic import staged_file
from ..errors import CurateError
from ..workspace import Workspace, new_id, query_frame
from .features import NO_PAIRS, Features

if TYPE_CHECKING:
    pass

PREFIX = "lm:"
MAX_TOKENS = 256  # what the measurement above used: HH-RLHF harmless transcripts average about 140 tokens
BATCH = 16
SHARD = 512
SEP = "\x1f"

PAIRS_SQL = "select pair_id, prompt, chosen, rejected from pairs where role = 'pref' order by pair_id"


def text_key(prompt: str, response: str) -> str:
    return hashlib.md5((prompt + SEP + response).encode("utf-8")).hexdigest()


def representation_id(ref) -> str:
    """The cache key of the representation: the LM's model_id (its files' identity) and the pooling."""
    return f"{ref.model_id}-meanh"


def resolve(spec: str):
    from ..models import resolve_policy

    return resolve_policy(spec, option="--features lm:")


def from_lm(ws: Workspace, spec: str, progress: Callable[[str, int], Callable[[int], None]] | None = None,
            device: str | None = None) -> Features:
    """x = phi(prompt, chosen) - phi(prompt, rejected) of every pref pair, phi cached per (text, model)."""
    ref = resolve(spec)
    rep_id = representation_id(ref)
    with ws.connect() as con:
        pairs = query_frame(con, PAIRS_SQL)
    if pairs.height == 0:
        raise CurateError(NO_PAIRS)
    folder = ws.root / "strength" / "representations" / rep_id
    cached = _load(folder)
    sides = {}
    for side in ("chosen", "rejected"):
        sides[side] = [text_key(p, r) for p, r in zip(pairs["prompt"], pairs[side])]
    todo = {}
    for side in ("chosen", "rejected"):
        for key, p, r in zip(sides[side], pairs["prompt"], pairs[side]):
            if key not in cached and key not in todo:
                todo[key] = (p, r)
    computed = len(todo)
    if todo:
        cached.update(_compute(ref, list(todo.items()), folder, progress, device))
    x = np.stack([cached[k] for k in sides["chosen"]]) - np.stack([cached[k] for k in sides["rejected"]])
    return Features(pairs["pair_id"].to_list(), x, rep_id,
                    {"pairs": pairs.height, "representations_computed_now": computed, "max_tokens": MAX_TOKENS,
                     "model": ref.name, "model_source": ref.source, "pooling": "mean of the response tokens, last "
                     "hidden layer"})


def _load(folder) -> dict[str, np.ndarray]:
    import polars as pl

    out: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        df = pl.read_parquet(f)
        vecs = df["vector"].to_numpy()
        out.update(zip(df["text_hash"].to_list(), vecs))
    return out


def _compute(ref, items: list, folder, progress, device) -> dict[str, np.ndarray]:
    """Run the LM over the texts still missing, in length-sorted batches; write a shard every SHARD texts."""
    import torch

    from ..policy import load_policy

    loaded = load_policy(ref, device=device, dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    limit = min(MAX_TOKENS, getattr(model.config, "max_position_embeddings", None) or MAX_TOKENS)
    advance = progress("LM representations", len(items)) if progress else (lambda n: None)
    order = sorted(range(len(items)), key=lambda i: len(items[i][1][0]) + len(items[i][1][1]))
    out, pending = {}, []
    folder.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for start in range(0, len(order), BATCH):
            batch = [items[i] for i in order[start:start + BATCH]]
            seqs, n_resp = [], []
            for _, (prompt, response) in batch:
                p = tok(prompt, add_special_tokens=False)["input_ids"]
                r = tok(response, add_special_tokens=False)["input_ids"][:limit - 1] or [tok.eos_token_id]
                seqs.append((p + r)[-limit:])
                n_resp.append(len(r))
            width = max(map(len, seqs))
            ids = torch.full((len(seqs), width), tok.pad_token_id)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for j, s in enumerate(seqs):  # left padding: every row's last token is at the right edge
                ids[j, width - len(s):] = torch.tensor(s)
                mask[j, width - len(s):] = 1
            hidden = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                           output_hidden_states=True).hidden_states[-1].float().cpu()
            for j, (key, _) in enumerate(batch):
                vec = hidden[j, width - n_resp[j]:].mean(0).numpy()
                out[key] = vec
                pending.append((key, vec))
            advance(len(batch))
            if len(pending) >= SHARD:
                _write(folder, pending)
                pending = []
    if pending:
        _write(folder, pending)
    return out


def _write(folder, rows: list) -> None:
    import polars as pl

    dim = len(rows[0][1])
    df = pl.DataFrame({"text_hash": [k for k, _ in rows],
                       "vector": pl.Series(np.stack([v for _, v in rows]), dtype=pl.Array(pl.Float32, dim))})
    with staged_file(folder / f"{new_id()}.parquet") as tmp:
        df.write_parquet(tmp)
