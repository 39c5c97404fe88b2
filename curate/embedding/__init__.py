"""`curate embed`: embed every response text once per model, in atomic shards.

    from curate.workspace import Workspace
    from curate.embedding import embed
    embed(Workspace("workspace"))                       # packaged all-MiniLM-L6-v2
    embed(Workspace("workspace"), model="AnnaWegmann/Style-Embedding")

Texts are the chosen and rejected responses of `pref` pairs and every generation. The cache key is
(text_hash = md5(text), model_id): a text is embedded once per model, ever; duplicates once. Each
shard of vectors is committed on its own, so an interrupted run resumes where it stopped.

The backend's precision is not part of that key. Every backend that writes vectors agrees with torch
fp32 to cosine >= 0.999 (calibrate.GATE): onnx runs the same fp32 network (> 0.99999, tests/test_embed.py),
and a reduced-precision one (onnx-int8, torch-bf16) writes only after passing the gate on every text of
a sample of the job, whether `auto` picked it or --backend forced it. Its vectors are interchangeable
with fp32's within that tolerance; keying by precision would re-embed a whole workspace whenever the
measured choice changes (another machine, a library upgrade) and leave `score` to pick among copies.
Each run's manifest records the backend and its measured agreement, so a mixed workspace can be told
apart.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

from ..engine import EngineSettings, Shard, commit_staged, executor, shard_name
from ..engine.staging import Staging
from ..errors import CurateError
from ..provenance import versions
from ..settings import setting
from ..workspace import Workspace, new_id, query_frame, utcnow
from .job import EmbedJob
from .model import BACKENDS, CANDIDATES, ModelRef, load_encoder, resolve

NEEDED_SQL = """
with texts as (
    select chosen as text from pairs where role = 'pref'
    union all select rejected from pairs where role = 'pref'
    union all select text from generations
),
distinct_texts as (
    select md5(text) as text_hash, any_value(text) as text
    from texts where trim(text) <> '' group by 1
),
cached as (select text_hash from embeddings where model_id = $model_id)
select d.text_hash, d.text
from distinct_texts d anti join cached c using (text_hash)
order by length(d.text) desc, d.text_hash
"""

COUNTS_SQL = """
with texts as (
    select chosen as text from pairs where role = 'pref'
    union all select rejected from pairs where role = 'pref'
    union all select text from generations
)
select count(distinct md5(text)) filter (where trim(text) <> ''),
       count(*) filter (where trim(text) = '')
