"""`curate report`: overlap of subsets across iterations, similarity distributions, one HTML report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import err, output_options, workspace_option


@click.group()
def report():
    """Reports on subsets and similarities across FRFT iterations."""


@report.command()
@workspace_option
@click.option("--branch", default=None, help="Only subsets of this branch (default: every branch; FRFT(alpha) "
                                             "runs one branch per strategy from iteration 2 on).")
@click.option("--strategy", "-s", "strategies", multiple=True,
              help="Only this strategy (repeatable; default: every strategy with subsets).")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also draw a heatmap of share_pairs per strategy to this PNG file.")
@output_options
def intersect(workspace, branch, strategies, png, fmt, output):
    """Overlap of a strategy's subsets in iterations i < j (the paper's Table 3).

    Each (strategy, iteration) is represented by its most recently created subset. share_pairs is
    the share of the pairs picked in iteration i that are picked again in j; share_prompts the same
    over distinct prompts; jaccard_pairs is |A∩B| / |A∪B|.

    \b
    Examples:
      curate report intersect
      curate report intersect --strategy split-even --png overlap.png
      curate report intersect --format csv --output overlap.csv
    """
    from ..query import frame_result, write_result
    from ..report import intersect as run
    from ..workspace import Workspace

    df = run(Workspace(workspace), branch=branch, strategies=list(strategies) or None)
    if png:
        from ..report import intersect_heatmap

        err(f"wrote the heatmap to {intersect_heatmap(df, png)}")
    shown = df
    if fmt == "table":
        import polars as pl

        shown = df.with_columns(pl.col("share_pairs", "share_prompts", "jaccard_pairs").round(4))
    con, res = frame_result(shown)
    try:
        n = write_result(res, fmt, None if output else sys.stdout, Path(output) if output else None, 10_000, 40)
    finally:
        con.close()
    if output:
        err(f"wrote {n:,} rows to {output}")


@report.command()
@workspace_option
@click.option("--iteration", "-i", "iterations", type=int, multiple=True,
              help="Iteration to draw (repeatable; default: every scored iteration).")
@click.option("--branch", default=None, help="Only this branch (default: every branch, one curve per branch "
                                             "and iteration).")
@click.option("--eps", type=float, default=0.2, show_default=True,
              help="Draws the similarity floor 1 - eps as a vertical line.")
@click.option("--aggregate", type=click.Choice(["mean", "max"]), default="mean", show_default=True,
              help="With several samples per prompt: their mean or max similarity.")
@click.option("--model", "-m", default=None, help="Embedding model_id (or its name prefix) when several scored.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="PNG file (default: <workspace>/reports/cdf-it<N...>.png).")
def cdf(workspace, iterations, branch, eps, aggregate, model, output):
    """CDF of pos_sim and neg_sim per iteration (the paper's Figure 2), as a PNG.

    Prints n, mean, median, p90 and the share above the floor 1 - eps per iteration and measure.

    \b
    Examples:
      curate report cdf
      curate report cdf --iteration 1 --iteration 2 --eps 0.2 --output fig2.png
    """
    import polars as pl

    from ..query import frame_result, write_result
    from ..report import cdf as run
    from ..workspace import Workspace

    rep = run(Workspace(workspace), iterations=list(iterations) or None, branch=branch, eps=eps,
              aggregate=aggregate, model=model, output=output)
    stats = rep.stats.with_columns(pl.col("mean", "median", "p90", "above_floor").round(4))
    con, res = frame_result(stats)
    try:
        write_result(res, "table", sys.stdout, None, 10_000, 40)
    finally:
        con.close()
    err(f"wrote {rep.path}")


@report.command()
@workspace_option
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="HTML file (default: <workspace>/reports/report.html).")
@click.option("--eps", type=float, default=None,
              help="Similarity floor 1 - eps drawn in the figures and used for the above_floor shares "
                   "(default: the eps the subsets were made with, one floor per distinct eps; 0.2 when no "
                   "subset says).")
def html(workspace, output, eps):
    """One self-contained HTML report, readable offline.

    Run summary (tables, steps), subset sizes, similarity histograms and CDF, the overlap
    across iterations, and the top rows of every subset; figures are inlined as PNG data.
    The floors 1 - eps are those the subsets were cut at, unless --eps gives one.
    """
    from ..report import html_report
    from ..workspace import Workspace

    err(f"wrote {html_report(Workspace(workspace), output=output, eps=eps)}")
