"""Rows as Parquet files of a table: cast and ordered to the table contract (curate.tables), and streamed row
group by row group with compression on a background thread. The workspace's transactions write through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CurateError
from .tables import TABLES

if TYPE_CHECKING:
    import polars as pl


LOW_CARDINALITY = {"source", "subset", "split", "role", "format", "ingest_id", "branch", "policy", "model_id",
                   "params", "strategy", "picked_by", "status", "step"}


class TableWriter:
    """Appends row groups to one Parquet file; compression runs on a background thread
    (pyarrow releases the GIL), overlapping with the caller's parsing of the next chunk."""

    def __init__(self, table: str, path: Path):
        self.table, self.path, self.rows, self._w = table, path, 0, None
        self._pool, self._pending = None, None

    def write(self, df: "pl.DataFrame") -> None:
        if df.height == 0:
            return
        import pyarrow.parquet as pq

        arrow = conform(df, self.table).to_arrow()
        if self._w is None:
            from concurrent.futures import ThreadPoolExecutor

            # dictionary encoding only pays for low-cardinality columns; long unique texts skip it
            spec = TABLES.get(self.table)
            text = {c.name for c in spec.columns if c.type == "VARCHAR"} if spec else set()
            low_card = [n for n in arrow.schema.names if n not in text or n in LOW_CARDINALITY]
            self._w = pq.ParquetWriter(
                self.path, arrow.schema, compression="zstd", compression_level=1, use_dictionary=low_card
            )
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-writer")
        self._wait()
        self._pending = self._pool.submit(self._w.write_table, arrow)
        self.rows += df.height

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write here

    def close(self) -> None:
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._w is not None:
                self._w.close()
                self._w = None


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
