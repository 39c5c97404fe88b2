"""JSON Lines blocks read as columns: polars parses a whole block of lines natively, with no Python object per row.

Reading line by line (orjson, sources.Lines.records) is the reference; a block is read here only where that gives the
same rows, and goes line by line otherwise (so bad rows are still reported, with their line, as they always were).
polars' reader differs from orjson where it matters to validation, so a block is read here only if
  - every line is a row: polars skips blank lines, which still count in line numbers;
  - every field read is present and not null on every row (a row without one is a reject);
  - every field read is a string: polars reads 5, true, [..] and {..} as the strings "5", "true", ... where orjson
    gives the row's real type (a reject), so a value that may be one of those (it starts with a digit, '-', '[' or
    '{', or is true or false) is looked at again with orjson;
  - each key read occurs once per line (counted over the block): with a key given twice, polars keeps the first
    value and orjson the last;
  - no \\uD800-\\uDBFF escape lacks its low half: polars reads one as U+0000, orjson rejects the line.
One difference is left: a key spelled both plainly and with \\u escapes in one row (polars keeps the first value).
"""

from __future__ import annotations

import re

import orjson
import polars as pl

from .sources import Lines

# the fields each format reads, as the columns ingest's later steps expect (hh transcripts are split afterwards)
COLUMNS = {
    "hh": {"chosen_full": "chosen", "rejected_full": "rejected"},
    "explicit": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
}
PLAIN_KEY = re.compile(r"[A-Za-z0-9_. -]+")  # written the same way by every JSON encoder, so it can be counted
LONE_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
NOT_A_STRING_START = list("-0123456789[{")  # how polars writes a number, list or object it was asked a string for


def keys_read(fmt: str, fields: dict[str, str]) -> dict[str, str] | None:
    """{column: input key} for a format read here, or None (conversational rows hold lists: line by line)."""
    if fmt not in COLUMNS:
        return None
    keys = {column: fields.get(name, name) for column, name in COLUMNS[fmt].items()}
    if len(set(keys.values())) < len(keys) or not all(PLAIN_KEY.fullmatch(k) for k in keys.values()):
        return None
    return keys


def read_block(block: Lines, keys: dict[str, str]) -> pl.DataFrame | None:
    """The block's rows as `line` plus one String column per key, or None where it must be read line by line."""
    data, n = block.data, block.count
    if any(data.count(b'"%s"' % key.encode()) != n for key in keys.values()) or LONE_HIGH_SURROGATE.search(data):
        return None
    try:
        df = pl.read_ndjson(data, schema={key: pl.String for key in keys.values()})
    except Exception:  # not JSON, not an object, ... (polars raises several types): the reference says which line
        return None
    if df.height != n or any(df.null_count().row(0)):
        return None
    maybe = df.select(pl.any_horizontal(
        pl.col(k).str.head(1).is_in(NOT_A_STRING_START) | pl.col(k).is_in(["true", "false"]) for k in keys.values()
    )).to_series()
    if maybe.any():
        raw = block.raw()
        for i in maybe.arg_true().to_list():
            try:
                obj = orjson.loads(raw[i])
            except orjson.JSONDecodeError:
                return None
            if not all(type(obj.get(key)) is str for key in keys.values()):
                return None
    return df.select(
        pl.int_range(block.first, block.first + n, dtype=pl.Int64).alias("line"),
        *(pl.col(key).alias(column) for column, key in keys.items()),
    )
