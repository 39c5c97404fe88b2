"""`curate report`: overlap of subsets across iterations, similarity distributions, one HTML report."""

from __future__ import annotations

import json

import click

from .options import emit_frame, err, json_option, output_options, quiet_option, workspace_option


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
@quiet_option
def intersect(workspace, branch, strategies, png, fmt, output, quiet):
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
    from ..report import intersect as run
    from ..workspace import Workspace

    df = run(Workspace(workspace), branch=branch, strategies=list(strategies) or None)
    if png:
        from ..report import intersect_heatmap

        path = intersect_heatmap(df, png)
        if not quiet:
            err(f"wrote the heatmap to {path}")
    shown = df
    if fmt == "table":
        import polars as pl

        shown = df.with_columns(pl.col("share_pairs", "share_prompts", "jaccard_pairs").round(4))
    emit_frame(shown, fmt, output, quiet=quiet)


@report.command()
@workspace_option
@click.option("--iteration", "-i", "iterations", type=int, multiple=True,
              help="Iteration to draw (repeatable; default: every scored iteration).")
@click.option("--branch", default=None, help="Only this branch (default: every branch, one curve per branch "
                                             "and iteration).")
@click.option("--eps", type=float, default=None,
              help="Draw the similarity floor 1 - eps (default: the eps the subsets were made with, one floor each; "
                   "0.2 when no subset says).")
@click.option("--aggregate", type=click.Choice(["mean", "max"]), default="mean", show_default=True,
              help="With several samples per prompt: their mean or max similarity.")
@click.option("--model", "-m", default=None, help="Embedding model_id (or its name prefix) when several scored.")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Where to draw the figure (default: <workspace>/reports/cdf-it<N...>.png).")
@output_options
@quiet_option
def cdf(workspace, iterations, branch, eps, aggregate, model, png, fmt, output, quiet):
    """CDF of pos_sim and neg_sim per iteration (the paper's Figure 2), as a PNG.

    Prints n, mean, median, p90 and the share above the floor 1 - eps per iteration and measure.

    \b
    Examples:
      curate report cdf
      curate report cdf --iteration 1 --iteration 2 --eps 0.2 --png fig2.png --format csv
    """
    import polars as pl

    from ..report import cdf as run
    from ..workspace import Workspace

    rep = run(Workspace(workspace), iterations=list(iterations) or None, branch=branch, eps=eps,
              aggregate=aggregate, model=model, output=png)
    stats = rep.stats
    if fmt == "table":
        stats = stats.with_columns(pl.col(c).round(4) for c in stats.columns if c in ("mean", "median", "p90")
                                   or c.startswith("above"))
    emit_frame(stats, fmt, output, quiet=quiet)
    if not quiet:
        if rep.note:
            err(rep.note)
        err(f"wrote {rep.path}")


@report.command()
@workspace_option
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="HTML file (default: <workspace>/reports/report.html).")
@click.option("--eps", type=float, default=None,
              help="Similarity floor 1 - eps drawn in the figures and used for the above_floor shares "
                   "(default: the eps the subsets were made with, one floor per distinct eps; 0.2 when no "
                   "subset says).")
@json_option
@quiet_option
def html(workspace, output, eps, as_json, quiet):
    """One self-contained HTML report, readable offline.

    Run summary (tables, steps), subset sizes, similarity histograms and CDF, the overlap
    across iterations, and the top rows of every subset; figures are inlined as PNG data.
    The floors 1 - eps are those the subsets were cut at, unless --eps gives one.
    """
    from ..report import html_report
    from ..workspace import Workspace

    path = html_report(Workspace(workspace), output=output, eps=eps)
    if as_json:
        click.echo(json.dumps({"html": str(path)}))
    if not quiet:
        err(f"wrote {path}")


@report.command()
@workspace_option
@click.option("--run", "run_id", default=None, help="Only this run's comparisons (default: every comparison).")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also draw the win rates with their intervals to this PNG file.")
@click.option("--long", "long_form", is_flag=True, help="Every statistic, one row per comparison, instead of the "
                                                        "paper's layout.")
@output_options
@quiet_option
def winrate(workspace, run_id, png, long_form, fmt, output, quiet):
    """Win rates against the baseline, by strategy and iteration (FRFT Tables 1-2).

    Each cell is the win rate in % with its 95% bootstrap interval ((wins + ties/2) / judged prompts); below the
    table, one line per comparison says whether the interval excludes 50%.

    \b
    Examples:
      curate report winrate --run demo
      curate report winrate --long --format csv --output winrates.csv
    """
    import polars as pl

    from ..report.winrates import pivot, verdicts, winrate_table
    from ..workspace import Workspace

    df = winrate_table(Workspace(workspace), run_id)
    if png:
        from ..report.figures import winrate_figure, write_png

        path = write_png(winrate_figure(df), png)
        if not quiet:
            err(f"wrote {path}")
    if long_form:
        emit_frame(df.drop("a_policy", "b_policy"), fmt, output, quiet=quiet)
    else:
        columns, rows = pivot(df)
        emit_frame(pl.DataFrame(rows, schema=columns, orient="row"), fmt, output, width=60, quiet=quiet)
    if not quiet:
        judges = ", ".join(sorted(set(df["judge_id"].to_list())))
        err(f"judge: {judges}")
        for line in verdicts(df):
            err(line)


