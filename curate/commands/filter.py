"""`curate filter`, `curate subsets` and `curate explain`: pick FRFT subsets with SQL and look at them."""

from __future__ import annotations

import json

import click

from ..filters import DROP_CATEGORIES, FilterSettings
from ..settings import click_options
from .options import emit, err, json_option, output_options, param_option, quiet_option, workspace_option


class StrategyChoice(click.Choice):
    """The registered strategies (curate.strategies), read when the command runs: one registered later counts."""

    def __init__(self):
        super().__init__([])

    @property
    def choices(self):
        from ..strategies import names

        return names()

    @choices.setter
    def choices(self, value):
        pass

    def get_metavar(self, param, ctx=None):
        return "NAME"


class StrategyOption(click.Option):
    """--strategy, whose help lists the registered strategies with their paper reference when it is shown."""

    def get_help_record(self, ctx):
        from ..strategies import REGISTRY

        self.help = "Built-in filter: " + ", ".join(f"{s.name} ({s.label})" for s in REGISTRY.values()) + "."
        return super().get_help_record(ctx)


@click.command("filter")
@workspace_option
@click.option("--strategy", "-s", cls=StrategyOption, type=StrategyChoice(), default=None,
              help="Built-in filter (the registered strategies).")
@click.option("--all-strategies", is_flag=True, help="Run the paper's Parts 1-4 (the registered strategies with a "
                                                      "paper part), one subset each.")
@click.option("--sql-file", type=click.Path(dir_okay=False), default=None,
              help="Your own filter: one SELECT returning pair_id (and optional rank, score, picked_by, reason).")
@param_option("Bind $NAME in --sql-file to VALUE.")
@click_options(FilterSettings)
@click.option("--iteration", "-i", type=int, default=None, help="Scored iteration (default: the latest).")
@click.option("--branch", default="main", show_default=True, help="FRFT branch.")
@click.option("--model", "-m", default=None, help="Embedding model_id (or its name prefix) when several scored.")
@click.option("--name", default=None, help="Subset name (default frft-<strategy>-it<N>, clean, flip; -clean/-flip "
                                            "with --clean/--flip); an existing one is replaced.")
@click.option("--drop-below", type=float, default=None, metavar="F",
              help="clean: drop the pairs whose strength percentile is below F (0.1: the weakest 10%).")
@click.option("--drop-category", "drop_categories", type=click.Choice(DROP_CATEGORIES), multiple=True,
              help="clean: drop the pairs of this strength category instead (incorrect: mean < 0). Repeatable.")
@click.option("--bottom", type=float, default=None, metavar="F",
              help="flip: flip chosen and rejected of the pairs whose strength percentile is below F.")
@click.option("--clean", type=float, default=None, metavar="F",
              help="On top of any strategy: leave the pairs whose strength percentile is below F out of the "
                   "candidates before the filter picks (its size is filled from the others).")
@click.option("--flip", type=float, default=None, metavar="F",
              help="On top of any strategy: flip the picked pairs whose strength percentile is below F.")
@click.option("--strength", default=None, metavar="ID",
              help="Strength identity the percentiles come from (or a unique prefix; default: the latest computed).")
