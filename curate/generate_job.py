"""`curate generate`'s unit of work, the same for every executor (curate.engine): sample a shard of the batch plan.

    job = GenerateJob(ref, "cpu", "float32", params, row_params, "main", 1, policy_id)
    backend = job.load()                                   # once per Ray actor (the local step passes its own)
    rows, info = job.run(backend, [(b, batch), ...], advance)

Batch b of the plan is sampled with batch_seed(seed, b) whichever process runs it, so a shard's rows do not depend
on the worker; they carry their keys (branch, iteration, pair_id, sample), so the driver commits them in any order.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .sampling import GenerateParams, Prompt, batch_seed, window


def batch_rows(batch: list[Prompt], texts: list[list[str]], row_params: dict, branch: str, iteration: int,
               policy: str) -> list[dict]:
    """The generations rows of one sampled batch: one per (pair sharing the prompt, sample)."""
    out = []
    for x, samples in zip(batch, texts):
        rp = json.dumps({**row_params, "prompt_truncated": x.truncated, "prompt_tokens": len(x.ids)}, sort_keys=True)
        for pid in x.pair_ids:
            for s, text in enumerate(samples):
                out.append({"branch": branch, "iteration": iteration, "pair_id": pid, "sample": s, "text": text,
                            "policy": policy, "params": rp})
    return out


def rows_frame(rows: list[dict]):
    """Rows as the generations table's columns, sorted by key."""
    import polars as pl

    return pl.DataFrame(rows).select(
        "branch", pl.col("iteration").cast(pl.Int32), "pair_id", pl.col("sample").cast(pl.Int32),
        "text", "policy", "params").sort("pair_id", "sample")


@dataclass
class GenerateJob:
    """What a worker needs to sample shards with transformers: the policy (a folder every node sees), the device and
    the dtype the driver resolved, the sampling settings and what every row records."""

    ref: Any  # curate.models.ModelRef
    device: str
    dtype: str
    params: GenerateParams
    row_params: dict
    branch: str
    iteration: int
    policy: str
    step: str = "generate"

    def load(self):
        from .sampling import transformers_engine

        return transformers_engine(self.ref, self.device, self.dtype)

    def run(self, backend, payload: list[tuple[int, list[Prompt]]], advance=None):
        rows: list[dict] = []
        tokens, seconds, prompts = 0, 0.0, 0
        for b, batch in payload:
            t0 = time.perf_counter()
            texts, n_tok = backend.generate(batch, self.params, batch_seed(self.params.seed, b))
            seconds += time.perf_counter() - t0
            tokens += n_tok
            prompts += len(batch)
            rows += batch_rows(batch, texts, self.row_params, self.branch, self.iteration, self.policy)
            if advance is not None:
                advance(len(batch), n_tok)
        return rows_frame(rows), {"units": (prompts, tokens), "tokens": tokens, "prompts": prompts,
                                  "generate_seconds": round(seconds, 3)}


class DriverTokenizer:
    """The driver's side of a Ray generation: the policy's tokenizer and window for the batch plan, and the device
    and dtype the actors will use (resolved here, so every actor and every row agrees); no weights are loaded."""

    name = "transformers"

    def __init__(self, ref, device: str, dtype: str):
        from transformers import AutoTokenizer

        from .policy import resolve_dtype

        self.ref, self.device = ref, device
        self.dtype = resolve_dtype(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(str(ref.folder), padding_side="left")

    def window(self) -> int | None:
        from types import SimpleNamespace

        config = json.loads((self.ref.folder / "config.json").read_text())
        return window(SimpleNamespace(config=SimpleNamespace(**config)))

    def open(self, batches, p) -> None:
        pass

    def close(self) -> None:
        pass

    def provenance(self) -> None:
        return None
