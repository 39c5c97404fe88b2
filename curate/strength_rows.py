"""The `strength` rows a command uses, and what the filters, the export and the trainer do with them.

    from curate.strength_rows import pick_identity, oriented_means
    with ws.connect() as con:
        chosen = pick_identity(con, None)       # the identity computed last
    means = oriented_means(ws, pair_ids, flipped, chosen.identity)

`curate strength` (curate/strength/) stores rows under an identity (method, features or base model, M, K,
seed); several identities may coexist and none replaces another. Every consumer picks ONE the same way:
`--strength ID` is that identity (exact, or a unique prefix); without it, the identity with the most recent
created_at; no strength rows at all is an error naming `curate strength`. The fractions of `--drop-below`,
`--bottom`, `--clean` and `--flip` are percentiles within that one identity (the table's `percentile`, 0 the
weakest), never mixed across identities.

The mean strength of a flipped row is taken in the flipped orientation: swapping chosen and rejected turns
d = r(chosen) - r(rejected) into -d for every model, so the mean becomes -mean (Secrets of RLHF II, eq. 4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .errors import CurateError

if TYPE_CHECKING:
    import duckdb

    from .workspace import Workspace

NO_STRENGTH_FIX = ("No strength rows in this workspace: run `curate strength` first (it scores every preference "
                   "pair and fills the `strength` table), then run this again.")
CATEGORIES = ("incorrect", "ambiguous", "strong")
# the views a filter picks its candidates from: `--clean` shadows each with the weakest pairs left out
CANDIDATE_VIEWS = ("pairs", "similarities", "sample_similarities", "generations")

IDENTITIES_SQL = """
select identity, any_value(method) as method, max(n_models) as n_models, max(folds) as folds,
       any_value(features) as features, cast(max(created_at) as varchar) as created_at, count(*) as pairs
from strength
group by identity
order by max(created_at) desc, identity
"""


@dataclass(frozen=True)
class StrengthIdentity:
    """One identity of the strength table: what made its scores, when, and how many pairs it measured."""

    identity: str
    method: str
    n_models: int
    folds: int
    features: str | None
    created_at: str
    pairs: int

    def record(self) -> dict:
        return asdict(self)


def pick_identity(con: "duckdb.DuckDBPyConnection", identity: str | None = None) -> StrengthIdentity:
    """The identity `--strength` names (exact or a unique prefix), or the most recently computed one."""
    rows = con.execute(IDENTITIES_SQL).fetchall()
    if not rows:
        raise CurateError(NO_STRENGTH_FIX)
    if identity is None:
        return StrengthIdentity(*rows[0])
    exact = [r for r in rows if r[0] == identity]
    matches = exact or [r for r in rows if r[0].startswith(identity)]
    if len(matches) == 1:
        return StrengthIdentity(*matches[0])
    names = [r[0] for r in (matches or rows)]
    if not matches:
        raise CurateError(f"--strength {identity!r} is not an identity in the strength table; it holds "
                          f"{_listed(names)} (newest first). Give one of them, or a prefix of one.")
    raise CurateError(f"--strength {identity!r} is a prefix of {len(matches)} identities ({_listed(names)}): "
                      "give more of it.")


def _listed(names: list[str], at_most: int = 5) -> str:
    shown = ", ".join(names[:at_most])
    return shown + (f" and {len(names) - at_most} more" if len(names) > at_most else "")


def check_fraction(value: float | None, option: str) -> float | None:
    """A percentile threshold: strictly between 0 and 1 (0 would select nothing, 1 everything)."""
    if value is None:
        return None
    if isinstance(value, bool) or not 0 < float(value) < 1:
        raise CurateError(f"{option} must be a fraction in (0, 1), a strength percentile (0.1: the weakest 10% of "
                          f"the pairs); got {value}.")
    return float(value)


def weakest_table(con: "duckdb.DuckDBPyConnection", name: str, identity: str, fraction: float) -> int:
    """A temp table `name` of the pair_ids whose percentile under `identity` is below `fraction`; its size."""
    con.execute(f"create or replace temp table {name} as select distinct pair_id from strength "
                "where identity = $identity and percentile < $fraction", {"identity": identity, "fraction": fraction})
    return con.execute(f"select count(*) from {name}").fetchall()[0][0]


def shadow_without(con: "duckdb.DuckDBPyConnection", weak: str) -> None:
    """Temp views over the candidate views that leave out the pair_ids of the temp table `weak`.

    DuckDB resolves an unqualified name to a temp object before the database's own (the temp catalog comes
    first in the search path), so a filter's SQL reads these instead of the workspace's views, unchanged.
    """
    db = con.execute("select current_database()").fetchall()[0][0].replace('"', '""')
    for view in CANDIDATE_VIEWS:
        con.execute(f'create or replace temp view {view} as select * from "{db}".main.{view} '
                    f"where pair_id not in (select pair_id from {weak})")


def mark_flipped(con: "duckdb.DuckDBPyConnection", picked: str, weak: str) -> int:
    """Set flipped = true on the rows of the temp table `picked` whose pair is in `weak`; the rows marked."""
    con.execute(f"update {picked} set flipped = true where pair_id in (select pair_id from {weak})")
    return con.execute(f"select count(*) from {picked} where pair_id in (select pair_id from {weak})").fetchall()[0][0]


def means_of(ws: "Workspace", identity: str | None) -> tuple[dict[str, float], StrengthIdentity]:
    """{pair_id: mean} of one identity (picked as pick_identity does), and the identity."""
    with ws.connect() as con:
        chosen = pick_identity(con, identity)
        rows = con.execute("select pair_id, mean from strength where identity = $i",
                           {"i": chosen.identity}).fetchall()
    return dict(rows), chosen


def oriented_means(ws: "Workspace", pair_ids: list[str], flipped: list[bool] | None,
                   identity: str | None) -> tuple[list[float], StrengthIdentity]:
    """The mean strength of each row as it is trained: -mean where the row is flipped. Every row needs one."""
    means, chosen = means_of(ws, identity)
    missing = [p for p in pair_ids if means.get(p) is None]
    if missing:
        raise CurateError(f"{len(set(missing)):,} pair(s) of the data have no strength under identity "
                          f"{chosen.identity} (e.g. {missing[0]}): run `curate strength` again so it measures "
                          "them, or pick another identity with --strength.")
    flips = flipped or [False] * len(pair_ids)
    return [-means[p] if f else means[p] for p, f in zip(pair_ids, flips)], chosen


def margins(oriented: list[float], scale: float) -> list[float]:
    """TRL's margin from the mean strength: max(mean, 0) * scale (Secrets of RLHF II, section 2.4.2, eq. 6).

    Eq. 6 as printed, -E[log sigma(r_c - r_r) - mu], subtracts mu outside the log-sigmoid: a constant that
    cannot change the gradient. The adaptive margin it describes (larger margins for pairs with distinct
    responses) is mu inside, d = r_c - r_r - mu, which is what TRL's RewardTrainer computes with its `margin`
    column; curate uses that form. A negative mean (a likely wrong label) gets no margin, not a negative one.
    """
    return [max(m, 0.0) * scale for m in oriented]


def check_scale(scale: float) -> float:
    if not scale > 0:
        raise CurateError(f"--margin-scale must be above 0 (the margin is max(mean, 0) times it); got {scale}.")
    return float(scale)