@report.command()
@workspace_option
@click.option("--strength", "identity", default=None, metavar="IDENTITY",
              help="Which strength rows: an identity of the strength table, or a unique prefix of one (default: the "
                   "most recently computed).")
@click.option("--figures", type=click.Path(file_okay=False), default=None,
              help="Folder for the two PNG figures (default: <workspace>/reports).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the tables (or the JSON) to FILE instead of stdout.")
@json_option
@quiet_option
def strength(workspace, identity, figures, output, as_json, quiet):
    """Preference strength of the pairs: categories, deciles, the U shape of the std.

    From the rows `curate strength` stored (Secrets of RLHF II, section 2.2): pairs and share per category
    (incorrect: mean < 0, ambiguous, strong) with 95% Wilson intervals, per source subset when there are several;
    a table by decile of the mean; the pairs sorted by mean in 20 equal groups, each with the mean of the means
    and of the stds (the paper's Figure 2). Draws a histogram of the mean by category and the std against the
    mean.

    \b
    Examples:
      curate report strength
      curate report strength --strength probe --json -o strength.json
    """
    import io

    from ..atomic import write_text
    from ..report.strength import strength_report, write_strength_figures
    from ..workspace import Workspace

    ws = Workspace(workspace)
    rep = strength_report(ws, identity)
    paths = write_strength_figures(ws, rep, figures)
    if as_json:
        text = json.dumps({**rep.to_dict(), "figures": {k: str(p) for k, p in paths.items()}}, indent=2) + "\n"
    else:
        buf = io.StringIO()
        _print_strength(rep, buf)
        text = buf.getvalue()
    if output:
        write_text(output, text)
    else:
        click.echo(text, nl=False)
    if not quiet:
        others = rep.identities - 1
        if others:
            err(f"{others} other strength identit{'y' if others == 1 else 'ies'} in this workspace: pick one with "
                "--strength.")
        err(f"wrote {paths['histogram']} and {paths['std_vs_mean']}" + (f" and {output}" if output else ""))


def _pct_interval(share, low, high) -> str:
    return f"{100 * share:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _f4(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _print_strength(rep, file) -> None:
    """The report as text tables (categories, subsets, deciles, groups) on file."""
    from ..display import line, print_table

    line(f"strength {rep.identity}: method {rep.method}, {rep.n_models} models, {rep.folds} folds"
         + (f", features {rep.features}" if rep.features else "") + f", {rep.pairs:,} pairs, computed {rep.created_at}",
         file=file)
    print_table(["category", "pairs", "share % [95% Wilson]"],
                [(r["category"], f"{r['pairs']:,}", _pct_interval(r["share"], r["share_low"], r["share_high"]))
                 for r in rep.categories.iter_rows(named=True)], title="categories", file=file)
    if rep.by_subset.height:
        categories = rep.categories["category"].to_list()
        rows = []
        for (subset,), block in rep.by_subset.partition_by("subset", maintain_order=True, as_dict=True).items():
            cells = {r["category"]: _pct_interval(r["share"], r["share_low"], r["share_high"])
                     for r in block.iter_rows(named=True)}
            rows.append((subset, f"{block['pairs'].sum():,}", *(cells.get(c, "-") for c in categories)))
        print_table(["subset", "pairs", *(f"{c} % [95% Wilson]" for c in categories)], rows, title="by subset",
                    file=file)
    print_table(["decile", "pairs", "mean of mean", "mean of std", "incorrect %"],
                [(r["decile"], f"{r['pairs']:,}", _f4(r["mean_of_mean"]), _f4(r["mean_of_std"]),
                  f"{100 * r['share_incorrect']:.1f}") for r in rep.deciles.iter_rows(named=True)],
                title="deciles of the mean (1: weakest)", file=file)
    print_table(["group", "pairs", "mean of mean", "mean of std"],
                [(r["group"], f"{r['pairs']:,}", _f4(r["mean_of_mean"]), _f4(r["mean_of_std"]))
                 for r in rep.groups.iter_rows(named=True)],
                title=f"Figure 2: {rep.groups.height} equal groups by mean", file=file)
