"""Which rows of the `strength` table a command reads: one identity, chosen the same way everywhere (issue 16).

    with ws.connect() as con:
        identity = pick_identity(con, None)        # the identity computed most recently
        identity = pick_identity(con, "probe")     # an exact identity, or a unique prefix of one

`curate strength` stores one set of rows per identity (method, features or base model, M, K, seed) and never
replaces another's, so every reader (reports, filters, export, training) must say which set it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CurateError

if TYPE_CHECKING:
    import duckdb

# newest first; equal times are ordered by identity, so the choice never depends on file order
IDENTITIES_SQL = """
select identity
from strength
where identity is not null
group by identity
order by max(created_at) desc nulls last, identity
"""

NO_STRENGTH = ("No strength rows in this workspace: run `curate strength` first (it scores every preference pair "
               "and stores the rows this needs).")


def pick_identity(con: "duckdb.DuckDBPyConnection", identity: str | None) -> str:
    """The identity to use: `identity` itself, the one identity it is a prefix of, or (None) the newest one."""
    names = [r[0] for r in con.execute(IDENTITIES_SQL).fetchall()]
    if not names:
        raise CurateError(NO_STRENGTH)
    if identity is None:
        return names[0]
    if identity in names:
        return identity
    matches = [n for n in names if n.startswith(identity)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CurateError(f"--strength {identity!r} is not an identity in the strength table; it holds "
                          f"{_listed(names)} (newest first). Give one of them, or a prefix of one.")
    raise CurateError(f"--strength {identity!r} is a prefix of {len(matches)} identities ({_listed(matches)}): "
                      "give more of it.")


def _listed(names: list[str], at_most: int = 5) -> str:
    shown = ", ".join(names[:at_most])
    return shown + (f" and {len(names) - at_most} more" if len(names) > at_most else "")
