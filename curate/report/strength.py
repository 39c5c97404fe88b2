"""Summarises one identity of the `strength` table: categories, deciles, the std-vs-mean U shape (issue 16).

    from curate.report.strength import strength_report, write_strength_figures
    rep = strength_report(Workspace("workspace"))            # the newest identity; identity="probe" picks one
    rep.to_dict()                                            # what `curate report strength --json` prints
    write_strength_figures(ws, rep)                          # histogram and Figure 2 under <workspace>/reports

Secrets of RLHF II, section 2.2: each pair's preference strength is the mean (and the std) over M models of
d = r(chosen) - r(rejected); sorting the pairs by the mean and cutting them into 20 equal groups, the mean of
the stds per group is U-shaped (Figure 2). Groups and deciles are "equal" as np.array_split and SQL's ntile make
them: sizes differ by at most one, the larger groups first; ties in the mean are ordered by pair_id.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CurateError
from ..stats import wilson
from ..strength_rows import pick_identity
from ..workspace import Workspace, query_frame

if TYPE_CHECKING:
    import polars as pl

CATEGORIES = ("incorrect", "ambiguous", "strong")  # the table's categories, weakest first
GROUPS = 20  # section 2.2: "divide the data into 20 groups" (Figure 2)
DECILES = 10

SUMMARY_SQL = """
select min(method) as method, min(n_models) as n_models, min(folds) as folds, min(features) as features,
       strftime(max(created_at), '%Y-%m-%dT%H:%M:%SZ') as created_at
from strength
where identity = $identity
"""

# One row per pair of the identity, weakest first; subset from `pairs` ('(none)' where the pair has none).
ROWS_SQL = """
with pair_subset as (select pair_id, min(subset) as subset from pairs group by pair_id)
select s.pair_id, s.mean, s.std, coalesce(s.category, '(none)') as category, coalesce(p.subset, '(none)') as subset
from strength s
left join pair_subset p using (pair_id)
where s.identity = $identity and s.mean is not null
order by s.mean, s.pair_id
"""


@dataclass
class StrengthReport:
    """One identity's strength rows and the tables made from them (frames, so they print, serialise and draw)."""

    identity: str
    method: str | None
    n_models: int | None
    folds: int | None
    features: str | None
    created_at: str | None
    identities: int  # how many identities the table holds (the page says when there are others)
    rows: "pl.DataFrame"  # pair_id, mean, std, category, subset; sorted by mean
    categories: "pl.DataFrame"  # category, pairs, share, share_low, share_high
    deciles: "pl.DataFrame"  # decile, pairs, mean_of_mean, mean_of_std, share_incorrect
    groups: "pl.DataFrame"  # group, pairs, mean_of_mean, mean_of_std (Figure 2)
    by_subset: "pl.DataFrame"  # subset, category, pairs, share, share_low, share_high; empty with one subset

    @property
    def pairs(self) -> int:
        return self.rows.height

    def to_dict(self) -> dict:
        """Everything but the per-pair rows, as JSON-ready values."""
        return {
            "identity": self.identity, "method": self.method, "n_models": self.n_models, "folds": self.folds,
            "features": self.features, "created_at": self.created_at, "pairs": self.pairs,
            "categories": self.categories.to_dicts(), "deciles": self.deciles.to_dicts(),
            "groups": self.groups.to_dicts(), "by_subset": self.by_subset.to_dicts(),
        }


