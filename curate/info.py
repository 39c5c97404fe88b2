"""`curate info`: what is in a workspace, answered from the tables."""

from __future__ import annotations

from .tables import TABLES
from .workspace import Workspace


def summary(ws: Workspace) -> dict:
    ws.require()
    with ws.connect() as con:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        tables = {t: q(f'SELECT count(*) FROM "{t}"')[0][0] for t in TABLES}
        return {
            "workspace": str(ws.root),
            "tables": tables,
            "pairs_by_source": [
                dict(zip(("source", "subset", "split", "role", "pairs"), r))
                for r in q("SELECT source, subset, split, role, count(*) FROM pairs GROUP BY ALL ORDER BY ALL")
            ],
            "flags": dict(q("SELECT flag, count(*) FROM (SELECT unnest(flags) AS flag FROM pairs) GROUP BY ALL ORDER BY ALL")),
            "rejects": [
                dict(zip(("source", "reason", "rows"), r))
                for r in q("SELECT source, reason, count(*) FROM rejects GROUP BY ALL ORDER BY ALL")
            ],
            "ingests": len(list(ws.manifests_dir.glob("ingest-*.json"))),
        }
