"""Draws the report's figures: CDF and histograms of the similarities, the overlap heatmap, as PNG bytes or files.

    from curate.report import intersect, intersect_heatmap
    intersect_heatmap(intersect(ws), "overlap.png")

matplotlib (Agg backend, no display needed) is imported inside the functions that draw, never at module level,
so importing `curate.report` stays cheap and `curate report intersect` without --png never loads it.
"""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_bytes

if TYPE_CHECKING:
    import polars as pl


# One dash per floor, so the floors of subsets made with different eps can be told apart on one axis.
FLOOR_STYLES = ("--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)))


def figure_class():
    """matplotlib's Figure on the Agg backend, imported only by the functions that draw."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_png(fig, path: str | os.PathLike) -> Path:
    """Draw fig to a PNG file, atomically (a reader sees the old file or the new one)."""
    return write_bytes(Path(path), png(fig))


def floors_label(sims) -> str:
    """The floors as the figures' legends and the HTML's alt texts name them."""
    return "floor 1 - eps = " + ", ".join(f"{floor:g}" for floor in sims.floors)


def _draw_floors(ax, sims) -> None:
    for floor, style in zip(sims.floors, itertools.cycle(FLOOR_STYLES)):
        ax.axvline(floor, color="black", linestyle=style, linewidth=1, label=f"floor 1 - eps = {floor:g}")


def _group(sims, branch: str, iteration: int) -> "pl.DataFrame":
    return sims.frame.filter((sims.frame["branch"] == branch) & (sims.frame["iteration"] == iteration))


def cdf_figure(sims):
    """The cumulative share of pairs at or below each similarity, one curve per iteration (paper, Figure 2)."""
    import numpy as np

    fig = figure_class()(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (column, name) in zip(axes, sims.measures()):
        for branch, it in sims.groups():
            x = np.sort(_group(sims, branch, it)[column].drop_nulls().to_numpy())
            if len(x):  # starts at 0 just left of the smallest value
                ax.step(np.r_[x[0], x], np.arange(0, len(x) + 1) / len(x), where="post", label=sims.label(branch, it))
        _draw_floors(ax, sims)
        ax.set_xlabel(f"{name} (cosine)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cumulative share of pairs")
    axes[1].legend(loc="upper left", fontsize="small")
    fig.suptitle(f"Similarity to the policy's samples ({sims.model_id})")
    return fig


def histogram_figure(sims):
    """pos_sim and neg_sim histograms, one panel per iteration."""
    import numpy as np

    groups = sims.groups()
    cols = min(len(groups), 3)
    rows = -(-len(groups) // cols)
    fig = figure_class()(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    values = np.concatenate([sims.frame[c].drop_nulls().to_numpy() for c, _ in sims.measures()])
    bins = np.histogram_bin_edges(values, bins=30) if len(values) else 30
    for ax, (branch, it) in zip(axes, groups):
        part = _group(sims, branch, it)
        for column, name in sims.measures():
            ax.hist(part[column].drop_nulls().to_numpy(), bins=bins, alpha=0.55, label=name)
        _draw_floors(ax, sims)
        ax.set_title(f"{sims.label(branch, it)}: {part.height:,} pairs")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("pairs")
        ax.legend(fontsize="small")
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    return fig


def heatmap_figure(df: "pl.DataFrame"):
    """One panel per strategy of share_pairs over (iteration_a, iteration_b) (paper, Table 3 as a picture)."""
    import numpy as np

    strategies = list(dict.fromkeys(df["strategy"].to_list()))
    # at least 6.4 inches wide: one panel alone still has room for the title
    fig = figure_class()(figsize=(max(3.6 * max(len(strategies), 1) + 0.6, 6.4), 3.6), layout="constrained")
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
                ax.text(c, r, _percent(v), ha="center", va="center", color="white" if v < 0.6 else "black")
        ax.set_xticks(range(len(cols)), [str(i) for i in cols])
        ax.set_yticks(range(len(rows)), [str(i) for i in rows])
        ax.set_xlabel("picked again in iteration j")
        ax.set_ylabel("picked in iteration i")
        ax.set_title(strategy)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="share of iteration i's pairs", shrink=0.8)
    fig.suptitle("Share of the pairs picked in iteration i that are picked again in iteration j", fontsize="medium")
    return fig


def _percent(v: float) -> str:
    """A share as a percentage with the digits it needs: 35%, 3.5%, 0.35% (never a small share shown as 0%)."""
    if v == 0 or v >= 0.1:
        return f"{v:.0%}"
    return f"{v:.1%}" if v >= 0.01 else f"{v:.2%}"


def intersect_heatmap(df: "pl.DataFrame", output: str | os.PathLike) -> Path:
    """The heatmap of intersect()'s share_pairs, one panel per strategy, as a PNG file."""
    return write_png(heatmap_figure(df), output)


def winrate_figure(df: "pl.DataFrame"):
    """Each comparison's win rate with its 95% bootstrap interval (and Wilson's, thinner), by strategy and
    iteration, against the 50% line: an interval that crosses it is not distinguishable from the baseline."""
    Figure = figure_class()
    rows = [r for r in df.iter_rows(named=True) if r["win_rate"] is not None]
    fig = Figure(figsize=(7, 0.5 + 0.45 * max(len(rows), 1)))
    ax = fig.add_subplot()
    labels = []
    for y, r in enumerate(rows):
        ax.plot([r["wilson_low"], r["wilson_high"]], [y + 0.18] * 2, color="0.6", lw=1)
        ax.errorbar(r["win_rate"], y, xerr=[[r["win_rate"] - r["ci_low"]], [r["ci_high"] - r["win_rate"]]],
                    fmt="o", color="C0" if r["ci_low"] > 0.5 else "C3" if r["ci_high"] < 0.5 else "0.2", capsize=3)
        labels.append(f"{r['strategy'] or r['name']} it{r['iteration'] or '-'}")
    ax.axvline(0.5, color="0.5", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate against the baseline (95% bootstrap CI; grey: Wilson)")
    fig.tight_layout()
    return fig