from texts
"""


@dataclass
class EmbedSettings:
    """`curate embed`'s model options and `curate run`'s [embed] section."""

    model: str = setting("default", "sentence-transformers model: a Hub id (e.g. AnnaWegmann/Style-Embedding, the "
                         "paper's), a folder, or 'default' (packaged all-MiniLM-L6-v2, offline).", short="-m",
                         paper="FRFT paper, section 5.2: Style-Embedding")
    backend: str = setting("auto", "auto: the fastest backend on this machine that agrees with torch fp32 to "
                           "cosine >= 0.999, calibrated once per machine, model and batch size and cached.",
                           choices=BACKENDS)
    batch_size: int = setting(32, "Texts per forward pass.")


@dataclass
class EmbedResult:
    model_id: str
    model: str
    backend: str | None = None
    backend_choice: dict | None = None  # auto's measurement (calibrate.Choice.manifest()), or forced
    distinct_texts: int = 0
    cached: int = 0
    embedded: int = 0
    recovered: int = 0  # committed from shards an interrupted --engine ray run had staged
    empty_skipped: int = 0
    seconds: float = 0.0
    shards: list[str] = field(default_factory=list)


def embed(
    ws: Workspace,
    model: str | None = None,
    *,
    revision: str | None = None,
    backend: str = EmbedSettings.backend,
    device: str | None = None,
    batch_size: int = EmbedSettings.batch_size,
    shard_size: int = 2048,
    limit: int | None = None,
    recalibrate: bool = False,
    progress: Callable[[int], Callable[[int], None]] | None = None,
    engine: EngineSettings | None = None,
) -> EmbedResult:
    """Embed every text that has no vector for this model yet; returns what was done.

    engine: where the shards are encoded (curate.engine; default this process). Whatever runs them, this driver
    computes the to-do list, names the shards by their texts' hashes and commits each shard's rows whose text
    still lacks a vector; shards a killed --engine ray run left staged are committed first."""
    import polars as pl

    ws.require().check_writable()
    if batch_size < 1 or shard_size < 1:
        raise CurateError("--batch-size and --shard-size must be at least 1.")
    ref = resolve(model, revision)
    model_id = ref.model_id
    t0 = time.perf_counter()
    with ws.lock("curate embed"):
        with ws.connect() as con:
            distinct, empty = con.execute(COUNTS_SQL).fetchall()[0]
            todo = query_frame(con, NEEDED_SQL, {"model_id": model_id})
        res = EmbedResult(model_id, ref.name, distinct_texts=distinct, cached=distinct - len(todo), empty_skipped=empty)
        missing = set(todo["text_hash"].to_list())
        backends: set[str] = set()
        shard_log: list[dict] = []

        def on_done(name: str, rows, info: dict) -> None:
            """Commit the rows whose text still lacks a vector: a retried or recovered shard adds no key twice."""
            keep = rows.filter(pl.Series([h in missing for h in rows["text_hash"].to_list()], dtype=pl.Boolean))
            shard_log.append({"shard": name, **{k: v for k, v in info.items() if k != "units"},
                              "committed": keep.height})
            if "backend" in info:
                backends.add(info["backend"])
            if keep.height == 0:
                return
            if not ref.identity.get("dim"):  # a Dense head: its size is known once a worker loaded the model
                ref.identity["dim"] = keep["vector"].dtype.size
                _check_dim(ws, ref)
            with ws.transaction("curate embed") as tx:  # one commit per shard: an interrupt loses one shard at most
                if not res.shards:
                    _register(ws, tx, ref)
                res.shards.append(str(tx.add("embeddings", keep, key=model_id)))
            missing.difference_update(keep["text_hash"].to_list())
            if info.get("recovered"):
                res.recovered += keep.height
            else:
                res.embedded += keep.height

        staging = Staging.of(ws, "embed", model_id)
        if commit_staged(staging, on_done):
            todo = todo.filter(pl.Series([h in missing for h in todo["text_hash"].to_list()], dtype=pl.Boolean))
        if limit is not None:
            todo = todo.head(limit)
        if todo.height == 0 and not res.recovered:
            res.seconds = time.perf_counter() - t0
            return res
        # recovered shards alone (the killed run had staged the rest): nothing to run, the manifest still says so
        ex = executor(engine if todo.height else None)
        try:
            job = EmbedJob(ref, backend, device, batch_size, recalibrate=recalibrate)
            state = None
            if todo.height and ex.kind == "local":  # calibrated here, on the texts about to be embedded
                state = load_encoder(ref, backend, device, batch_size=batch_size, sample_texts=todo["text"].to_list(),
                                     recalibrate=recalibrate)
                res.backend = state.backend
                res.backend_choice = state.choice.manifest() if state.choice else {"backend": state.backend,
                                                                                   "source": "forced"}
            elif todo.height:  # each actor measures or gates on the same sample, on its own machine
                job.device = device or ex.device
                if backend == "auto" or CANDIDATES[backend].gated:
                    job.sample_texts = todo["text"].head(256).to_list()
            if ref.identity.get("dim"):
                _check_dim(ws, ref)
            advance = progress(todo.height) if progress else None
            shards = [Shard(shard_name(model_id, part["text_hash"].to_list()),
                            (part["text_hash"].to_list(), part["text"].to_list()), part.height)
                      for part in (todo.slice(i, shard_size) for i in range(0, todo.height, shard_size))]
            ex.run(job, shards, on_done, advance, staging=staging, state=state)
            engine_info = dict(ex.info)
            staging.clear()  # every shard is committed: what is left there (to-do lists, a killed write) is spent
        finally:
            ex.close()
        if ex.kind != "local":
            res.backend = ",".join(sorted(backends)) or None
            res.backend_choice = {"backend": res.backend, "source": "per actor" if backend == "auto" else "forced"}
        res.seconds = time.perf_counter() - t0
        ws.write_manifest(
            "embed",
            new_id(),
            {
                "step": "embed",
                "created_at": utcnow(),
                "model_id": model_id,
                "identity": ref.identity,
                "backend": res.backend,
                "backend_choice": res.backend_choice,
                "device": device,
                "batch_size": batch_size,
                "engine": {**engine_info, "shards": shard_log if ex.kind != "local" else len(shard_log)},
                "counts": {"distinct_texts": distinct, "embedded": res.embedded, "cached": res.cached,
                           "recovered_from_staging": res.recovered, "empty_skipped": empty},
                "seconds": round(res.seconds, 3),
                "versions": versions(),
            },
        )
    return res


def _check_dim(ws: Workspace, ref: ModelRef) -> None:
    import polars as pl

    files = ws.files("embedding_models")
    if not files:
        return
    known = pl.read_parquet(files).filter(pl.col("model_id") == ref.model_id)
    if known.height and int(known["dim"][0]) != ref.dim:
        raise CurateError(
            f"Dimension mismatch for {ref.model_id}: the workspace holds {known['dim'][0]}-d vectors, the model "
            f"now gives {ref.dim}-d. The model files changed under the same identity; remove "
            f"the old vectors (or use a fresh workspace) before embedding again."
        )


def _register(ws: Workspace, tx, ref: ModelRef) -> None:
    import polars as pl

    files = ws.files("embedding_models")
    if files and pl.read_parquet(files).filter(pl.col("model_id") == ref.model_id).height:
        return
    from datetime import datetime, timezone

    tx.add(
        "embedding_models",
        pl.DataFrame(
            {
                "model_id": [ref.model_id],
                "name": [ref.name],
                "revision": [ref.revision],
                "weights_sha256": [ref.identity["weights_sha256"]],
                "pooling": [ref.identity["pooling"]],
                "max_seq_length": [ref.identity["max_seq_length"]],
                "dim": [ref.dim],
                "identity": [json.dumps(ref.identity, sort_keys=True)],
                "created_at": [datetime.now(timezone.utc)],
            }
        ),
    )


def model_id_for(ws: Workspace, model: str | None) -> str:
    """The model_id to score with: --model resolved, or the only model the workspace has vectors for."""
    import polars as pl

    if model is not None:
        return resolve(model).model_id
    files = ws.files("embedding_models")
    ids = pl.read_parquet(files)["model_id"].unique().to_list() if files else []
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise CurateError("No embeddings in the workspace yet: run `curate embed` first.")
    raise CurateError(f"The workspace has vectors from several models ({', '.join(sorted(ids))}); "
                      "pick one with --model.")
