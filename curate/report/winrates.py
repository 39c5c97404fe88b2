"""The paper's Tables 1 and 2 for a run: each strategy's win rate against the baseline, by iteration, with intervals.

    from curate.report.winrates import winrate_table
    df = winrate_table(Workspace("workspace-demo"), run_id="demo")

Rows come from the `winrates` table (one per comparison, written by `curate eval winrate` and `curate run`'s eval
step); the latest row of each (strategy, iteration) counts. Cells print as "win% [low, high]" (95% bootstrap); a
row says whether the interval excludes 50% (distinguishable from noise) or not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CurateError
from ..workspace import Workspace, query_frame

if TYPE_CHECKING:
    import polars as pl

WINRATES_SQL = """
select * exclude (rn) from (
    select run_id, strategy, baseline, iteration, name, judge_id, judged, wins, ties, losses, invalid, win_rate, ci_low,
           ci_high, wilson_low, wilson_high, lc_win_rate, consistency,
           cast(json_extract(stats, '$.identical_responses') as integer) as identical, a_policy, b_policy,
           strftime(created_at, '%Y-%m-%dT%H:%M:%SZ') as created_at,
           row_number() over (partition by coalesce(run_id, name), strategy, iteration order by created_at desc) as rn
    from winrates
    where ($run_id is null or run_id = $run_id)
)
where rn = 1
order by strategy, iteration
"""


def winrate_table(ws: Workspace, run_id: str | None = None) -> "pl.DataFrame":
    """One row per (strategy, iteration) of the run (every comparison when run_id is None)."""
    ws.require()
    with ws.connect() as con:
        df = query_frame(con, WINRATES_SQL, {"run_id": run_id})
    if df.height == 0:
        where = f" for run {run_id!r}" if run_id else ""
        raise CurateError(f"No win rates{where} in {ws.root}: `curate run` with a [run] baseline makes them in its "
                          "eval step, or run `curate eval winrate --a POLICY --b POLICY`.")
    import polars as pl

    from .. import strategies

    rows = sorted(df.iter_rows(named=True), key=lambda r: (r["run_id"] or "", strategies.order_key(r["strategy"] or
                                                                                               r["name"]),
                                                            r["iteration"] or 0))
    return pl.DataFrame(rows, schema=df.schema)


def cell(rate, lo, hi) -> str:
    return "-" if rate is None else f"{100 * rate:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def pivot(df: "pl.DataFrame") -> tuple[list[str], list[list[str]]]:
    """The paper's layout: a row per (run, strategy), a column per iteration, "win% [low, high]" cells; a
    comparison made outside a run (`curate eval winrate`) is a row of its own, named after it, in column "-"."""
    iterations = sorted({i for i in df["iteration"].to_list() if i is not None})
    has_plain = any(i is None for i in df["iteration"].to_list())
    columns = iterations + ([None] if has_plain else [])
    runs = {r for r in df["run_id"].to_list() if r is not None}
    table: dict[tuple, dict] = {}
    for r in df.iter_rows(named=True):
        label = r["strategy"] if r["run_id"] is not None else r["name"]
        if r["run_id"] is not None and len(runs) > 1:
            label = f"{r['run_id']}: {label}"
        table.setdefault((r["run_id"] or "", label), {})[r["iteration"]] = r
    rows = [[label] + [cell(by[i]["win_rate"], by[i]["ci_low"], by[i]["ci_high"]) if i in by else "-"
                       for i in columns] for (_, label), by in table.items()]
    header = ["strategy" if runs else "comparison"] + [
        f"iteration {i} win % [95% CI]" if i is not None else "win % [95% CI]" for i in columns]
    return header, rows


def verdicts(df: "pl.DataFrame") -> list[str]:
    """One plain sentence per comparison: is the difference distinguishable from noise?"""
    lines = []
    for r in df.iter_rows(named=True):
        if r["win_rate"] is None:
            lines.append(f"{r['name']}: nothing judged ({r['invalid']} invalid)")
            continue
        excluded = r["ci_low"] > 0.5 or r["ci_high"] < 0.5
        side = "better than" if r["ci_low"] > 0.5 else "worse than"
        what = f"{r['strategy']} it{r['iteration']} vs {r['baseline']}" if r["run_id"] else r["name"]
        line = (f"{what}: {100 * r['win_rate']:.1f}% of {r['judged']} judged prompts ({r['wins']} wins, {r['ties']} "
                f"ties, {r['losses']} losses), 95% CI [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}], Wilson "
                f"[{100 * r['wilson_low']:.1f}, {100 * r['wilson_high']:.1f}]: "
                + (f"{side} the baseline (the interval excludes 50%)" if excluded
                   else "not distinguishable from the baseline (the interval contains 50%)"))
        notes = []
        if r.get("identical"):
            notes.append(f"{r['identical']} prompts answered identically by both policies (ties, not judged)")
        if r["consistency"] is not None and r["consistency"] < 0.5:
            asked = r["judged"] - (r.get("identical") or 0)
            notes.append(f"the judge kept its verdict when the order was swapped on {round(r['consistency'] * asked)} "
                         f"of {asked} prompts: it follows position more than the answers")
        lines.append(line + ("; " + "; ".join(notes) if notes else ""))
    return lines
