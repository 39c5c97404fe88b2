"""`curate neighbors`: nearest stored responses to a text or a pair, with a persisted FAISS index.

    from curate.neighbors import neighbors
    hits = neighbors(Workspace("workspace"), text="I can't help with that.", k=5)

The index covers every vector the workspace holds for one embedding model (chosen and rejected
responses of pref pairs, and generations). It lives under `<workspace>/indexes/<model_id>/`, is built
on first use, and is rebuilt when the model's embedding files change (its fingerprint is the list of
live Parquet files, which are immutable once committed). Up to EXACT_MAX vectors it is exact
(`IndexFlatIP`: vectors are unit length, so inner product is cosine); above that, an inverted-file
index (`IndexIVFFlat`) that probes a fraction of the lists and trades a little recall for speed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import staged_file, write_text
from .errors import CurateError
from .workspace import Workspace, file_key, query_frame, utcnow

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

EXACT_MAX = 100_000  # vectors; above this `auto` builds an IVF index
INDEX_KINDS = ("auto", "flat", "ivf")
ROLES = ("chosen", "rejected", "generation")

OCCURRENCES_SQL = """
with hits as (select * from hits_frame),
occ as (
    select md5(chosen) as text_hash, 'chosen' as role, pair_id, chosen as text from pairs where role = 'pref'
    union all
    select md5(rejected), 'rejected', pair_id, rejected from pairs where role = 'pref'
    union all
    select md5(text), 'generation', pair_id, text from generations
)
select h.rank, round(h.similarity, 4) as similarity,
       list(distinct o.role order by o.role) as roles,
       count(distinct o.pair_id) as n_pairs,
       list(distinct o.pair_id order by o.pair_id)[1:$max_pairs] as pair_ids,
       any_value(o.text) as text,
       h.text_hash
from hits h join occ o using (text_hash)
group by h.rank, h.similarity, h.text_hash
order by h.rank
"""


@dataclass
class Index:
    faiss_index: object
    text_hashes: list[str]
    kind: str
    model_id: str
    built: bool  # built by this call (False: loaded from disk)
    seconds: float
    saved: bool = True  # False: built in memory only (the workspace could not be written)

    @property
    def size(self) -> int:
        return len(self.text_hashes)


def fingerprint(ws: Workspace, model_id: str) -> str:
    files = sorted(p.name for p in ws.files("embeddings", key=model_id))
    return hashlib.sha256("\n".join(files).encode()).hexdigest()


def index_dir(ws: Workspace, model_id: str) -> Path:
    return ws.root / "indexes" / file_key(model_id)


def _pick_kind(kind: str, n: int) -> str:
    if kind not in INDEX_KINDS:
        raise CurateError(f"--index {kind!r}: expected one of {', '.join(INDEX_KINDS)}.")
    if kind == "auto":
        return "flat" if n <= EXACT_MAX else "ivf"
    return kind


def load_index(ws: Workspace, model_id: str, kind: str = "auto", on_build=None) -> Index:
    """The model's index: loaded if its fingerprint matches the live vectors, else (re)built and saved."""
    import faiss

    t0 = time.perf_counter()
    fp = fingerprint(ws, model_id)
    folder = index_dir(ws, model_id)
    meta_path = folder / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            meta = {}
        if meta.get("fingerprint") == fp and kind in ("auto", meta.get("kind")) and (folder / meta["index_file"]).exists():
            import pyarrow.parquet as pq

            index = faiss.read_index(str(folder / meta["index_file"]))
            if meta["kind"] == "ivf":
                index.nprobe = meta["nprobe"]
            hashes = pq.read_table(folder / meta["ids_file"]).column("text_hash").to_pylist()
            return Index(index, hashes, meta["kind"], model_id, False, time.perf_counter() - t0)
    if on_build:
        on_build()
    return _build(ws, model_id, kind, fp, t0)


def _build(ws: Workspace, model_id: str, kind: str, fp: str, t0: float) -> Index:
    import faiss
    import numpy as np
    import polars as pl

    files = ws.files("embeddings", key=model_id)
    if not files:
        raise CurateError(f"No vectors for model {model_id}: run `curate embed` first.")
    df = pl.read_parquet(files, columns=["text_hash", "vector"]).unique("text_hash").sort("text_hash")
    vecs = np.ascontiguousarray(df["vector"].to_numpy(), dtype=np.float32)
    n, dim = vecs.shape
    kind = _pick_kind(kind, n)
    meta = {"model_id": model_id, "fingerprint": fp, "kind": kind, "n": n, "dim": dim, "built_at": utcnow(),
            "faiss": faiss.__version__}
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants ~39 training points per list
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = vecs[rng.choice(n, size=min(n, nlist * 64), replace=False)]
        index.train(train)
        index.nprobe = max(1, min(nlist, 32))
        meta.update(nlist=nlist, nprobe=index.nprobe)
    index.add(vecs)
    saved = True
    try:
        _save(index_dir(ws, model_id), index, df, meta, fp[:16], kind)
    except OSError:  # a read-only workspace: the search still runs, on an index kept in memory this once
        saved = False
    hashes = df["text_hash"].to_list()
    return Index(index, hashes, kind, model_id, True, time.perf_counter() - t0, saved)


