"""Finding things users name on the command line: pairs by id or unique prefix, subsets by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CurateError

if TYPE_CHECKING:
    import duckdb


def resolve_pair_id(con: "duckdb.DuckDBPyConnection", pair_id: str) -> str:
    """The full pair_id for a full id or a unique prefix of one."""
    pair_id = pair_id.strip().lower()
    if not pair_id:
        raise CurateError("The pair id is empty.")
    ids = [r[0] for r in con.execute(
        "select pair_id from pairs where starts_with(pair_id, $p) order by pair_id limit 3", {"p": pair_id}
    ).fetchall()]
    if not ids:
        raise CurateError(f"No pair with id {pair_id!r} in the workspace (ids are 32 hex characters; a unique "
                          "prefix works too).")
    if len(ids) > 1:
        raise CurateError(f"Pair id prefix {pair_id!r} matches several pairs ({', '.join(ids[:2])}, ...): "
                          "give more characters.")
    return ids[0]


def subset_row(con: "duckdb.DuckDBPyConnection", name: str) -> dict:
    """The `subsets` row for a subset name (or subset_id)."""
    cur = con.execute("select * exclude (created_at), cast(created_at as varchar) as created_at from subsets "
                      "where name = $n or subset_id = $n order by created_at desc limit 1", {"n": name})
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if not rows:
        known = [r[0] for r in con.execute("select name from subsets order by name").fetchall()]
        raise CurateError(f"No subset named {name!r}. "
                          + (f"Known subsets: {', '.join(known)}." if known else
                             "There are none yet: make one with `curate filter --strategy ...`."))
    return dict(zip(cols, rows[0]))