@json_option
@quiet_option
def filter_(workspace, strategy, all_strategies, sql_file, params, eps, size, iteration, branch, aggregate, distinct,
            seed, model, name, drop_below, drop_categories, bottom, clean, flip, strength, as_json, quiet):
    """Pick a subset of pref pairs: an FRFT strategy, your SQL, or clean / flip.

    clean and flip (and --clean / --flip on top of any strategy) use the preference strength that `curate
    strength` stores; the FRFT strategies use the similarities of a scored iteration.

    \b
    Examples:
      curate filter --strategy split-even --eps 0.2          # the paper's Part 2, 2,000 pairs
      curate filter --all-strategies --eps 0.2 --iteration 2
      curate filter --sql-file my_filter.sql -p min_len 50
      curate filter --strategy random --size 2000 --seed 0   # the vanilla baseline's random pairs
      curate filter --strategy all                           # every scored pref pair
      curate filter --strategy clean --drop-below 0.1        # every pref pair but the weakest 10%
      curate filter --strategy clean --drop-category incorrect
      curate filter --strategy flip --bottom 0.1             # the weakest 10% flipped
      curate filter --strategy split-even --eps 0.2 --clean 0.1 --flip 0.1
    """
    from .. import strategies
    from ..filters import run_filter
    from ..workspace import Workspace

    chosen = sum(x is not None and x is not False for x in (strategy, all_strategies or None, sql_file))
    if chosen != 1:
        raise click.UsageError("give one of --strategy, --all-strategies or --sql-file.")
    if name and all_strategies:
        raise click.UsageError(f"--name names one subset; --all-strategies makes {len(strategies.paper_parts())} "
                               "(named frft-<strategy>-it<N>).")
    halves = [s for s in strategies.names() if strategies.get(s).halves]
    if distinct and strategy and strategy not in halves:
        raise click.UsageError(f"--distinct applies to {', '.join(halves)} (a pair picked by both halves), not to "
                               f"{strategy}.")
    if distinct and all_strategies and not quiet:
        err(f"note: --distinct applies to {', '.join(halves)} only")
    ws = Workspace(workspace)
    runs = [dict(strategy=s) for s in strategies.paper_parts()] if all_strategies else \
        [dict(strategy=strategy, sql_file=sql_file)]
    results = []
    for spec in runs:
        own_sql = spec.get("strategy") is None  # a user's filter: run_filter checks that it uses $distinct
        r = run_filter(ws, **spec, eps=eps, size=size, iteration=iteration, branch=branch, aggregate=aggregate,
                       distinct=distinct and (own_sql or spec["strategy"] in halves), seed=seed, model=model, name=name,
                       user_params=params, strength=strength, drop_below=drop_below, drop_categories=drop_categories,
                       bottom=bottom, clean=clean, flip=flip)
        results.append(r)
        if not quiet:
            _summary(r)
    if as_json:
        click.echo(json.dumps([{
            "name": r.name, "subset_id": r.subset_id, "strategy": r.strategy, "branch": r.branch,
            "iteration": r.iteration, "params": r.params, "counts": r.counts, "replaced": r.replaced,
            "manifest": r.manifest} for r in results], indent=2))


def _summary(r) -> None:
    from .. import strategies

    c = r.counts
    if not r.reads_scores:  # clean, flip, or a user's filter over other tables: no floor, no similarity counts
        _strength_summary(r)
        return
    if r.strategy in strategies.baselines():  # no floor: the similarity counts say nothing about the pick
        seed = f", seed {r.params['seed']}" if "seed" in r.params else ""
        err(f"{r.name}: {r.rows:,} of {c['scored']:,} scored pairs ({r.strategy}{seed}, iteration {r.iteration}, "
            f"{r.seconds:.2f} s)")
        if r.short:
            err(f"  note: only {c['scored']:,} pairs are scored, fewer than --size {r.size:,}: the subset has them all")
        if r.replaced:
            err(f"  replaced the earlier subset named {r.name} (its manifest stays in manifests/)")
        _strength_notes(r)
        return
    twice = f", {c['picked_twice']:,} picked by both halves" if c["picked_twice"] else ""
    err(f"{r.name}: {r.rows:,} rows, {r.distinct_pairs:,} distinct pairs{twice} "
        f"({r.strategy}, eps {r.params['eps']:g}, floor {r.params['floor']:g}, iteration {r.iteration}, "
        f"{r.seconds:.2f} s)")
    left = " left after --clean" if "cleaned_out" in c else ""
    err(f"  of {c['scored']:,} scored pairs{left}: pos_sim above the floor {c['pos_above_floor']:,}, neg_sim "
        f"{c['neg_above_floor']:,}, both {c['both_above_floor']:,}, either {c['either_above_floor']:,}")
    if r.short and r.params["eps"] >= 2:  # the floor -1 lets every scored pair through: eps cannot help
        err(f"  note: the subset has {r.rows:,} rows, fewer than --size {r.size:,}: at eps 2 every scored pair is a "
            f"candidate, and {c['scored']:,} are scored. Generate (or import) and score samples for more prompts.")
    elif r.short:
        err(f"  note: fewer candidates pass the floor than --size {r.size:,}: the subset has {r.rows:,} rows "
            f"(raise --eps, at most 2, for more)")
    if r.replaced:
        err(f"  replaced the earlier subset named {r.name} (its manifest stays in manifests/)")
    _strength_notes(r)


