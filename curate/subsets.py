"""Subsets (the `subsets` and `subset_pairs` tables): find one by name, read its rows, list them all.

    from curate.subsets import read_rows
    table, row = read_rows(Workspace("workspace"), "frft-split-even-it1")   # Arrow: prompt, chosen, rejected, ...

`curate subsets`, `curate export`, the trainers and the HTML report all read subsets through here, so a subset
shows the same counts everywhere: the rows are counted in `subset_pairs`, never taken from the stored summary.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import strategies
from .errors import CurateError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from .workspace import Workspace

# One row per subset: its parameters and its size counted in subset_pairs (a split-even subset may hold a pair
# twice, picked by both halves: rows counts both, distinct_pairs once).
LIST_SQL = """
with sizes as (
    select subset_id, count(*) as rows, count(distinct pair_id) as distinct_pairs
    from subset_pairs group by subset_id
)
select s.name, s.strategy, s.branch, s.iteration,
       cast(s.params->>'eps' as double) as eps, cast(s.params->>'size' as integer) as size,
       s.params->>'aggregate' as aggregate,
       coalesce(z.rows, 0) as rows, coalesce(z.distinct_pairs, 0) as distinct_pairs,
       cast(s.counts->>'scored' as integer) as scored, strftime(s.created_at, '%Y-%m-%d %H:%M:%S') as created,
       s.subset_id
from subsets s
left join sizes z using (subset_id)
order by s.branch, s.iteration, coalesce(list_position($order, s.strategy), 1000), s.strategy, s.name
"""

# The pairs of one subset with their similarities, in rank order (`curate subsets NAME`).
PAIRS_SQL = """
select sp.rank, sp.pair_id, round(sp.score, 4) as score, sp.picked_by, coalesce(sp.flipped, false) as flipped,
       round(si.pos_sim, 4) as pos_sim, round(si.neg_sim, 4) as neg_sim, p.prompt, p.chosen, p.rejected
from subset_pairs sp
join subsets s using (subset_id)
join pairs p using (pair_id)
left join similarities si
  on si.pair_id = sp.pair_id and si.branch = s.branch and si.iteration = s.iteration
 and si.model_id = s.params->>'model_id'
where s.subset_id = $subset_id
order by sp.rank, sp.picked_by
"""

# The rows a subset exports and trains on: TRL's explicit-prompt preference format, then curate's columns, with
# the similarities aggregated as the filter did. A flipped row (flip, --flip: Secrets of RLHF II, section 2.4.1)
# has chosen and rejected swapped, and its similarities with them, so each column keeps its meaning.
ROWS_SQL = """
with picked as (
    select sp.*, coalesce(sp.flipped, false) as swap from subset_pairs sp where sp.subset_id = $subset_id
)
select p.prompt, case when sp.swap then p.rejected else p.chosen end as chosen,
       case when sp.swap then p.chosen else p.rejected end as rejected,
       sp.pair_id, sp.rank, sp.score, sp.picked_by,
       case when sp.swap then neg else pos end as pos_sim,
       case when sp.swap then pos else neg end as neg_sim,
       sp.swap as flipped
from picked sp
join pairs p using (pair_id)
left join (
    select pair_id,
           case when $aggregate = 'max' then pos_sim_max else pos_sim end as pos,
           case when $aggregate = 'max' then neg_sim_max else neg_sim end as neg
    from similarities where branch = $branch and iteration = $iteration and model_id = $model_id
) si using (pair_id)
order by sp.rank, sp.picked_by desc, sp.pair_id
"""


def list_params() -> dict:
    """The parameters LIST_SQL binds: the strategies' display order."""
    return {"order": strategies.names()}


def subset_row(con: "duckdb.DuckDBPyConnection", name: str) -> dict:
    """The `subsets` row for a subset name (or subset_id); the latest when a name was reused."""
    cur = con.execute("select * exclude (created_at), cast(created_at as varchar) as created_at from subsets "
                      "where name = $n or subset_id = $n order by created_at desc limit 1", {"n": name})
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if not rows:
        known = [r[0] for r in con.execute("select name from subsets order by name").fetchall()]
        raise CurateError(f"No subset named {name!r}. "
                          + (f"Known subsets: {', '.join(known)}." if known else
                             "There are none yet: make one with `curate filter --strategy ...`."))
    return dict(zip(cols, rows[0]))


def read_rows(ws: "Workspace", name: str) -> tuple["pa.Table", dict]:
    """The subset's rows (ROWS_SQL, as Arrow) and its `subsets` row; refuses a subset whose pairs are gone."""
    with ws.connect() as con:
        row = subset_row(con, name)
        params = json.loads(row["params"] or "{}")
        bind = {"subset_id": row["subset_id"], "branch": row["branch"], "iteration": row["iteration"],
                "model_id": params.get("model_id"), "aggregate": params.get("aggregate", "mean")}
        table = con.sql(ROWS_SQL, params=bind).to_arrow_table()
        expected = con.execute("select count(*) from subset_pairs where subset_id = $s",
                               {"s": row["subset_id"]}).fetchall()[0][0]
    if table.num_rows != expected:
        raise CurateError(f"Subset {row['name']!r} lists {expected:,} rows but only {table.num_rows:,} of its pairs "
                          "are in `pairs`: the workspace lost pairs since the filter ran. Re-run `curate filter`.")
    return table, row
