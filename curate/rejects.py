"""Input rows that did not land: one record shape for every step that reads user files (ingest, generations
import), so the `rejects` table answers "why is line N not in the workspace?" the same way for all of them.

A reject is {source, line, reason, detail, raw} plus the id of the step that read it (column `ingest_id`).
`reason` is a stable code (invalid_json, missing_field:chosen, unmatched_generation, ...), `detail` the
explanation for a person, `raw` the row's text as it was in the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from .workspace import Workspace

COLUMNS = ("source", "line", "reason", "detail", "raw", "ingest_id")
KEY = ("source", "line", "reason", "detail")  # the same reject found again by a rerun is not recorded twice


def raw_text(raw: bytes | str | None, obj: Any = None) -> str | None:
    """The row as it was in the file; for rows that come as objects (Parquet, JSON arrays), their JSON."""
    if raw is not None:
        return raw.decode("utf-8", errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    if obj is not None:
        import orjson

        return orjson.dumps(obj, default=str).decode()
    return None


def reject(source: str, line: int, reason: str, detail: str, raw: bytes | str | None = None,
           obj: Any = None) -> dict:
    return {"source": source, "line": line, "reason": reason, "detail": detail, "raw": raw_text(raw, obj)}


def new_only(ws: "Workspace", rejects: list[dict]) -> list[dict]:
    """The rejects an earlier run of the same file did not record already (rereading a file is idempotent)."""
    import polars as pl

    files = ws.files("rejects")
    if not files or not rejects:
        return rejects
    known = set(pl.scan_parquet(files).select(KEY).collect().iter_rows())
    return [r for r in rejects if tuple(r[k] for k in KEY) not in known]


def frame(rejects: list[dict], step_id: str) -> "pl.DataFrame":
    """The rows for the `rejects` table, stamped with the step that found them."""
    import polars as pl

    schema = {"source": pl.String, "line": pl.Int64, "reason": pl.String, "detail": pl.String, "raw": pl.String,
              "ingest_id": pl.String}
    return pl.DataFrame([{**r, "ingest_id": step_id} for r in rejects], schema=schema)