def _strength_summary(r) -> None:
    """A filter that reads no scores: how many rows, how many flipped, and of how many measured pairs."""
    c, p = r.counts, r.params
    rule = ", ".join(f"{k.replace('_', '-')} {v if isinstance(v, str | float | int) else ' '.join(v)}"
                     for k, v in p.items() if k in ("drop_below", "drop_categories", "bottom"))
    of = f" of {c['measured']:,} measured pref pairs" if "measured" in c else ""
    flipped = f", {c['flipped']:,} flipped" if c.get("flipped") else ""
    err(f"{r.name}: {r.rows:,} rows{of}{flipped} ({r.strategy}{', ' + rule if rule else ''}, {r.seconds:.2f} s)")
    if r.replaced:
        err(f"  replaced the earlier subset named {r.name} (its manifest stays in manifests/)")
    _strength_notes(r)


def _strength_notes(r) -> None:
    c, p = r.counts, r.params
    if "strength" in p:
        err(f"  strength identity {p['strength']}")
    if "clean" in p:
        err(f"  --clean {p['clean']:g}: {c['cleaned_out']:,} of the weakest pairs were left out of the candidates")
    if "flip" in p:
        err(f"  --flip {p['flip']:g}: {c['flipped']:,} picked row(s) flipped")
    if c.get("unmeasured"):
        what = ("--clean and --flip treat them as not weak" if r.reads_scores else
                f"{r.strategy} leaves them out")
        err(f"  note: {c['unmeasured']:,} pref pairs have no strength under this identity: {what} (run `curate "
            "strength` again to measure them)")


@click.command()
@click.argument("name", required=False)
@workspace_option
@output_options
@click.option("--max-rows", type=int, default=100, show_default=True, help="Rows shown in --format table.")
@click.option("--width", type=int, default=40, show_default=True, help="Column width in --format table.")
@quiet_option
def subsets(name, workspace, fmt, output, max_rows, width, quiet):
    """List subsets with counts and parameters; with NAME, its pairs."""
    from ..query import run
    from ..subsets import LIST_SQL, PAIRS_SQL, list_params, subset_row
    from ..workspace import Workspace

    ws = Workspace(workspace).require()
    if name:
        with ws.connect() as con:
            sid = subset_row(con, name)["subset_id"]
        con, res = run(ws, PAIRS_SQL, {"subset_id": sid})
    else:
        con, res = run(ws, LIST_SQL, list_params())
    with con:
        emit(res, fmt, output, max_rows, width, quiet)


@click.command()
@click.argument("pair_id")
@click.option("--subset", required=True, help="Subset name (see `curate subsets`).")
@workspace_option
@json_option
@quiet_option
def explain(pair_id, subset, workspace, as_json, quiet):
    """Why PAIR_ID (full id or unique prefix) is in or out of a subset."""
    from ..explain import explain as run
    from ..workspace import Workspace

    out = run(Workspace(workspace), pair_id, subset)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    from ..display import line, print_table

    print_table(["key", "value"], [(k, v) for k, v in out.items()
                                   if k not in ("picks", "reason", "warning") and v is not None],
                header=False, styles={0: "bold"})
    line(f"{'IN' if out['selected'] else 'OUT'}: {out['reason']}")
    if out.get("warning") and not quiet:
        err(f"warning: {out['warning']}")
