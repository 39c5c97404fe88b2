"""Draws the report's figures: CDF and histograms of the similarities, the overlap heatmap, win rates, preference
strength (histogram by category, std against mean), as PNG bytes or files.

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


# incorrect red, ambiguous orange, strong blue; a category the report does not know is grey
CATEGORY_COLORS = {"incorrect": "C3", "ambiguous": "C1", "strong": "C0"}
MAX_POINTS = 20_000  # pairs drawn in the std-vs-mean scatter (a seeded sample beyond): the file stays small


def _by_category(rows: "pl.DataFrame") -> list:
    """(category, its rows, colour) of each category that has rows, weakest first."""
    present = set(rows["category"].to_list())
    order = [c for c in CATEGORY_COLORS if c in present] + sorted(present - set(CATEGORY_COLORS))
    return [(c, rows.filter(rows["category"] == c), CATEGORY_COLORS.get(c, "0.5")) for c in order]


def strength_histogram_figure(rep):
    """Histogram of the mean strength, stacked by category, with the line mean = 0 (Secrets of RLHF II, 2.2)."""
    import numpy as np

    fig = figure_class()(figsize=(7.5, 4), layout="constrained")
    ax = fig.add_subplot()
    parts = _by_category(rep.rows)
    values = rep.rows["mean"].to_numpy()
    bins = np.histogram_bin_edges(values, bins=40)
    width = bins[1] - bins[0]
    if values.min() < 0 < values.max():  # 0 an edge, so no bar mixes incorrect (mean < 0) with the rest
        bins = np.arange(np.floor(values.min() / width), np.ceil(values.max() / width) + 1) * width
    ax.hist([p["mean"].to_numpy() for _, p, _ in parts], bins=bins, stacked=True, color=[c for *_, c in parts],
            label=[f"{name}: {p.height:,} ({p.height / rep.pairs:.1%})" for name, p, _ in parts])
    ax.axvline(0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel(f"mean of d = r(chosen) - r(rejected) over {rep.n_models or 'M'} models")
    ax.set_ylabel("pairs")
    ax.set_title(f"Preference strength of {rep.pairs:,} pairs ({rep.identity})", fontsize="medium")
    ax.legend(fontsize="small")
    return fig


def strength_std_figure(rep):
    """The paper's Figure 2: left, each pair's std against its mean; right, the pairs sorted by mean in 20 equal
    groups, the mean of the means (bars) and of the stds (line): the std is U-shaped (section 2.2)."""
    import numpy as np

    Figure = figure_class()
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    rows = rep.rows
    if rows.height > MAX_POINTS:
        rows = rows.sample(MAX_POINTS, seed=0)
    for name, part, color in _by_category(rows):
        left.scatter(part["mean"].to_numpy(), part["std"].to_numpy(), s=5, alpha=0.4, color=color, label=name,
                     linewidths=0)
    left.axvline(0, color="black", linestyle="--", linewidth=1)
    left.set_xlabel("mean of d")
    left.set_ylabel("std of d")
    left.set_title("each pair" + (f" ({MAX_POINTS:,} of {rep.pairs:,} drawn)" if rows.height < rep.pairs else ""))
    left.legend(fontsize="small", markerscale=3)

    g = rep.groups
    x, means, stds = g["group"].to_numpy(), g["mean_of_mean"].to_numpy(), g["mean_of_std"].to_numpy()
    right.bar(x, means, color=np.where(means < 0, "C3", "C0"), alpha=0.6, label="mean of the means")
    right.axhline(0, color="black", linewidth=0.8)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel(f"group of pairs sorted by mean ({len(x)} equal groups)")
    right.set_ylabel("mean of the means")
    twin = right.twinx()
    twin.plot(x, stds, "o-", color="black", label="mean of the stds")
    twin.set_ylabel("mean of the stds")
    twin.set_ylim(bottom=0)
    right.set_title("by group (Secrets of RLHF II, Figure 2)")
    handles = right.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    right.legend(handles, [h.get_label() for h in handles], fontsize="small", loc="upper left")
    fig.suptitle(f"Standard deviation against mean strength ({rep.identity})", fontsize="medium")
    return fig
