"""`curate report`: how the FRFT subsets and similarities change across iterations.

    from curate.report import intersect, cdf, html_report
    intersect(Workspace("workspace"))             # the paper's Table 3 (overlap of iteration i and j)
    cdf(Workspace("workspace"), eps=0.2)          # the paper's Figure 2 (CDF of pos_sim and neg_sim)
    html_report(Workspace("workspace"))           # one self-contained HTML file with all of it

Only the functions that draw import matplotlib (with the Agg backend, no display needed), so
`curate report intersect` without --png starts as fast as `curate sql`. PNG and HTML files are
written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import strategies as registry
from . import subsets as subset_queries
from .errors import CurateError
from .runs import lineage_rows
from .tables import TABLES
from .workspace import Workspace, atomic_write_text, query_frame, utcnow

if TYPE_CHECKING:
    import polars as pl

AGGREGATES = ("mean", "max")
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
    "no subsets{where} yet: make one per iteration with `curate score --iteration N{opt}` then "
    "`curate filter --strategy overall --iteration N{opt}`."
)
INTERSECT_ONE = (
    "`curate report intersect` compares the subsets one strategy picks in different iterations, but{where} each "
    "strategy has subsets in one iteration only ({found}). Score and filter another iteration first, e.g. "
    "`curate score --iteration {next}{opt}` then `curate filter --strategy {strategy} --iteration {next}{opt}`."
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
    con = ws.connect()
    try:
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
        df = query_frame(con, INTERSECT_SQL, params)
    finally:
        con.close()
    return df


def intersect_heatmap(df: "pl.DataFrame", output: str | os.PathLike) -> Path:
    """One heatmap panel per strategy of share_pairs over (iteration_a, iteration_b), as a PNG file."""
    output = Path(output)
    _write_bytes(output, _png(_heatmap_figure(df)))
    return output


def _heatmap_figure(df: "pl.DataFrame"):
    import numpy as np

    Figure = _figure_class()
    strategies = list(dict.fromkeys(df["strategy"].to_list()))
    fig = Figure(figsize=(3.6 * max(len(strategies), 1) + 0.6, 3.4), layout="constrained")
    axes = fig.subplots(1, max(len(strategies), 1), squeeze=False)[0]
    image = None
    for ax, strategy in zip(axes, strategies):
        part = df.filter(df["strategy"] == strategy)
        rows, cols = sorted(set(part["iteration_a"].to_list())), sorted(set(part["iteration_b"].to_list()))
        grid = np.full((len(rows), len(cols)), np.nan)
        for a, b, share in part.select("iteration_a", "iteration_b", "share_pairs").iter_rows():
            grid[rows.index(a), cols.index(b)] = np.nan if share is None else share
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        for (r, c), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.0%}", ha="center", va="center", color="white" if v < 0.6 else "black")
        ax.set_xticks(range(len(cols)), [str(i) for i in cols])
        ax.set_yticks(range(len(rows)), [str(i) for i in rows])
        ax.set_xlabel("picked again in iteration j")
        ax.set_ylabel("picked in iteration i")
        ax.set_title(strategy)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="share of iteration i's pairs", shrink=0.8)
    fig.suptitle("Pairs picked in iteration i that are picked again in iteration j")
    return fig


# -- similarity distributions (cdf) -------------------------------------------------------------------
SIMILARITIES_SQL = """
select branch, iteration,
       case when $aggregate = 'max' then pos_sim_max else pos_sim end as pos_sim,
       case when $aggregate = 'max' then neg_sim_max else neg_sim end as neg_sim
from similarities
where ($branches is null or list_contains($branches, branch)) and list_contains($iterations, iteration)
  and model_id = $model_id
