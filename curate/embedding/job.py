"""`curate embed`'s unit of work, the same for every executor (curate.engine): encode one shard of texts.

    job = EmbedJob(ref, "torch", None, 32)
    encoder = job.load()                                   # once per process or Ray actor
    rows, info = job.run(encoder, (hashes, texts), advance)  # text_hash, model_id, vector

The rows carry their key (text_hash), so the driver can commit them in any order and drop any it has already.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CurateError
from .model import ModelRef, load_encoder


def encode_shard(encoder, ref: ModelRef, hashes: list[str], texts: list[str], batch_size: int, on_batch=None):
    """The shard's rows: (text_hash, model_id, vector) with float32 unit vectors of the model's size."""
    import polars as pl

    vecs = encoder.encode(texts, batch_size=batch_size, on_batch=on_batch)  # on_batch(n) per batch
    dim = ref.identity.get("dim") or vecs.shape[1]
    if vecs.shape[1] != dim:
        raise CurateError(f"{ref.name} returned {vecs.shape[1]}-d vectors, expected {dim}.")
    return pl.DataFrame({
        "text_hash": pl.Series(hashes, dtype=pl.String),
        "model_id": pl.Series([ref.model_id] * len(hashes), dtype=pl.String),
        "vector": pl.Series(vecs, dtype=pl.Array(pl.Float32, dim)),
    })


@dataclass
class EmbedJob:
    """What a worker needs to embed shards: the model's folder and identity (a path every node sees), the backend
    and the batch size. sample_texts: texts `auto` calibrates on and a forced reduced-precision backend is gated on,
    where the worker loads it (each machine measures its own choice, cached there)."""

    ref: ModelRef
    backend: str
    device: str | None
    batch_size: int
    sample_texts: list[str] = field(default_factory=list)
    recalibrate: bool = False  # --recalibrate: measure again on each worker's machine, not its cached choice
    step: str = "embed"

    def load(self):
        return load_encoder(self.ref, self.backend, self.device, batch_size=self.batch_size,
                            sample_texts=self.sample_texts or None, recalibrate=self.recalibrate)

    def run(self, encoder, payload: tuple[list[str], list[str]], advance=None):
        hashes, texts = payload
        rows = encode_shard(encoder, self.ref, hashes, texts, self.batch_size, advance)
        return rows, {"units": (len(hashes),), "backend": encoder.backend}
