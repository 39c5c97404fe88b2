"""`curate score`: cosine similarity of each policy sample to its pair's chosen and rejected response.

pos_sim = cos(E(chosen), E(generation)), neg_sim = cos(E(rejected), E(generation)) (FRFT paper,
section 4). Vectors are stored normalised, so cosine is a dot product: DuckDB pairs each sample with
its texts' hashes, then numpy computes every dot product in one vectorised pass over a single matrix
of the model's vectors. Per-sample rows go to `sample_similarities`, per-pair mean and max to
`similarities`; rescoring a (branch, iteration, model) replaces its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CurateError
from .workspace import Workspace, new_id, query_frame, utcnow

if TYPE_CHECKING:
    import polars as pl

KEYS_SQL = """
with gens as (
    select pair_id, sample, md5(text) as g_hash
    from generations where branch = $branch and iteration = $iteration and trim(text) <> ''
),
prefs as (
    select pair_id, md5(chosen) as c_hash, md5(rejected) as r_hash
    from pairs where role = 'pref' and trim(chosen) <> '' and trim(rejected) <> ''
)
select g.pair_id, g.sample, g.g_hash, p.c_hash, p.r_hash
from gens g join prefs p using (pair_id)
order by g.pair_id, g.sample
"""


def sample_similarities(ws: Workspace, keys: "pl.DataFrame", model_id: str, chunk: int = 65_536) -> "pl.DataFrame":
    """pos_sim and neg_sim per sample: each vector read once into one matrix, row-wise dot products in numpy."""
    import numpy as np
    import polars as pl

    emb = pl.read_parquet(ws.files("embeddings", key=model_id), columns=["text_hash", "vector"])
    matrix = emb["vector"].to_numpy()  # (texts, dim) float32, unit rows: cosine is the dot product
    index = emb.select("text_hash").with_row_index("i").unique("text_hash", keep="first")
    rows = keys
    for col in ("g_hash", "c_hash", "r_hash"):
        rows = rows.join(index.rename({"text_hash": col, "i": col[0]}), on=col, how="left", maintain_order="left")
    g, c, r = (rows[x].to_numpy() for x in ("g", "c", "r"))
    pos = np.empty(len(rows), dtype=np.float64)
    neg = np.empty(len(rows), dtype=np.float64)
    for s in range(0, len(rows), chunk):  # bounded temporaries: three (chunk, dim) gathers at a time
        gv = matrix[g[s:s + chunk]]
        pos[s:s + chunk] = np.einsum("ij,ij->i", matrix[c[s:s + chunk]], gv)
        neg[s:s + chunk] = np.einsum("ij,ij->i", matrix[r[s:s + chunk]], gv)
    return rows.select("pair_id", "sample").with_columns(pos_sim=pl.Series(pos), neg_sim=pl.Series(neg))


COVERAGE_SQL = """
with gens as (
    select distinct pair_id from generations where branch = $branch and iteration = $iteration
),
prefs as (select pair_id, chosen, rejected from pairs where role = 'pref'),
empty_gens as (
    select count(*) as n from generations
    where branch = $branch and iteration = $iteration and trim(text) = ''
),
vecs as (select text_hash from embeddings where model_id = $model_id),
needed as (
    select md5(text) as h from generations where branch = $branch and iteration = $iteration and trim(text) <> ''
    union select md5(p.chosen) from prefs p join gens using (pair_id) where trim(p.chosen) <> ''
    union select md5(p.rejected) from prefs p join gens using (pair_id) where trim(p.rejected) <> ''
)
select
    (select count(*) from gens) as pairs_with_generations,
    (select count(*) from gens join prefs using (pair_id)) as pref_pairs_with_generations,
    (select count(*) from gens join prefs using (pair_id)
        where trim(chosen) = '' or trim(rejected) = '') as empty_response_pairs,
    (select n from empty_gens) as empty_generations,
    (select count(*) from needed anti join vecs on vecs.text_hash = needed.h) as missing_vectors,
    (select count(*) from prefs anti join gens using (pair_id)) as pref_pairs_without_generations
"""


@dataclass
class ScoreResult:
    branch: str
    iteration: int
    model_id: str
    samples: int
    pairs: int
    empty_response_pairs: int
    empty_generations: int
    not_pref: int
    no_generation: int = 0  # pref pairs with no sample in this (branch, iteration): not scored


def score(ws: Workspace, iteration: int, branch: str = "main", model: str | None = None) -> ScoreResult:
    import polars as pl

    from .embedding import model_id_for

    ws.require().check_writable()  # before any advice on what to run first: that would fail the same way
    model_id = model_id_for(ws, model)
    params = {"branch": branch, "iteration": iteration, "model_id": model_id}
    with ws.lock("curate score"):
        with ws.connect() as con:
            cov = dict(zip(
                ("with_gens", "pref_with_gens", "empty_resp", "empty_gens", "missing", "no_gens"),
                con.execute(COVERAGE_SQL, params).fetchall()[0],
            ))
            if cov["with_gens"] == 0:
                raise CurateError(
                    f"No generations for branch {branch!r}, iteration {iteration}: import them with "
                    "`curate generations import FILE --iteration N --policy NAME` (or `curate generate`)."
                )
            if cov["missing"]:
                raise CurateError(
                    f"{cov['missing']:,} texts of branch {branch!r}, iteration {iteration} have no vector for "
                    f"model {model_id}: run `curate embed` (with the same --model) first."
                )
            keys = query_frame(con, KEYS_SQL, {"branch": branch, "iteration": iteration})
        samples = sample_similarities(ws, keys, model_id)
        key = f"{branch}-it{iteration}-{model_id}"
        samples = samples.with_columns(
            pl.col("pos_sim", "neg_sim").cast(pl.Float64),
            branch=pl.lit(branch), iteration=pl.lit(iteration, dtype=pl.Int32), model_id=pl.lit(model_id)
        )
        agg = (
            samples.group_by("pair_id", maintain_order=True)
            .agg(
                pos_sim=pl.col("pos_sim").mean(),
                neg_sim=pl.col("neg_sim").mean(),
                pos_sim_max=pl.col("pos_sim").max(),
                neg_sim_max=pl.col("neg_sim").max(),
                n_samples=pl.len().cast(pl.Int32),
            )
            .with_columns(branch=pl.lit(branch), iteration=pl.lit(iteration, dtype=pl.Int32), model_id=pl.lit(model_id))
        )
        with ws.transaction("curate score") as tx:
            for table, df in (("sample_similarities", samples), ("similarities", agg)):
                tx.remove(table, ws.files(table, key=key))
                tx.add(table, df, key=key)
        ws.write_manifest("score", new_id(), {
            "step": "score", "created_at": utcnow(), **params,
            "counts": {"samples": samples.height, "pairs": agg.height, **cov},
        })
    return ScoreResult(branch, iteration, model_id, samples.height, agg.height, cov["empty_resp"],
                       cov["empty_gens"], cov["with_gens"] - cov["pref_with_gens"], cov["no_gens"])
