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

from ..errors import CurateError
from ..provenance import versions
from ..settings import setting
from ..workspace import Workspace, new_id, query_frame, utcnow
from .model import BACKENDS, ModelRef, load_encoder, resolve

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
) -> EmbedResult:
    """Embed every text that has no vector for this model yet; returns what was done."""
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
        if limit is not None:
            todo = todo.head(limit)
        if todo.height == 0:
            res.seconds = time.perf_counter() - t0
            return res
        encoder = load_encoder(ref, backend, device, batch_size=batch_size, sample_texts=todo["text"].to_list(),
                               recalibrate=recalibrate)
        res.backend = encoder.backend
        res.backend_choice = encoder.choice.manifest() if encoder.choice else {"backend": encoder.backend,
                                                                                "source": "forced"}
        _check_dim(ws, ref)
        advance = progress(todo.height) if progress else (lambda n: None)
        run_id = new_id()
        for start in range(0, todo.height, shard_size):
            part = todo.slice(start, shard_size)
            vecs = encoder.encode(part["text"].to_list(), batch_size=batch_size, on_batch=advance)  # per batch
            if vecs.shape[1] != ref.dim:
                raise CurateError(f"{ref.name} returned {vecs.shape[1]}-d vectors, expected {ref.dim}.")
            shard = pl.DataFrame(
                {
                    "text_hash": part["text_hash"],
                    "model_id": pl.Series([model_id] * part.height, dtype=pl.String),
                    "vector": pl.Series(vecs, dtype=pl.Array(pl.Float32, ref.dim)),
                }
            )
            with ws.transaction("curate embed") as tx:  # one commit per shard: an interrupt loses one shard at most
                if start == 0:
                    _register(ws, tx, ref)
                res.shards.append(str(tx.add("embeddings", shard, key=model_id)))
            res.embedded += part.height
        res.seconds = time.perf_counter() - t0
        ws.write_manifest(
            "embed",
            run_id,
            {
                "step": "embed",
                "created_at": utcnow(),
                "model_id": model_id,
                "identity": ref.identity,
                "backend": res.backend,
                "backend_choice": res.backend_choice,
                "device": device,
                "batch_size": batch_size,
                "counts": {"distinct_texts": distinct, "embedded": res.embedded, "cached": res.cached,
                           "empty_skipped": empty},
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