order by branch, iteration
"""


@dataclass
class Similarities:
    """Per-pair similarities of the chosen iterations: frame has branch, iteration, pos_sim, neg_sim."""

    frame: "pl.DataFrame"
    model_id: str
    eps: float
    aggregate: str

    @property
    def floor(self) -> float:
        return round(1 - self.eps, 12)

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
                      branch: str | Sequence[str] | None = None, eps: float = 0.2, aggregate: str = "mean",
                      model: str | None = None) -> Similarities:
    """The scored pairs of the iterations (default: all scored ones) of a branch, several branches (a list)
    or all of them (None), checked for a single embedding model."""
    if not 0 < eps <= 2:
        raise CurateError(f"--eps must be in (0, 2] (the similarity floor 1 - eps lies in [-1, 1)); got {eps}.")
    if aggregate not in AGGREGATES:
        raise CurateError(f"--aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}.")
    ws.require()
    con = ws.connect()
    try:
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
    finally:
        con.close()
    return Similarities(frame, models[0], eps, aggregate)


def similarity_stats(sims: Similarities) -> "pl.DataFrame":
    """Per (branch, iteration) and measure: n, mean, median, p90 and the share above the floor 1 - eps."""
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
                (v > sims.floor).mean().alias("above_floor"),
            )
        )
    return pl.concat(parts).sort("iteration", "branch", "measure", descending=[False, False, True])


def cdf_figure(sims: Similarities):
    """The cumulative share of pairs at or below each similarity, one curve per iteration (paper, Figure 2)."""
    import numpy as np

    Figure = _figure_class()
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (column, name) in zip(axes, sims.measures()):
        for branch, it in sims.groups():
            part = sims.frame.filter((sims.frame["branch"] == branch) & (sims.frame["iteration"] == it))
            x = np.sort(part[column].drop_nulls().to_numpy())
            if len(x):  # starts at 0 just left of the smallest value
                ax.step(np.r_[x[0], x], np.arange(0, len(x) + 1) / len(x), where="post", label=sims.label(branch, it))
        ax.axvline(sims.floor, color="black", linestyle="--", linewidth=1, label=f"floor 1 - eps = {sims.floor:g}")
        ax.set_xlabel(f"{name} (cosine)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cumulative share of pairs")
    axes[1].legend(loc="upper left", fontsize="small")
    fig.suptitle(f"Similarity to the policy's samples ({sims.model_id})")
    return fig


def histogram_figure(sims: Similarities):
    """pos_sim and neg_sim histograms, one panel per iteration."""
    import numpy as np

    Figure = _figure_class()
    groups = sims.groups()
    cols = min(len(groups), 3)
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    values = np.concatenate([sims.frame[c].drop_nulls().to_numpy() for c, _ in sims.measures()])
    bins = np.histogram_bin_edges(values, bins=30) if len(values) else 30
    for ax, (branch, it) in zip(axes, groups):
        part = sims.frame.filter((sims.frame["branch"] == branch) & (sims.frame["iteration"] == it))
        for column, name in sims.measures():
            ax.hist(part[column].drop_nulls().to_numpy(), bins=bins, alpha=0.55, label=name)
        ax.axvline(sims.floor, color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{sims.label(branch, it)}: {part.height:,} pairs")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("pairs")
        ax.legend(fontsize="small")
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    return fig


@dataclass
class CdfReport:
    path: Path
    stats: "pl.DataFrame"
    model_id: str


def default_cdf_path(ws: Workspace, sims: Similarities, branch: str | None) -> Path:
    its = "-".join(str(i) for i in sorted({it for _, it in sims.groups()}))
    extra = ("" if branch in (None, "main") else f"-{branch}") + ("-max" if sims.aggregate == "max" else "")
    return ws.root / "reports" / f"cdf-it{its}{extra}.png"


def cdf(ws: Workspace, iterations: Sequence[int] | None = None, branch: str | Sequence[str] | None = None,
        eps: float = 0.2,
        aggregate: str = "mean", model: str | None = None, output: str | os.PathLike | None = None) -> CdfReport:
    """Draw the CDF figure to output (default <workspace>/reports/cdf-it<N...>.png) and return its stats."""
    sims = load_similarities(ws, iterations, branch, eps, aggregate, model)
    path = Path(output) if output else default_cdf_path(ws, sims, branch)
    _write_bytes(path, _png(cdf_figure(sims)))
    return CdfReport(path, similarity_stats(sims), sims.model_id)


# -- html ---------------------------------------------------------------------------------------------

SAMPLES_SQL = """
select sp.subset_id, sp.rank, sp.picked_by, round(sp.score, 4) as score, p.pair_id, p.prompt, p.chosen, p.rejected
from subset_pairs sp
join pairs p using (pair_id)
qualify row_number() over (partition by sp.subset_id order by sp.rank, sp.picked_by) <= $n
order by sp.subset_id, sp.rank, sp.picked_by
"""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: pre-wrap; max-width: 28rem; font-family: ui-monospace, monospace; font-size: 0.8rem; }
.note { color: #666; font-style: italic; } .meta { color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def html_report(ws: Workspace, output: str | os.PathLike | None = None, eps: float = 0.2,
                samples: int = 5) -> Path:
    """Write one self-contained HTML report (inline CSS, PNGs as data URIs) and return its path."""
    import curate

    ws.require()
    path = Path(output) if output else ws.root / "reports" / "report.html"
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>curate report: {_e(ws.root.name)}</title>", f"<style>{CSS}</style></head><body>",
        "<h1>curate report</h1>",
        f'<p class="meta">workspace <code>{_e(ws.root)}</code> · generated {_e(utcnow())} · '
        f"curate {_e(curate.__version__)}</p>",
    ]
    con = ws.connect()
    try:
        counts = {t: con.execute(f'select count(*) from "{t}"').fetchall()[0][0] for t in TABLES}
        subsets = query_frame(con, subset_queries.LIST_SQL, subset_queries.list_params())
        sample_rows = query_frame(con, SAMPLES_SQL, {"n": samples})
    finally:
        con.close()

    out.append("<h2>Run summary</h2>")
    out.append(_table(["table", "rows"], [[t, n] for t, n in counts.items()]))
    steps = _steps(ws)
    out.append("<h3>Steps</h3>")
    out.append(_table(["created_at", "step", "manifest", "summary"], steps) if steps else
               _note("No manifests yet: every curate step (ingest, embed, score, filter) writes one."))

    runs = _runs(ws)
    if runs:
        out.append("<h3>FRFT runs (curate run)</h3>")
        out.append(_note("One row per step, in order; from: what the step started from, made: what it produced "
                         "(paths relative to the workspace). `curate runs` shows the same."))
        out.append(_table(["run", "step", "branch", "it", "status", "seconds", "from", "made"], runs))

    out.append("<h2>Subsets</h2>")
    if subsets.height:
        out.append(_table(subsets.columns, subsets.rows()))
    else:
        out.append(_note("No subsets yet: make them with `curate filter --strategy split-even --eps 0.2`."))

    out.append("<h2>Similarities</h2>")
    try:
        sims = load_similarities(ws, eps=eps)
    except CurateError as e:
        out.append(_note(str(e)))
    else:
        stats = similarity_stats(sims)
        out.append(f'<p class="meta">embedding model <code>{_e(sims.model_id)}</code>; floor 1 - eps = '
                   f"{sims.floor:g}; above_floor is the share of pairs with a similarity above it.</p>")
        out.append(_table(stats.columns, stats.rows()))
        out.append("<h3>Histograms per iteration</h3>")
        out.append(_img(_png(histogram_figure(sims)), "pos_sim and neg_sim histograms per iteration"))
        out.append("<h3>Cumulative distribution (FRFT paper, Figure 2)</h3>")
        out.append(_img(_png(cdf_figure(sims)), "cumulative distribution of pos_sim and neg_sim"))

    out.append("<h2>Overlap across iterations (FRFT paper, Table 3)</h2>")
    try:
        inter = intersect(ws)
    except CurateError as e:
        out.append(_note(str(e)))
    else:
        out.append(_note("share_pairs: the share of the pairs picked in iteration_a that are picked again in "
                         "iteration_b; share_prompts: the same over distinct prompts; jaccard_pairs: |A∩B| / |A∪B|."))
        out.append(_table(inter.columns, inter.rows()))
        out.append(_img(_png(_heatmap_figure(inter)), "share of pairs picked again, per strategy"))

    out.append(f"<h2>Sample rows (top {samples} by rank)</h2>")
    if not subsets.height:
        out.append(_note("No subsets yet."))
    for name, sid in subsets.select("name", "subset_id").iter_rows():
        rows = sample_rows.filter(sample_rows["subset_id"] == sid)
        out.append(f"<h3>{_e(name)}</h3>")
        if not rows.height:
            out.append(_note("This subset holds no pairs."))
            continue
        out.append(_table(
            ["rank", "picked_by", "score", "pair_id", "prompt", "chosen", "rejected"],
            [[r["rank"], r["picked_by"], r["score"], r["pair_id"][:12], _Text(_shorten(r["prompt"], 300, tail=True)),
              _Text(_shorten(r["chosen"], 300)), _Text(_shorten(r["rejected"], 300))] for r in rows.iter_rows(named=True)],
        ))
    out.append("</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(out))
    return path


def _runs(ws: Workspace) -> list[list]:
    return [[r["run_id"], r["step"], r["branch"], r["iteration"], r["status"], r["seconds"], _Text(r["from"]),
             _Text(r["made"])] for r in lineage_rows(ws)]


class _Text(str):
    """A long text cell (kept as written, wrapped)."""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _cell(v) -> str:
    if v is None:
        return "<td></td>"
    if isinstance(v, _Text):
        return f'<td class="text">{_e(v)}</td>'
    if isinstance(v, bool):
        return f"<td>{v}</td>"
    if isinstance(v, int):
        return f'<td class="num">{v:,}</td>'
    if isinstance(v, float):
        return f'<td class="num">{v:.4g}</td>'
    return f"<td>{_e(v)}</td>"


def _table(columns: Sequence[str], rows) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _shorten(text: str | None, n: int, tail: bool = False) -> str:
    """At most n characters; a prompt keeps its end (the last human turn), a response its start."""
    text = "" if text is None else text.strip()
    if len(text) <= n:
        return text
    return "…" + text[-(n - 1):] if tail else text[: n - 1] + "…"


def _steps(ws: Workspace) -> list[list]:
    """(created_at, step, manifest file, summary) of every manifest, oldest first."""
    rows = []
    for p in sorted(ws.manifests_dir.glob("*.json")) if ws.manifests_dir.exists() else []:
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            rows.append(["", p.name.split("-", 1)[0], p.name, f"unreadable: {e}"])
            continue
        rows.append([str(m.get("created_at", "")), str(m.get("step") or p.name.split("-", 1)[0]), p.name,
                     _step_summary(m)])
    return sorted(rows, key=lambda r: (r[0], r[2]))


def _step_summary(m: dict) -> str:
    bits = []
    for key in ("name", "strategy", "branch", "iteration", "model_id"):
        if m.get(key) not in (None, ""):
            bits.append(f"{key} {m[key]}")
    counts = m.get("counts")
    if isinstance(counts, dict):
        for k, v in counts.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                bits.append(f"{k} {v:,}")
            elif isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values()):
                bits.append(f"{k} " + ", ".join(f"{a} {b:,}" for a, b in v.items()))
    text = "; ".join(bits)
    return text if len(text) <= 300 else text[:299] + "…"


# -- drawing and writing ------------------------------------------------------------------------------
def _figure_class():
    """matplotlib's Figure on the Agg backend, imported only by the functions that draw."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same folder, then rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
