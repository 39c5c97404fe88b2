"""Representations the probe reads: x = phi(prompt, chosen) - phi(prompt, rejected), one row per pref pair.

`embeddings` (the default): the sentence-embedding vectors `curate embed` stores for every chosen and rejected
response, read from the `embeddings` table (texts without a vector yet are embedded first, through the same
library call, so a second run costs nothing). An empty response has no vector (embed skips empty texts); it
counts as the zero vector and the manifest says how many pairs had one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import CurateError
from ..workspace import Workspace, query_frame

if TYPE_CHECKING:
    import polars as pl

NO_PAIRS = ("The workspace has no preference pairs (role 'pref'): ingest some with `curate ingest`, or lower "
            "--sft-fraction so that some pairs are for preferences.")
VECTORS_SQL = """
select p.pair_id, c.vector as vc, r.vector as vr
from (select * from pairs where role = 'pref') p
left join (select text_hash, vector from embeddings where model_id = $model_id) c on c.text_hash = md5(p.chosen)
left join (select text_hash, vector from embeddings where model_id = $model_id) r on r.text_hash = md5(p.rejected)
order by p.pair_id
"""


@dataclass
class Features:
    pair_ids: list[str]
    x: np.ndarray  # (n, dim): phi(chosen) - phi(rejected)
    identity: str  # what computed phi: the model_id of the vectors
    counts: dict


def from_embeddings(ws: Workspace, model: str | None, *, embed_missing: bool = True,
                    progress: Callable[[int], Callable[[int], None]] | None = None) -> Features:
    """x from the stored response embeddings of `model` (default: the packaged all-MiniLM-L6-v2)."""
    from ..embedding import embed, resolve

    ref = resolve(model)
    embedded = 0
    if embed_missing:
        embedded = embed(ws, model, progress=progress).embedded
    with ws.connect() as con:
        df = query_frame(con, VECTORS_SQL, {"model_id": ref.model_id})
    return _difference(df, ref.dim, ref.model_id, embedded)


def _difference(df: "pl.DataFrame", dim: int, model_id: str, embedded: int) -> Features:
    if df.height == 0:
        raise CurateError(NO_PAIRS)
    vc, vr = _matrix(df["vc"], dim), _matrix(df["vr"], dim)
    empty = int((df["vc"].is_null() | df["vr"].is_null()).sum())
    return Features(df["pair_id"].to_list(), vc - vr, model_id,
                    {"pairs": df.height, "embedded_now": embedded, "empty_response_pairs": empty})


def _matrix(col: "pl.Series", dim: int) -> np.ndarray:
    """Vectors as a float32 matrix; a missing one (an empty response) as zeros."""
    out = np.zeros((len(col), dim), dtype=np.float32)
    have = col.is_not_null().to_numpy()
    if have.any():
        import polars as pl

        vecs = col.filter(col.is_not_null())
        if isinstance(vecs.dtype, pl.List):  # DuckDB's FLOAT[] arrives as a list: make it fixed-size, no copy per row
            vecs = vecs.list.to_array(dim)
        out[have] = vecs.to_numpy()
    return out
