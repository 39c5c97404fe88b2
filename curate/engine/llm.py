"""`curate generate --engine ray --backend vllm`: vLLM replicas on the cluster's GPUs through ray.data.llm.

ray.data.llm (vLLMEngineProcessorConfig + build_processor) runs one vLLM engine per replica (`--actors`, each on
`--gpus-per-actor` GPUs as its tensor-parallel size) and feeds it rows. curate sends each (prompt, sample) as one
row of token ids (the driver tokenized them, so the ids are those of the batch plan) with its own seed, derived
from (seed, batch, prompt key, sample): a row's sample does not depend on which replica ran it nor on what was
batched with it. These seeds are per row, so samples differ from the single-machine vLLM backend's (one request
per batch with the batch's seed); the rows record backend "vllm-ray". The driver groups the returned rows by shard
and commits a shard once all its rows are back, keeping only rows whose keys are still missing.

Written against ray 2.60's ray.data.llm; NOT run in this project's CI (no GPU there): see the README.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from ..errors import CurateError
from ..generate_job import DriverTokenizer
from ..sampling import response_text


def row_seed(seed: int, b: int, key: str, sample: int) -> int:
    return int(hashlib.sha256(f"curate-generate:{seed}:{b}:{key}:{sample}".encode()).hexdigest()[:8], 16)


class VllmRayEngine(DriverTokenizer):
    """The driver's side: tokenizer and window for the plan (DriverTokenizer's); run() is the executor for the
    shards."""

    name = "vllm-ray"
    kind = "ray"

    def __init__(self, ref, dtype: str, ex, extra_args: str = ""):
        if not float(ex.resources.get("GPU", 0)):
            raise CurateError(f"--engine ray --backend vllm runs vLLM replicas on GPUs; the cluster at "
                              f"{ex.address or 'this machine'} has none. Use --backend transformers (actors on "
                              "CPUs) or a cluster with GPUs.")
        try:
            import ray.data.llm  # noqa: F401
        except ImportError as e:
            raise CurateError(f"--engine ray --backend vllm needs ray.data.llm and vLLM on the cluster "
                              f"(pip install 'ray[llm]'): {e}") from None
        super().__init__(ref, "cuda", dtype)
        self.ex, self.extra_args = ex, extra_args
        self.info = {**ex.info, "llm": "ray.data.llm vLLMEngineProcessorConfig"}

    def provenance(self) -> dict:
        return {"engine": "ray.data.llm", "replicas": self.ex.actors, "gpus_per_replica": self.ex.gpus_per_actor}

    def run(self, job, shards, on_done: Callable, advance: Callable | None = None, *, staging=None,
            state: Any = None) -> None:
        import shlex

        import ray.data
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        from ..generate_job import batch_rows, rows_frame

        p = job.params
        items, expected, prompts = [], {}, {}
        for shard in shards:
            expected[shard.name] = 0
            for b, batch in shard.payload:
                for x in batch:
                    prompts.setdefault(shard.name, []).append(x)
                    for s in range(p.samples):
                        items.append({"shard": shard.name, "key": x.key, "sample": s, "tokenized_prompt": x.ids,
                                      "seed": row_seed(p.seed, b, x.key, s)})
                        expected[shard.name] += 1
        if not items:
            return
        engine_kwargs: dict[str, Any] = {"dtype": self.dtype, "max_model_len": self.window(),
                                         "tensor_parallel_size": max(1, int(self.ex.gpus_per_actor))}
        args = shlex.split(self.extra_args)
        if "--enforce-eager" in args:
            engine_kwargs["enforce_eager"] = True
        config = vLLMEngineProcessorConfig(model_source=str(self.ref.folder), engine_kwargs=engine_kwargs,
                                           concurrency=self.ex.actors, batch_size=64, chat_template_stage=False,
                                           tokenize_stage=False, detokenize_stage=False)  # vLLM's own text
        processor = build_processor(
            config,
            preprocess=lambda row: dict(
                shard=row["shard"], key=row["key"], sample=row["sample"], tokenized_prompt=row["tokenized_prompt"],
                sampling_params=dict(seed=int(row["seed"]), max_tokens=p.max_new_tokens, temperature=p.temperature,
                                     top_p=p.top_p, top_k=p.top_k or -1, stop=["\n\nHuman:"])),
            postprocess=lambda row: dict(shard=row["shard"], key=row["key"], sample=row["sample"],
                                         text=row["generated_text"], tokens=len(row.get("generated_tokens") or [])),
        )
        pending: dict[str, dict] = {name: {} for name in expected}
        for row in processor(ray.data.from_items(items)).iter_rows():
            got = pending[row["shard"]]
            got[(row["key"], int(row["sample"]))] = (response_text(row["text"]), int(row["tokens"]))
            if len(got) < expected[row["shard"]]:
                continue
            name, rows, tokens, n = row["shard"], [], 0, 0
            for x in prompts.pop(name):  # this shard's prompts only: each shard is assembled once, when whole
                texts = [[got[(x.key, s)][0] for s in range(p.samples)]]
                tokens += sum(got[(x.key, s)][1] for s in range(p.samples))
                rows += batch_rows([x], texts, job.row_params, job.branch, job.iteration, job.policy)
                n += 1
            del pending[name]
            on_done(name, rows_frame(rows), {"tokens": tokens, "prompts": n})
            if advance is not None:
                advance(n, tokens)
