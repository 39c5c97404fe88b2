"""Rows as Parquet files of a table: cast and ordered to the table contract (curate.tables), and streamed row
group by row group with compression on a background thread. The workspace's transactions write through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CurateError
from .faults import folder_bytes, guard
from .tables import TABLES

if TYPE_CHECKING:
    import polars as pl


LOW_CARDINALITY = {"source", "subset", "split", "role", "format", "ingest_id", "branch", "policy", "model_id",
                   "params", "strategy", "picked_by", "status", "step"}


class TableWriter:
    """Appends row groups to one Parquet file; compression runs on a background thread (pyarrow releases the GIL),
    overlapping with the caller's parsing of the next chunk. A file of one chunk (a small input) is written by
    polars when it closes: pyarrow is then never imported, a third of a small ingest's start-up."""

    def __init__(self, table: str, path: Path, step: str | None = None):
        self.table, self.path, self.rows, self._w, self.step = table, path, 0, None, step
        self._pool, self._pending, self._first = None, None, None

    def _guard(self):
        """A full or read-only disk under this file: one line naming it (curate.faults), whichever call hits it."""
        return guard(self.path, written=lambda: folder_bytes(self.path), step=self.step)

    def write(self, df: "pl.DataFrame") -> None:
        if df.height == 0:
            return
        with self._guard():
            self._write(df)

    def _write(self, df: "pl.DataFrame") -> None:
        df = conform(df, self.table)
        self.rows += df.height
        if self._first is None and self._w is None:
            self._first = df
            return
        if self._w is None:
            self._open(self._first)
            self._append(self._first)
            self._first = None
        self._append(df)

    def _open(self, df: "pl.DataFrame") -> None:
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow.parquet as pq

        # dictionary encoding and min/max statistics only pay for low-cardinality columns; long unique texts skip them
        spec = TABLES.get(self.table)
        text = {c.name for c in spec.columns if c.type == "VARCHAR"} if spec else set()
        low_card = [n for n in df.columns if n not in text or n in LOW_CARDINALITY]
        self._w = pq.ParquetWriter(self.path, _arrow(df).schema, compression="zstd", compression_level=1,
                                   use_dictionary=low_card, write_statistics=low_card)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-writer")

    def _append(self, df: "pl.DataFrame") -> None:
        self._wait()
        self._pending = self._pool.submit(self._w.write_table, _arrow(df))

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write here

    def close(self) -> None:
        with self._guard():
            self._close()

    def _close(self) -> None:
        try:
            self._wait()
            if self._first is not None:
                self._first.write_parquet(self.path, compression="zstd", compression_level=1)
                self._first = None
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._w is not None:
                self._w.close()
                self._w = None


def _arrow(df: "pl.DataFrame"):
    """df as Arrow without a copy: polars' strings are already Arrow string views (the oldest compatibility level
    would copy every text into a large_string)."""
    import polars as pl

    return df.to_arrow(compat_level=pl.CompatLevel.newest())


_POLARS_TYPES: dict[str, Any] = {}


def _polars_type(duck_type: str):
    import polars as pl

    if not _POLARS_TYPES:
        _POLARS_TYPES.update(
            {
                "VARCHAR": pl.String,
                "BIGINT": pl.Int64,
                "INTEGER": pl.Int32,
                "DOUBLE": pl.Float64,
                "FLOAT": pl.Float32,
                "BOOLEAN": pl.Boolean,
                "TIMESTAMP": pl.Datetime("us", "UTC"),
                "VARCHAR[]": pl.List(pl.String),
            }
        )
    return _POLARS_TYPES.get(duck_type)


def conform(df: "pl.DataFrame", table: str) -> "pl.DataFrame":
    """Order and cast columns to the contract; extra columns are kept after the contract's."""
    import polars as pl

    spec = TABLES.get(table)
    if spec is None:
        return df
    missing = [c.name for c in spec.columns if c.name not in df.columns]
    if missing:
        raise CurateError(f"internal: rows for table {table!r} lack the contract columns {missing}")
    exprs = []
    for c in spec.columns:
        dtype = _polars_type(c.type)
        exprs.append(pl.col(c.name).cast(dtype) if dtype is not None else pl.col(c.name))
    extra = [pl.col(n) for n in df.columns if n not in spec.column_names]
    return df.select(exprs + extra)
