"""Loads, summarises and draws the similarity distributions per iteration (the FRFT paper's Figure 2).

    from curate.report import cdf, load_similarities, similarity_stats
    cdf(Workspace("workspace"), eps=0.2)                             # PNG + stats table
    similarity_stats(load_similarities(ws, eps=[0.2, 0.6]))          # one above_<floor> column per floor

A Similarities holds one floor 1 - eps or several: the HTML report marks the floor of every eps its subsets
were made with, `curate report cdf` the one --eps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import CurateError
from ..workspace import Workspace, query_frame
from .figures import cdf_figure, write_png

if TYPE_CHECKING:
    import polars as pl

AGGREGATES = ("mean", "max")

SIMILARITIES_SQL = """
select branch, iteration,
       case when $aggregate = 'max' then pos_sim_max else pos_sim end as pos_sim,
       case when $aggregate = 'max' then neg_sim_max else neg_sim end as neg_sim
from similarities
where ($branches is null or list_contains($branches, branch)) and list_contains($iterations, iteration)
  and model_id = $model_id
order by branch, iteration
"""


def floor_of(eps: float) -> float:
    """The similarity floor 1 - eps, rounded as the filters store it (so 1 - 0.2 reads 0.8)."""
    return round(1 - eps, 12)


# The floor a page draws when no subset says which eps it was made with: `curate filter`'s default eps.
FALLBACK_EPS = 0.2

# The eps each subset was made with (a subset that stored only its floor counts as eps 1 - floor), and how many
# subsets used it: the figures draw, and the stats count, the floor the subsets were actually cut at.
SUBSET_EPS_SQL = """
select eps, count(*) as subsets
from (select round(coalesce(cast(params->>'eps' as double), 1 - cast(params->>'floor' as double)), 12) as eps
      from subsets)
