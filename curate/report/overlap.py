"""Computes the overlap of a strategy's subsets across iterations (the FRFT paper's Table 3) in one DuckDB query.

    from curate.report import intersect
    intersect(Workspace("workspace"))    # one row per strategy and pair of iterations i < j

No matplotlib here: `curate report intersect` without --png starts as fast as `curate sql`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .. import strategies as registry
from ..errors import CurateError
from ..workspace import Workspace, query_frame

if TYPE_CHECKING:
    import polars as pl

INTERSECT_COLUMNS = (
    "strategy", "iteration_a", "iteration_b", "subset_a", "subset_b", "pairs_a", "pairs_b", "common_pairs",
    "share_pairs", "prompts_a", "common_prompts", "share_prompts", "jaccard_pairs",
)

# -- intersect ---------------------------------------------------------------------------------------
# One row per strategy and pair of iterations i < j. Each (strategy, iteration) is represented by its most
# recently created subset; a split-even subset may hold a pair twice (picked_by pos and neg), so pairs and
# prompts are made distinct before counting. share_* = common / size of the earlier subset: the share of
# iteration i's picks picked again in j (FRFT paper, Table 3 is the iteration 1 vs 2 column).
INTERSECT_SQL = """
with latest as (
    select subset_id, name, strategy, iteration
    from subsets
    where ($branch is null or branch = $branch) and ($strategies is null or list_contains($strategies, strategy))
      and ($names is null or list_contains($names, name))
    qualify row_number() over (partition by strategy, iteration order by created_at desc, subset_id desc) = 1
),
picked as (
    select distinct l.strategy, l.iteration, sp.pair_id
    from latest l join subset_pairs sp using (subset_id)
),
prompts as (
    select distinct pk.strategy, pk.iteration, p.prompt
    from picked pk join pairs p using (pair_id)
),
pair_counts as (select strategy, iteration, count(*) as n from picked group by all),
prompt_counts as (select strategy, iteration, count(*) as n from prompts group by all),
sizes as (
    select l.strategy, l.iteration, coalesce(pc.n, 0) as n_pairs, coalesce(qc.n, 0) as n_prompts
    from latest l
    left join pair_counts pc using (strategy, iteration)
    left join prompt_counts qc using (strategy, iteration)
),
common_pairs as (
    select a.strategy, a.iteration as iteration_a, b.iteration as iteration_b, count(*) as n
    from picked a join picked b on a.strategy = b.strategy and a.pair_id = b.pair_id and a.iteration < b.iteration
    group by all
),
common_prompts as (
    select a.strategy, a.iteration as iteration_a, b.iteration as iteration_b, count(*) as n
    from prompts a join prompts b on a.strategy = b.strategy and a.prompt = b.prompt and a.iteration < b.iteration
    group by all
),
grid as (
    select a.strategy, a.iteration as iteration_a, b.iteration as iteration_b, a.name as subset_a, b.name as subset_b
    from latest a join latest b on a.strategy = b.strategy and a.iteration < b.iteration
),
final as (
    select g.strategy, g.iteration_a, g.iteration_b, g.subset_a, g.subset_b,
           sa.n_pairs as pairs_a, sb.n_pairs as pairs_b,
           coalesce(cp.n, 0) as common_pairs,
           coalesce(cp.n, 0) / nullif(sa.n_pairs, 0) as share_pairs,
           sa.n_prompts as prompts_a,
           coalesce(cq.n, 0) as common_prompts,
           coalesce(cq.n, 0) / nullif(sa.n_prompts, 0) as share_prompts,
           coalesce(cp.n, 0) / nullif(sa.n_pairs + sb.n_pairs - coalesce(cp.n, 0), 0) as jaccard_pairs
    from grid g
    join sizes sa on sa.strategy = g.strategy and sa.iteration = g.iteration_a
    join sizes sb on sb.strategy = g.strategy and sb.iteration = g.iteration_b
    left join common_pairs cp
      on cp.strategy = g.strategy and cp.iteration_a = g.iteration_a and cp.iteration_b = g.iteration_b
    left join common_prompts cq
      on cq.strategy = g.strategy and cq.iteration_a = g.iteration_a and cq.iteration_b = g.iteration_b
)
select * from final
order by coalesce(list_position($order, strategy), 1000), strategy, iteration_a, iteration_b
"""

ITERATIONS_SQL = """
select strategy, list(distinct iteration order by iteration) as iterations
from subsets
where ($branch is null or branch = $branch) and ($strategies is null or list_contains($strategies, strategy))
  and ($names is null or list_contains($names, name))
group by strategy
order by coalesce(list_position($order, strategy), 1000), strategy
"""

INTERSECT_NONE = (
    "`curate report intersect` compares the subsets one strategy picks in different iterations, and there are "
    "no subsets{where} yet. For each iteration N: sample the policy (`curate generate --iteration N{opt}`, or "
    "`curate generations import FILE --iteration N --policy NAME{opt}`), then `curate embed`, "
    "`curate score --iteration N{opt}` and `curate filter --strategy overall --iteration N{opt}`."
)
INTERSECT_ONE = (
    "`curate report intersect` compares the subsets one strategy picks in different iterations, but{where} each "
    "strategy has subsets in one iteration only ({found}). Make iteration {next}'s first: sample the policy "
    "(`curate generate --iteration {next}{opt}`, or `curate generations import FILE --iteration {next} --policy NAME"
    "{opt}`), then `curate embed`, `curate score --iteration {next}{opt}` and "
    "`curate filter --strategy {strategy} --iteration {next}{opt}`."
)


def _order(strategies: Sequence[str] | None) -> list[str]:
    return list(strategies) if strategies else registry.names()


def intersect(ws: Workspace, branch: str | None = None, strategies: Sequence[str] | None = None,
              names: Sequence[str] | None = None) -> "pl.DataFrame":
    """Overlap of the subsets a strategy picks in iterations i < j (columns: INTERSECT_COLUMNS); `names`
    limits it to those subsets (the subsets of one `curate run`)."""
    ws.require()
    strategies = list(dict.fromkeys(strategies)) if strategies else None
    params = {"branch": branch, "strategies": strategies, "order": _order(strategies),
              "names": list(names) if names else None}
    with ws.connect() as con:
        found = dict(con.execute(ITERATIONS_SQL, params).fetchall())
        if strategies:
            missing = [s for s in strategies if s not in found]
            if missing:
                known = [r[0] for r in con.execute(
                    "select distinct strategy from subsets where ($branch is null or branch = $branch) order by 1",
                    {"branch": branch}).fetchall()]
                where = f" on branch {branch!r}" if branch else ""
                raise CurateError(
                    f"No subsets of strategy {', '.join(map(repr, missing))}{where}. "
                    + (f"The strategies with subsets are: {', '.join(known)}." if known else
                       f"There are no subsets{where} yet: make them with `curate filter --strategy ...`."))
        if not any(len(its) >= 2 for its in found.values()):
            where, opt = (f" on branch {branch!r}", f" --branch {branch}") if branch else ("", "")
            if not found:
                raise CurateError(INTERSECT_NONE.format(where=where, opt=opt))
            strategy, its = next(iter(found.items()))
            raise CurateError(INTERSECT_ONE.format(
                where=where, opt=opt, strategy=strategy, next=max(its) + 1,
                found="; ".join(f"{s}: iteration {', '.join(map(str, i))}" for s, i in found.items())))
        return query_frame(con, INTERSECT_SQL, params)