def _save(folder: Path, index, df, meta: dict, stem: str, kind: str) -> None:
    """Each file under a temporary name, renamed; meta.json, written last, is the commit."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    meta["index_file"], meta["ids_file"] = f"index-{stem}-{kind}.faiss", f"ids-{stem}.parquet"
    with staged_file(folder / meta["index_file"]) as tmp:
        faiss.write_index(index, str(tmp))
    with staged_file(folder / meta["ids_file"]) as tmp:
        df.select("text_hash").write_parquet(tmp)
    write_text(folder / "meta.json", json.dumps(meta, indent=2))
    for old in folder.iterdir():
        if old.name not in (meta["index_file"], meta["ids_file"], "meta.json") and not old.name.startswith("."):
            old.unlink(missing_ok=True)


def stored_vector(ws: Workspace, model_id: str, text_hash: str) -> "np.ndarray | None":
    import numpy as np

    with ws.connect() as con:
        rows = con.execute(
            "select vector from embeddings where model_id = $m and text_hash = $h limit 1", {"m": model_id, "h": text_hash}
        ).fetchall()
    return np.asarray(rows[0][0], dtype=np.float32) if rows else None


def pair_text(ws: Workspace, pair_id: str, role: str, branch: str, iteration: int | None,
              sample: int) -> tuple[str, str]:
    """(full pair_id, text) of a pair's chosen/rejected response or generation; pair_id may be a unique prefix."""
    if role not in ROLES:
        raise CurateError(f"--role {role!r}: expected one of {', '.join(ROLES)}.")
    from .lookup import resolve_pair_id

    with ws.connect() as con:
        full = resolve_pair_id(con, pair_id)
        if role == "generation":
            rows = con.execute("select text from generations where pair_id = $p and branch = $b and sample = $s "
                               "and ($i is null or iteration = $i) order by iteration desc limit 1",
                               {"p": full, "b": branch, "s": sample, "i": iteration}).fetchall()
            if not rows:
                where = f"iteration {iteration}" if iteration is not None else "any iteration"
                raise CurateError(f"Pair {full} has no generation (branch {branch!r}, {where}, sample {sample}).")
            return full, rows[0][0]
        text, pair_role = con.execute("select case when $r = 'chosen' then chosen else rejected end, role from pairs "
                                      "where pair_id = $p", {"p": full, "r": role}).fetchall()[0]
        if pair_role != "pref":
            raise CurateError(f"Pair {full} is an {pair_role} pair: curate embeds the responses of pref pairs only "
                              "(the ones the filters choose among), so it has no vector to search with. Search with "
                              "--text instead, or give a pref pair.")
        return full, text


def embed_query(ws: Workspace, model_id: str, model: str | None, text: str) -> "np.ndarray":
    """The query's vector: stored if the text was embedded already, else from the model (loaded on demand)."""
    import hashlib as _h

    import polars as pl

    from .embedding.model import load_encoder, resolve

    vec = stored_vector(ws, model_id, _h.md5(text.encode("utf-8")).hexdigest())
    if vec is not None:
        return vec
    if model is None:
        row = pl.read_parquet(ws.files("embedding_models")).filter(pl.col("model_id") == model_id).row(0, named=True)
        model, revision = row["name"], row["revision"]
    else:
        revision = None
    ref = resolve(model, revision)
    if ref.model_id != model_id:
        raise CurateError(f"The model {model!r} now resolves to {ref.model_id}, not {model_id} whose vectors the "
                          "index holds: pass --model to pick the model, or re-embed.")
    return load_encoder(ref, "auto", None).encode([text], batch_size=1)[0]


def search(index: Index, query: "np.ndarray", k: int, exclude: set[str] = frozenset()) -> "pl.DataFrame":
    """Top-k (text_hash, similarity) for one unit-length query vector, excluding some hashes."""
    import numpy as np
    import polars as pl

    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    if q.shape[1] != index.faiss_index.d:
        raise CurateError(f"Query vector has {q.shape[1]} dimensions, the index {index.faiss_index.d}.")
    want = min(index.size, k + len(exclude))
    sims, ids = index.faiss_index.search(q, want)
    rows = [(index.text_hashes[i], float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0]
    rows = [r for r in rows if r[0] not in exclude][:k]
    return pl.DataFrame(
        {"rank": list(range(1, len(rows) + 1)), "text_hash": [r[0] for r in rows], "similarity": [r[1] for r in rows]},
        schema={"rank": pl.Int32, "text_hash": pl.String, "similarity": pl.Float64},
    )


def neighbors(
    ws: Workspace,
    *,
    text: str | None = None,
    pair_id: str | None = None,
    role: str = "chosen",
    branch: str = "main",
    iteration: int | None = None,
    sample: int = 0,
    k: int = 10,
    model: str | None = None,
    index_kind: str = "auto",
    max_pairs: int = 5,
    on_build=None,
) -> tuple["pl.DataFrame", Index]:
    """Nearest stored responses: one row per distinct text, with the pairs and roles it occurs in."""
    from .embedding import model_id_for

    ws.require()
    if (text is None) == (pair_id is None):
        raise CurateError("Give a query: --text TEXT or --pair-id ID (one of them).")
    if k < 1:
        raise CurateError(f"-k must be at least 1 (got {k}).")
    if text is not None and not text.strip():
        raise CurateError("--text is empty.")
    model_id = model_id_for(ws, model)
    exclude: set[str] = set()
    if pair_id is not None:
        _, text = pair_text(ws, pair_id, role, branch, iteration, sample)
        if not text.strip():
            raise CurateError(f"Pair {pair_id}'s {role} response is empty: nothing to search with.")
        h = hashlib.md5(text.encode("utf-8")).hexdigest()
        exclude.add(h)  # the pair's own response would be its own nearest neighbour
        vec = stored_vector(ws, model_id, h)
        if vec is None:
            raise CurateError(f"Pair {pair_id}'s {role} response has no vector for {model_id}: run `curate embed`.")
    else:
        vec = embed_query(ws, model_id, model, text)
    index = load_index(ws, model_id, index_kind, on_build)
    hits = search(index, vec, k, exclude)
    with ws.connect() as con:
        con.register("hits_frame", hits.to_arrow())
        out = query_frame(con, OCCURRENCES_SQL, {"max_pairs": max_pairs})
    return out, index
