"""Finding pairs users name on the command line: by full id or unique prefix (subsets: curate.subsets)."""

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
