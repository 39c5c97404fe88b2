"""What a live table file must be, checked one file at a time: present, of its recorded size and SHA-256, a Parquet
file that opens, with the columns and types of its table's contract (curate.tables).

SHA-256 rather than a faster non-cryptographic hash: it is the hash `sha256sum` checks by hand, the one the
manifests already use for inputs, and it costs little next to writing the file (about 1.25 GB/s on one core of the
AMD EPYC these numbers come from, read back from the page cache right after the write).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .tables import TABLES

CHUNK = 1 << 20


def file_record(path: Path) -> dict:
    """{"size", "sha256"} of a file, as state.json's `files` map records it."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


@dataclass
class FileProblem:
    """One live file that is not what the state says: kind is missing, size, checksum, unreadable or schema."""

    table: str
    path: str  # relative to <workspace>/tables
    kind: str
    detail: str

    def as_dict(self) -> dict:
        return {"table": self.table, "path": self.path, "problem": self.kind, "detail": self.detail}


# the contract's DuckDB types as the Parquet files hold them (FLOAT[] is written as a fixed-size array by embed)
_ARROW_OK = {
    "VARCHAR": ("string", "large_string", "string_view", "dictionary<values=string"),
    "BIGINT": ("int64",), "INTEGER": ("int32",), "DOUBLE": ("double",), "FLOAT": ("float",),
    "BOOLEAN": ("bool",), "TIMESTAMP": ("timestamp[",), "VARCHAR[]": ("list<", "large_list<"),
    "FLOAT[]": ("list<", "large_list<", "fixed_size_list<"),
}


def schema_problem(table: str, schema) -> str | None:
    """Why an Arrow schema does not fit the table's contract (a missing column or another type), else None. Columns
    the contract gained after the file was written are allowed missing where the reader fills them (extensions)."""
    spec = TABLES.get(table)
    if spec is None:
        return None
    have = {f.name: str(f.type) for f in schema}
    bad = []
    for c in spec.columns:
        t = have.get(c.name)
        if t is None:
            if "(extension)" not in c.doc:
                bad.append(f"no column {c.name}")
        elif not t.startswith(_ARROW_OK.get(c.type, (t,))):
            bad.append(f"{c.name} is {t}, not {c.type}")
    return "; ".join(bad) or None


def verify_file(table: str, rel: str, path: Path, recorded: dict | None, deep: bool = True) -> FileProblem | None:
    """The problem of one live file, or None when it is sound. recorded: its state.json entry (None: written before
    curate recorded checksums; then only that it opens with the schema is checked). deep=False skips the SHA-256."""
    if not path.is_file():
        return FileProblem(table, rel, "missing", f"{path} is not there")
    size = path.stat().st_size
    if recorded is not None and size != recorded["size"]:
        return FileProblem(table, rel, "size", f"{size:,} bytes, the commit recorded {recorded['size']:,}")
    if recorded is not None and deep:
        digest = file_record(path)["sha256"]
        if digest != recorded["sha256"]:
            return FileProblem(table, rel, "checksum", f"SHA-256 {digest[:12]}..., the commit recorded "
                               f"{recorded['sha256'][:12]}...")
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        if deep:
            pq.ParquetFile(path).metadata  # the footer's row groups, beyond the schema
    except Exception as e:  # pyarrow's ArrowInvalid / OSError: a torn or foreign file
        return FileProblem(table, rel, "unreadable", f"does not open as Parquet ({str(e).splitlines()[0][:200]})")
    why = schema_problem(table, schema)
    if why:
        return FileProblem(table, rel, "schema", why)
    return None


# a reader's error naming a live file: <workspace>/tables/<table>/<file>.parquet (DuckDB quotes it, pyarrow not)
_TABLE_FILE = re.compile(r"""(?P<path>/[^'"\s]*?/tables/(?P<table>[A-Za-z0-9_]+)/[^'"\s/]+\.parquet)""")


def damage_hint(exc: BaseException) -> str | None:
    """For an error raised while reading a table file (DuckDB's "No magic bytes found...", a missing file): one
    line naming the table and pointing to `curate check`; None for any other error."""
    text = str(exc)
    m = _TABLE_FILE.search(text)
    if m is None:
        return None
    path = Path(m.group("path"))
    why = "it is missing" if not path.exists() else \
        text.replace(f"'{path}'", "").replace(str(path), "").strip().splitlines()[0].rstrip(": ")[:200]
    ws = path.parents[2]
    return (f"table {m.group('table')} is damaged: reading {path} failed ({why}). Run `curate check -w {ws}` to see "
            f"which files and later steps it affects, and `curate check -w {ws} --repair` to set it aside.")