def strength_report(ws: Workspace, identity: str | None = None) -> StrengthReport:
    """The report of one identity: `identity` exact or a unique prefix; None, the newest (curate.strength_rows)."""
    ws.require()
    with ws.connect() as con:
        chosen = pick_identity(con, identity).identity
        n_identities = con.execute("select count(distinct identity) from strength").fetchall()[0][0]
        meta = query_frame(con, SUMMARY_SQL, {"identity": chosen}).row(0, named=True)
        rows = query_frame(con, ROWS_SQL, {"identity": chosen})
    if rows.height == 0:
        raise CurateError(f"The strength rows of {chosen!r} have no mean: run `curate strength` again for them.")
    subsets = rows["subset"].unique().to_list()
    return StrengthReport(
        identity=chosen, **meta, identities=n_identities, rows=rows, categories=category_shares(rows),
        deciles=equal_groups(rows, DECILES, "decile"),
        groups=equal_groups(rows, GROUPS, "group").drop("share_incorrect"),
        by_subset=category_shares(rows, by="subset") if len(subsets) > 1 else _empty_by_subset(),
    )


def group_numbers(n: int, k: int) -> list[int]:
    """1-based group of each of n sorted rows cut into k equal groups (min(n, k) groups when n < k)."""
    k = min(k, n)
    sizes = [n // k + (1 if g < n % k else 0) for g in range(k)]
    return [g + 1 for g, size in enumerate(sizes) for _ in range(size)]


def equal_groups(rows: "pl.DataFrame", k: int, name: str) -> "pl.DataFrame":
    """rows (sorted by mean) cut into k equal groups: pairs, mean of the means, mean of the stds, share incorrect."""
    import polars as pl

    return (rows.with_columns(pl.Series(name, group_numbers(rows.height, k), dtype=pl.Int64))
            .group_by(name, maintain_order=True)
            .agg(pl.len().cast(pl.Int64).alias("pairs"), pl.col("mean").mean().alias("mean_of_mean"),
                 pl.col("std").mean().alias("mean_of_std"),
                 (pl.col("category") == "incorrect").mean().alias("share_incorrect")))


def category_shares(rows: "pl.DataFrame", by: str | None = None) -> "pl.DataFrame":
    """Pairs and share of each category (every one of CATEGORIES, zeros included), with the share's 95% Wilson
    interval; by a column (subset) when given, one block per value."""
    import polars as pl

    out = []
    blocks = rows.partition_by(by, maintain_order=True, as_dict=True) if by else {(): rows}
    for key, block in sorted(blocks.items()):
        counts = dict(block.group_by("category").len().iter_rows())
        names = list(CATEGORIES) + sorted(c for c in counts if c not in CATEGORIES)  # an unknown one still shows
        for category in names:
            k, n = counts.get(category, 0), block.height
            low, high = wilson(k, n)
            out.append({**({by: key[0]} if by else {}), "category": category, "pairs": k,
                        "share": k / n, "share_low": low, "share_high": high})
    schema = {**({by: pl.String} if by else {}), "category": pl.String, "pairs": pl.Int64, "share": pl.Float64,
              "share_low": pl.Float64, "share_high": pl.Float64}
    return pl.DataFrame(out, schema=schema)


def _empty_by_subset() -> "pl.DataFrame":
    import polars as pl

    return pl.DataFrame(schema={"subset": pl.String, "category": pl.String, "pairs": pl.Int64, "share": pl.Float64,
                                "share_low": pl.Float64, "share_high": pl.Float64})


def figure_stem(identity: str) -> str:
    """A file-name-safe stem for an identity's figures: the identity itself where it is safe and short, else a
    readable start plus a hash (two identities never share a file)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", identity).strip("-.") or "identity"
    if safe == identity and len(safe) <= 48:
        return f"strength-{safe}"
    return f"strength-{safe[:40].rstrip('-.')}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def write_strength_figures(ws: Workspace, rep: StrengthReport,
                           folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """Draw the histogram by category and the std-vs-mean figure to folder (default <workspace>/reports)."""
    from .figures import strength_histogram_figure, strength_std_figure, write_png

    base = Path(folder) if folder else ws.reports_dir()
    stem = figure_stem(rep.identity)
    return {
        "histogram": write_png(strength_histogram_figure(rep), base / f"{stem}-histogram.png"),
        "std_vs_mean": write_png(strength_std_figure(rep), base / f"{stem}-std-vs-mean.png"),
    }
