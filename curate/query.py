"""Ad-hoc SQL over the workspace tables: read-only by default, named parameters, several outputs."""

from __future__ import annotations

import csv
import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .atomic import staged_file
from .errors import READ_ONLY_FIX, CurateError, QueryError
from .workspace import Workspace

if TYPE_CHECKING:
    import polars as pl

OUTPUT_FORMATS = ("table", "csv", "json", "jsonl", "parquet")
READ_ONLY_KINDS = {"SELECT", "EXPLAIN", "PRAGMA"}


def parse_value(text: str) -> Any:
    """-p values: integers, floats, true/false and null are typed; anything else is a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def statements(sql: str) -> list:
    import duckdb

    try:
        return duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(_clean(e)) from None


# EXPLAIN [ANALYZE] [(options)]: ANALYZE runs the statement it explains, so that one is judged
_EXPLAIN_PREFIX = re.compile(r"^\s*explain\s*(?:analy[sz]e\b\s*)?(?:\([^)]*\)\s*)?", re.IGNORECASE)


def check_read_only(stmts: list) -> None:
    import duckdb

    for st in stmts:
        kind = st.type.name
        if kind == "EXPLAIN":
            try:
                inner = duckdb.extract_statements(_EXPLAIN_PREFIX.sub("", st.query, count=1))
            except duckdb.Error:
                raise QueryError(READ_ONLY_FIX.format(kind=kind)) from None
            check_read_only(inner)
        elif kind not in READ_ONLY_KINDS:
            raise QueryError(READ_ONLY_FIX.format(kind=kind))


def _clean(e: Exception) -> str:
    return str(e).strip()


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    cursor: Any  # DuckDB relation/cursor positioned at the first row

    def batches(self, size: int = 10_000):
        while True:
            rows = self.cursor.fetchmany(size)
            if not rows:
                return
            yield rows


def run(ws: Workspace, sql: str, params: dict[str, Any] | None = None, write: bool = False):
    """Run sql (one or more statements) and return (connection, Result of the last statement)."""
    stmts = statements(sql)
    if not stmts:
        raise QueryError("The query is empty.")
    if not write:
        check_read_only(stmts)
    params = params or {}
    # both checked before anything runs: with --write an error must not follow a change already made
    names = sorted({p for st in stmts for p in st.named_parameters})
    missing = [m for m in names if m not in params]
    if missing:
        raise QueryError(
            "The query uses parameter(s) " + ", ".join(f"${m}" for m in missing)
            + " with no value: pass " + " ".join(f"-p {m} VALUE" for m in missing) + "."
        )
    unused = sorted(set(params) - set(names))
    if unused:
        raise QueryError("Parameter(s) " + ", ".join(unused) + " are not used by the query (it uses "
                         + (", ".join("$" + p for p in names) or "none") + ").")
    con = ws.connect(write=write)
    try:
        result = None
        for st in stmts:
            used = {k: v for k, v in params.items() if k in st.named_parameters}
            result = con.execute(st.query, used) if used else con.execute(st.query)
        desc = result.description or []
        return con, Result([d[0] for d in desc], [str(d[1]) for d in desc], result)
    except Exception as e:
        import duckdb

        con.close()
        if isinstance(e, duckdb.Error):
            raise QueryError(_clean(e)) from None
        raise


def frame_result(df: "pl.DataFrame"):
    """(connection, Result) over a polars frame, so computed tables print through write_result."""
    import duckdb

    con = duckdb.connect()
    con.register("frame", df.to_arrow())
    cur = con.execute("select * from frame")
    desc = cur.description or []
    return con, Result([d[0] for d in desc], [str(d[1]) for d in desc], cur)


def _jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)


def write_result(res: Result, fmt: str, out: IO[str] | None, output: Path | None, max_rows: int, width: int,
                 quiet: bool = False) -> int:
    """Write the result in fmt to output (a path) or out (a text stream); returns rows written. quiet: no note on
    stderr when a table shows only the first max_rows rows."""
    if fmt == "parquet":
        if output is None:
            raise CurateError("--format parquet needs --output FILE.")
        return _write_parquet(res, output)
    if output is not None:
        with staged_file(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            return write_result(res, fmt, fh, None, max_rows, width, quiet)
    assert out is not None
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(res.columns)
        for rows in res.batches():
            w.writerows(rows)
            n += len(rows)
    elif fmt == "jsonl":
        for rows in res.batches():
            for row in rows:
                out.write(json.dumps(dict(zip(res.columns, row)), ensure_ascii=False, default=_jsonable) + "\n")
            n += len(rows)
    elif fmt == "json":
        out.write("[")
        for rows in res.batches():
            for row in rows:
                out.write(("," if n else "") + "\n" + json.dumps(dict(zip(res.columns, row)), ensure_ascii=False, default=_jsonable))
                n += 1
        out.write("\n]\n" if n else "]\n")
    elif fmt == "table":
        n = _write_table(res, out, max_rows, width, quiet)
    else:
        raise CurateError(f"--format {fmt!r}: expected one of {', '.join(OUTPUT_FORMATS)}.")
    return n


def _write_parquet(res: Result, output: Path) -> int:
    import pyarrow.parquet as pq

    # DuckDB 1.4 renamed fetch_arrow_table to to_arrow_table; 2.0 dropped the old name (and warns
    # on stderr about the copy a DB-API result costs, which is no concern of the user's)
    fetch = getattr(res.cursor, "to_arrow_table", None) or res.cursor.fetch_arrow_table
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)
        table = fetch()
    with staged_file(output) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table.num_rows


def _write_table(res: Result, out: IO[str], max_rows: int, width: int, quiet: bool = False) -> int:
    from .display import print_table

    rows = res.cursor.fetchmany(max_rows + 1)
    fetched = len(rows)  # one past max_rows tells whether there are more; that row counts too
    more = fetched > max_rows
    rows = rows[:max_rows]
    print_table(res.columns, ([("NULL" if v is None else _cell(v, width)) for v in row] for row in rows), file=out,
                max_width=width)
    if more:
        total = fetched + sum(len(b) for b in res.batches())
        if not quiet:
            print(f"showing the first {max_rows} of {total} rows; use --max-rows, or "
                  "--format csv/json/parquet for all of them", file=sys.stderr)
        return total
    return len(rows)


def _cell(v, width: int) -> str:
    s = str(v).replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 1] + "…"