where eps is not null
group by eps
order by eps desc
"""


def floor_sources(eps: float | None, subset_eps: list[tuple[float, int]],
                   n_subsets: int) -> tuple[dict[float, str], str | None]:
    """The eps whose floors a report uses, each with where it comes from, and a note when it assumes one.

    A subset is cut at its own floor (FRFT: keep pairs above 1 - eps), so a page about subsets made at eps 0.6
    must show the floor 0.4, not the default 0.8; subsets made at several eps show one floor each.
    """
    if eps is not None:
        return {eps: "as asked"}, None
    if subset_eps:
        return {e: f"the eps of {n} subset{'' if n == 1 else 's'}" for e, n in subset_eps}, None
    why = "No subset records its eps" if n_subsets else "No subsets yet"
    return {FALLBACK_EPS: "assumed"}, f"{why}: the floor drawn assumes eps {FALLBACK_EPS:g}."


@dataclass
class Similarities:
    """Per-pair similarities of the chosen iterations: frame has branch, iteration, pos_sim, neg_sim.

    eps: one or more; each gives a floor 1 - eps drawn in the figures and an above-floor share in the stats.
    """

    frame: "pl.DataFrame"
    model_id: str
    eps: tuple[float, ...]
    aggregate: str

    @property
    def floors(self) -> list[float]:
        """The distinct floors 1 - eps, lowest first."""
        return sorted({floor_of(e) for e in self.eps})

    def above_columns(self) -> list[tuple[float, str]]:
        """(floor, stats column) per floor: `above_floor` for a single floor (the name `curate report cdf` has
        always printed), `above_<floor>` for several, so each column names its floor."""
        floors = self.floors
        if len(floors) == 1:
            return [(floors[0], "above_floor")]
        return [(f, f"above_{f:g}") for f in floors]

    def groups(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in self.frame.select("branch", "iteration").unique().sort("iteration", "branch")
                .iter_rows()]

    def label(self, branch: str, iteration: int) -> str:
        return f"iteration {iteration}" + ("" if branch == "main" else f" ({branch})")

    def measures(self) -> list[tuple[str, str]]:
        """(frame column, name shown) of the two measures."""
        suffix = "_max" if self.aggregate == "max" else ""
        return [("pos_sim", "pos_sim" + suffix), ("neg_sim", "neg_sim" + suffix)]


def load_similarities(ws: Workspace, iterations: Sequence[int] | None = None,
                      branch: str | Sequence[str] | None = None, eps: float | Sequence[float] = 0.2,
                      aggregate: str = "mean", model: str | None = None) -> Similarities:
    """The scored pairs of the iterations (default: all scored ones) of a branch, several branches (a list)
    or all of them (None), checked for a single embedding model; eps is one value or several (one floor each)."""
    given = [eps] if isinstance(eps, (int, float)) else list(eps)
    if not given:
        raise CurateError("load_similarities needs at least one eps.")
    for e in given:
        if not 0 < e <= 2:
            raise CurateError(f"--eps must be in (0, 2] (the similarity floor 1 - eps lies in [-1, 1)); got {e}.")
    if aggregate not in AGGREGATES:
        raise CurateError(f"--aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}.")
    ws.require()
    with ws.connect() as con:
        branches = [branch] if isinstance(branch, str) else (list(branch) if branch is not None else None)
        scored = con.execute(
            "select iteration, model_id, count(*) from similarities "
            "where ($branches is null or list_contains($branches, branch)) group by all order by all",
            {"branches": branches}).fetchall()
        where = f" on branch {branch!r}" if branch else ""
        score_cmd = "curate score --iteration {it}" + (f" --branch {branch}" if branch else "")
        have = sorted({it for it, _, _ in scored})
        if not have:
            raise CurateError(f"Nothing is scored{where} yet: import generations and run "
                              f"`{score_cmd.format(it=(list(iterations or []) or [1])[0])}` first.")
        its = sorted(set(iterations)) if iterations else have
        missing = [it for it in its if it not in have]
        if missing:
            it = missing[0]
            raise CurateError(f"Iteration {it} has no scores{where} (scored: {', '.join(map(str, have))}): run "
                              f"`{score_cmd.format(it=it)}` first, or leave it out of --iteration.")
        models = sorted({m for it, m, _ in scored if it in its})
        if model is not None:
            matches = [m for m in models if m == model or m.startswith(model.rstrip("-") + "-")]
            if len(matches) != 1:
                raise CurateError(f"--model {model!r} matches {len(matches)} of the models these iterations are "
                                  f"scored with ({', '.join(models)}); give the model_id.")
            models = matches
        elif len(models) > 1:
            raise CurateError(f"The iterations are scored with several embedding models ({', '.join(models)}): "
                              "pick one with --model.")
        frame = query_frame(con, SIMILARITIES_SQL, {"branches": branches, "iterations": its, "model_id": models[0],
                                                    "aggregate": aggregate})
    return Similarities(frame, models[0], tuple(map(float, given)), aggregate)


def similarity_stats(sims: Similarities) -> "pl.DataFrame":
    """Per (branch, iteration) and measure: n, mean, median, p90 and the share above each floor 1 - eps
    (strictly above, as in the filters)."""
    import polars as pl

    parts = []
    for column, name in sims.measures():
        v = pl.col(column)
        parts.append(
            sims.frame.group_by("branch", "iteration").agg(
                pl.lit(name).alias("measure"),
                v.count().alias("n"),
                v.mean().alias("mean"),
                v.median().alias("median"),
                v.quantile(0.9, interpolation="linear").alias("p90"),
                *[(v > floor).mean().alias(above) for floor, above in sims.above_columns()],
            )
        )
    return pl.concat(parts).sort("iteration", "branch", "measure", descending=[False, False, True])


@dataclass
class CdfReport:
    path: Path
    stats: "pl.DataFrame"
    model_id: str
    note: str | None = None  # which eps the figure assumes, when no subset said


def default_cdf_path(ws: Workspace, sims: Similarities, branch: str | None) -> Path:
    its = "-".join(str(i) for i in sorted({it for _, it in sims.groups()}))
    extra = ("" if branch in (None, "main") else f"-{branch}") + ("-max" if sims.aggregate == "max" else "")
    return ws.reports_dir() / f"cdf-it{its}{extra}.png"


def cdf(ws: Workspace, iterations: Sequence[int] | None = None, branch: str | Sequence[str] | None = None,
        eps: float | None = None, aggregate: str = "mean", model: str | None = None,
        output: str | os.PathLike | None = None) -> CdfReport:
    """Draw the CDF figure to output (default <workspace>/reports/cdf-it<N...>.png) and return its stats. eps None:
    the floors of the eps the subsets were made with (as the HTML report draws them)."""
    with ws.require().connect() as con:
        subset_eps = con.execute(SUBSET_EPS_SQL).fetchall() if eps is None else []
        n_subsets = con.execute("select count(*) from subsets").fetchone()[0] if eps is None else 0
    sources, assumed = floor_sources(eps, subset_eps, n_subsets)
    sims = load_similarities(ws, iterations, branch, list(sources), aggregate, model)
    path = write_png(cdf_figure(sims), Path(output) if output else default_cdf_path(ws, sims, branch))
    return CdfReport(path, similarity_stats(sims), sims.model_id, assumed)
