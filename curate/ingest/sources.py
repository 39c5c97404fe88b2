"""Where rows come from: local files, folders and globs, or a Hub dataset (`hf:ID`).

Every source yields chunks of records `(line, obj, raw)`: `line` is 1-based (the row number for
non-line formats), `obj` the parsed value or an `InvalidJson`, `raw` the row's text for `rejects`.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from ..errors import CurateError

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
CHUNK = 20_000


@dataclass
class InvalidJson:
    error: str


@dataclass
class Source:
    name: str  # as stored in pairs.source / rejects.source
    path: Path | None = None
    hub_id: str | None = None
    subset: str | None = None
    split: str | None = None
    revision: str | None = None
    sha256: str | None = None  # filled while reading
    size: int | None = None

    @property
    def kind(self) -> str:
        if self.hub_id is not None:
            return "hf"
        name = self.path.name
        if name.endswith((".jsonl", ".jsonl.gz")):
            return "jsonl"
        if name.endswith((".json", ".json.gz")):
            return "json"
        return "parquet"


def _default_subset_split(path: Path) -> tuple[str, str]:
    # HH-RLHF's layout is <subset>/<split>.jsonl.gz
    return path.parent.name, path.name.split(".")[0]


def expand(inputs: list[str], subset: str | None, split: str | None, revision: str | None) -> list[Source]:
    """Resolve files, folders, globs and hf:IDs into sources, in a stable order."""
    sources: list[Source] = []
    seen: set = set()  # a file named twice (or by a folder and a glob) is read once
    for item in inputs:
        if item.startswith("hf:"):
            target = item[3:]
            if target.startswith((".", "/", "~")) and not Path(target).expanduser().is_dir():
                # a path, not a Hub id: say so, rather than that the Hub could not be reached
                raise CurateError(f"{item}: no such local dataset folder {Path(target).expanduser().resolve()} "
                                  "(hf: takes a Hub id such as hf:Anthropic/hh-rlhf, or a dataset folder on this "
                                  "machine).")
            sources.append(Source(item, hub_id=target, subset=subset, split=split or "train", revision=revision))
            continue
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
            if not matches:
                raise CurateError(f"{item}: the folder has no {', '.join(SUFFIXES)} files.")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise CurateError(f"{item}: the pattern matches no files.")
        else:
            raise CurateError(f"{item}: no such file or folder (for a Hub dataset write hf:ID).")
        for p in matches:
            if not p.name.endswith(SUFFIXES):
                raise CurateError(f"{p}: unsupported file type; expected one of {', '.join(SUFFIXES)}.")
            if p.resolve() in seen:
                continue
            seen.add(p.resolve())
            d_subset, d_split = _default_subset_split(p)
            sources.append(Source(str(p), path=p, subset=subset or d_subset, split=split or d_split))
    return sources


GZIP_MAGIC = b"\x1f\x8b"


def estimated_bytes(source: Source) -> int | None:
    """Uncompressed size, for the progress bar (gzip's trailer holds it modulo 4 GiB)."""
    if source.path is None:
        return None
    size = source.path.stat().st_size
    if source.path.name.endswith(".gz") and size >= 18:  # a gzip member: 10-byte header, 8-byte trailer
        with open(source.path, "rb") as fh:
            if fh.read(2) != GZIP_MAGIC:  # not gzip at all: reading it will say so; no made-up total
                return size
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little") or None
    return size


def read(source: Source, on_bytes=None, lines: bool = False) -> Iterator[list[tuple[int, Any, str | None]] | Lines]:
    """Chunks of (line, obj | InvalidJson, raw) records; fills source.sha256 of the file's bytes. With lines=True a
    JSON Lines file comes as blocks of Lines instead, for the caller to parse (ingest reads them columnar)."""
    kind = source.kind
    if kind == "jsonl":
        blocks = _read_lines(source, on_bytes)
        if lines:
            yield from blocks
        else:
            for block in blocks:
                yield from block.records()
    elif kind == "hf":
        yield from _read_hub(source)
    elif kind == "parquet":
        yield from _read_parquet(source)
    else:
        yield from _read_json_array(source)


def prefetch(chunks: Iterator, depth: int = 2) -> Iterator:
    """Produce chunks on a background thread, so reading and JSON parsing of chunk k+1 overlap with
    the (GIL-free) polars and Parquet work on chunk k. Exceptions surface in the consumer."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def run():
        try:
            for item in chunks:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    t = threading.Thread(target=run, name="ingest-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def _hashing_reader(source: Source):
    digest = hashlib.sha256()
    fh = open(source.path, "rb")
    source.size = source.path.stat().st_size

    class Tee:
        def read(self, n=-1):
            b = fh.read(n)
            digest.update(b)
            return b

        def close(self):
            fh.close()

    return Tee(), digest


@dataclass
class Lines:
    """Whole lines of a JSON Lines file, as read: lines first .. first + count - 1 (blank ones included)."""

    first: int
    data: bytes  # ends with b"\n", except for a file's last line when it has none
    count: int = field(init=False)

    def __post_init__(self):
        self.count = self.data.count(b"\n") + (not self.data.endswith(b"\n"))

    def raw(self) -> list[bytes]:
        """The lines' bytes, one per line, without the newline."""
        lines = self.data.split(b"\n")
        if self.data.endswith(b"\n"):
            lines.pop()
        return lines

    def records(self) -> Iterator[list[tuple[int, Any, bytes]]]:
        """The lines parsed one by one (orjson), in chunks of CHUNK lines: blank lines are layout, not rows; a line
        that is not JSON becomes an InvalidJson. This is the reference reading; ingest.columns reads faster where it
        can vouch for the same result."""
        loads = orjson.loads
        lines = self.raw()
        for start in range(0, len(lines), CHUNK):
            part = lines[start : start + CHUNK]
            first = self.first + start
            try:  # the common case: every line parses
                objs = [loads(raw) for raw in part]
            except orjson.JSONDecodeError:
                objs = None
            if objs is not None and all(part):
                yield list(zip(range(first, first + len(part)), objs, part))
                continue
            chunk = []
            for i, raw in enumerate(part):
                if not raw.strip():
                    continue
                try:
                    obj = loads(raw)
                except orjson.JSONDecodeError as e:
                    obj = InvalidJson(str(e))
                chunk.append((first + i, obj, raw))
            if chunk:
                yield chunk


# bytes read (after decompression) per block of lines: big enough that per-block costs vanish, small enough that the
# allocators reuse their memory (16 MiB blocks took a third more page faults) and the threads overlap early
BLOCK = 1 << 23


def _read_lines(source: Source, on_bytes=None) -> Iterator[Lines]:
    raw_fh, digest = _hashing_reader(source)
    fh = gzip.GzipFile(fileobj=raw_fh) if source.path.name.endswith(".gz") else raw_fh
    buf = b""
    line_no = 0
    try:
        while True:
            block = fh.read(BLOCK)
            if not block:
                break
            if on_bytes:
                on_bytes(len(block))
            cut = block.rfind(b"\n") + 1
            if not cut:  # no line ends in this block
                buf += block
                continue
            data = b"".join((buf, memoryview(block)[:cut]))  # one copy of the block, not two
            buf = block[cut:]
            lines = Lines(line_no + 1, data)
            line_no += lines.count
            yield lines
        if buf.strip():
            yield Lines(line_no + 1, buf)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CurateError(f"{source.name}: cannot read the file after line {line_no} ({e}).") from None
    finally:
        raw_fh.close()
    source.sha256 = digest.hexdigest()


def _read_json_array(source: Source):
    raw_fh, digest = _hashing_reader(source)
    fh = gzip.GzipFile(fileobj=raw_fh) if source.path.name.endswith(".gz") else raw_fh
    try:
        data = orjson.loads(fh.read())
    except orjson.JSONDecodeError as e:
        raise CurateError(f"{source.name}: not valid JSON ({e}). A .json file holds one array of rows; "
                          "for one row per line name the file .jsonl.") from None
    finally:
        raw_fh.close()
    source.sha256 = digest.hexdigest()
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise CurateError(f"{source.name}: expected a JSON array of rows (or an object holding one array).")
        data = lists[0]
    if not isinstance(data, list):
        raise CurateError(f"{source.name}: expected a JSON array of rows, found a {type(data).__name__}.")
    for start in range(0, len(data), CHUNK):
        yield [(start + i + 1, obj, None) for i, obj in enumerate(data[start : start + CHUNK])]


def _read_parquet(source: Source):
    import pyarrow.parquet as pq

    from ..fingerprint import sha256_file

    source.sha256 = sha256_file(source.path)
    source.size = source.path.stat().st_size
    try:
        pf = pq.ParquetFile(source.path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise CurateError(f"{source.name}: not a readable Parquet file ({e}).") from None
    row = 0
    for batch in pf.iter_batches(batch_size=CHUNK):
        rows = batch.to_pylist()
        yield [(row + i + 1, obj, None) for i, obj in enumerate(rows)]
        row += len(rows)


def _read_hub(source: Source):
    try:
        from datasets import load_dataset
    except ImportError:
        raise CurateError("Reading hf:ID needs the `datasets` package: pip install 'curate[hub]'.") from None
    try:
        ds = load_dataset(source.hub_id, data_dir=source.subset, split=source.split, revision=source.revision)
    except Exception as e:  # datasets raises many types (network, missing split, ...)
        raise CurateError(
            f"{source.name}: could not load the dataset (data_dir={source.subset!r}, split={source.split!r}, "
            f"revision={source.revision!r}): {type(e).__name__}: {e}"
        ) from None
    source.sha256 = getattr(ds, "_fingerprint", None)
    source.size = len(ds)
    for start in range(0, len(ds), CHUNK):
        rows = ds[start : start + CHUNK]
        keys = list(rows)
        n = len(rows[keys[0]]) if keys else 0
        yield [(start + i + 1, {k: rows[k][i] for k in keys}, None) for i in range(n)]
