"""Ingest preference data into the workspace's `pairs` table; bad rows go to `rejects`.

    from curate.workspace import Workspace
    from curate.ingest import ingest
    result = ingest(Workspace("workspace"), ["test.jsonl.gz"], sft_fraction=0.5)
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import polars as pl

from .. import rejects as rejects_
from ..errors import INGEST_FIX, CurateError, InputError
from ..hashing import assign_roles, hash_keys, pair_id_keys, stripped
from ..provenance import versions
from ..rejects import reject
from ..workspace import Workspace, new_id, utcnow
from . import columns, formats, sources
from .hh import split_transcripts

FLAGS = ("diverged_early", "empty_response", "identical_responses")


@dataclass
class IngestResult:
    ingest_id: str
    read: int = 0
    added: int = 0
    already_present: int = 0
    rejected: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)
    roles: Counter = field(default_factory=Counter)
    sources: list[dict] = field(default_factory=list)
    manifest: str = ""


def parse_fields(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """--field chosen=response_a ... -> {'chosen': 'response_a'}."""
    out = {}
    for item in items:
        name, sep, key = item.partition("=")
        if not sep or name not in ("prompt", "chosen", "rejected") or not key:
            raise CurateError(f"--field {item!r}: write NAME=KEY with NAME one of prompt, chosen, rejected.")
        out[name] = key
    return out


def ingest(
    ws: Workspace,
    inputs: list[str],
    *,
    fmt: str | None = None,
    fields: dict[str, str] | None = None,
    sft_fraction: float = 0.0,
    seed: int = 0,
    skip_invalid: bool = False,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
) -> IngestResult:
    """Read every input, parse it, and commit new pairs and rejects in one transaction."""
    if not 0.0 <= sft_fraction <= 1.0:
        raise CurateError(f"--sft-fraction {sft_fraction}: must be between 0 and 1.")
    if fmt is not None and fmt not in formats.FORMATS:
        raise CurateError(f"--format {fmt!r}: expected one of {', '.join(formats.FORMATS)}.")
    fields = fields or {}
    srcs = sources.expand(inputs, subset, split, revision)
    result = IngestResult(ingest_id=new_id())
    with ws.created_or_not(), ws.transaction("curate ingest") as tx:
        existing = _existing_ids(ws)
        seen: dict[str, dict[str, int]] = {}  # source -> pair_id -> line, of the pairs added by this ingest
        rejects: list[dict] = []
        with tx.writer("pairs") as out:
            for src in srcs:
                advance = progress(src.name, sources.estimated_bytes(src)) if progress else None
                counts = Counter()
                src_fmt = fmt
                # three threads in a pipeline: reading (and hashing the file), parsing, and this one's pair ids
                chunks = sources.prefetch(sources.read(src, on_bytes=advance, lines=True))
                for src_fmt, rows in sources.prefetch(_parse(src, fmt, fields, chunks)):
                    pairs, bad = _finish(rows, src, src_fmt, existing, seen, counts)
                    if bad and not skip_invalid:
                        first = min((r for r in bad if r["reason"] != "duplicate_pair"), key=lambda r: r["line"],
                                    default=None)
                        if first is not None:
                            raise InputError(
                                f"{src.name}, line {first['line']}: {first['detail']} [{first['reason']}].\n"
                                f"{INGEST_FIX}\nNothing was written.",
                                source=src.name,
                                line=first["line"],
                            )
                    rejects += bad
                    if pairs.height:
                        pairs = pairs.with_columns(
                            role=pl.Series(assign_roles(pairs["pair_id"], sft_fraction, seed), dtype=pl.String),
                            ingest_id=pl.lit(result.ingest_id),
                        )
                        out.write(pairs)
                        result.roles.update(dict(pairs["role"].value_counts().iter_rows()))
                        result.flags.update(dict(pairs["flags"].explode().drop_nulls().value_counts().iter_rows()))
                result.read += counts["read"]
                result.added += counts["added"]
                result.already_present += counts["already_present"]
                result.sources.append(
                    {
                        "source": src.name,
                        "format": src_fmt,
                        "subset": src.subset,
                        "split": src.split,
                        "revision": src.revision,
                        "sha256": src.sha256,
                        "size": src.size,
                        **{k: counts[k] for k in ("read", "added", "already_present", "rejected")},
                    }
                )
        result.rejected.update(r["reason"] for r in rejects)
        if rejects:
            tx.add("rejects", rejects_.frame(rejects_.new_only(ws, rejects), result.ingest_id))
        manifest = {
            "step": "ingest",
            "ingest_id": result.ingest_id,
            "created_at": utcnow(),
            "options": {
                "inputs": inputs,
                "format": fmt,
                "fields": fields,
                "sft_fraction": sft_fraction,
                "seed": seed,
                "skip_invalid": skip_invalid,
                "subset": subset,
                "split": split,
                "revision": revision,
            },
            "sources": result.sources,
            "counts": {
                "read": result.read,
                "added": result.added,
                "already_present": result.already_present,
                "rejected": dict(result.rejected),
                "flags": dict(result.flags),
                "roles": dict(result.roles),
            },
            "versions": versions(("polars", "duckdb", "pyarrow", "orjson", "datasets")),
        }
        result.manifest = str(ws.write_manifest("ingest", result.ingest_id, manifest))
    return result


def _existing_ids(ws: Workspace) -> set[str]:
    files = ws.files("pairs")
    if not files:
        return set()
    return set(pl.scan_parquet(files).select("pair_id").collect()["pair_id"].to_list())


@dataclass
class _Rows:
    """One chunk of a source, parsed: `frame` has `line` and chosen_full, rejected_full (transcripts) or prompt, chosen,
    rejected; `bad` the rejects found so far; raw(line) gives a row's (raw, obj) for a reject found later. _shape()
    completes the frame and adds what pair ids hash (`keys`, `check`)."""

    frame: pl.DataFrame
    bad: list[dict]
    read: int
    raw: Callable[[int], tuple]
    keys: pl.Series | None = None
    check: list[int] = field(default_factory=list)


def _parse(src: sources.Source, fmt: str | None, fields: dict[str, str], chunks) -> Iterator[tuple[str, _Rows]]:
    """(format, shaped rows) for each chunk of src: a block of JSON Lines as columns where columns.read_block can,
    otherwise record by record. It runs on a thread of its own, so its polars work (which releases the GIL)
    overlaps with the hashing of the chunk before."""
    with contextlib.closing(chunks):  # stopped early (a bad row), the reading thread stops too
        yield from _parse_chunks(src, fmt, fields, chunks)


def _parse_chunks(src, fmt, fields, chunks):
    for chunk in chunks:
        if isinstance(chunk, sources.Lines):
            fmt = fmt or _detect_lines(src, chunk, fields)
            if fmt is None:  # blank lines only
                continue
            keys = columns.keys_read(fmt, fields)
            frame = columns.read_block(chunk, keys) if keys else None
            if frame is not None:
                yield fmt, _shape(_Rows(frame, [], frame.height, _BlockRaw(chunk)), src)
                continue
            records = chunk.records()
        else:
            fmt = fmt or _detect(src, chunk, fields)
            records = [chunk]
        for rec in records:
            yield fmt, _shape(_from_records(rec, src, fmt, fields), src)


def _detect_lines(src: sources.Source, block: sources.Lines, fields: dict[str, str]) -> str | None:
    """_detect() on the block's first chunk of records, parsing only the first lines where they tell (they nearly
    always do); None for a block of blank lines."""
    import orjson

    for raw in block.data.split(b"\n", 100)[:100]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and (found := formats.detect(obj, fields)):
            return found
    first = next(block.records(), None)
    return _detect(src, first, fields) if first else None


def _detect(src: sources.Source, chunk: list, fields: dict[str, str]) -> str:
    for _, obj, _ in chunk:
        fmt = formats.detect(obj, fields) if isinstance(obj, dict) else None
        if fmt:
            return fmt
    not_an_object(src.name, chunk)
    first = next((obj for _, obj, _ in chunk if isinstance(obj, dict)), None)
    raise CurateError(
        f"{src.name}: cannot tell the format: no row in the first {len(chunk)} has both a chosen and a "
        f"rejected field (first row's keys: {sorted(first)}). Map the field names with --field "
        "(e.g. --field chosen=response_a --field rejected=response_b) and/or pass --format."
    )


def not_an_object(name: str, chunk: list) -> None:
    """When no row of the first chunk is a JSON object, say what line 1 is instead (binary, not JSON, a list)."""
    if any(isinstance(obj, dict) for _, obj, _ in chunk):
        return
    line, obj, _ = chunk[0]
    what = f"not valid JSON ({obj.error})" if isinstance(obj, sources.InvalidJson) else \
        f"a JSON {type(obj).__name__}, not an object"
    raise InputError(f"{name}, line {line}: {what}, and no row in the first {len(chunk):,} is a JSON object. Is it "
                     "a JSON Lines file (one object per line)?", source=name, line=line)


def _from_records(chunk, src, fmt, fields) -> _Rows:
    """A chunk of (line, obj, raw) records as rows, each checked by formats.extract."""
    bad: list[dict] = []
    lines, a, b, c = [], [], [], []  # transcripts: chosen_full, rejected_full; split pairs: prompt, chosen, rejected
    transcripts = fmt != "explicit"
    extract, Reject = formats.extract, formats.Reject
    kc, kr = fields.get("chosen", "chosen"), fields.get("rejected", "rejected")
    for line, obj, raw in chunk:
        if fmt == "hh" and type(obj) is dict:  # the common case, inlined; anything odd takes extract()
            ch, rj = obj.get(kc), obj.get(kr)
            if type(ch) is str and type(rj) is str:
                lines.append(line), a.append(ch), b.append(rj)
                continue
        if isinstance(obj, sources.InvalidJson):
            bad.append(reject(src.name, line, "invalid_json", f"invalid JSON ({obj.error})", raw))
            continue
        try:
            rec = extract(obj, fmt, fields)
        except Reject as r:
            bad.append(reject(src.name, line, r.reason, r.detail, raw, obj))
            continue
        lines.append(line), a.append(rec[1]), b.append(rec[2])
        if not transcripts:
            c.append(rec[3])
    names = ("chosen_full", "rejected_full") if transcripts else ("prompt", "chosen", "rejected")
    schema = {"line": pl.Int64, **{name: pl.String for name in names}}
    frame = pl.DataFrame(dict(zip(schema, (lines, a, b, c))), schema=schema)
    return _Rows(frame, bad, len(chunk), _RawLookup(chunk))


def _shape(rows: _Rows, src: sources.Source) -> _Rows:
    """Split transcripts (the unsplittable ones become rejects), flag, and make the pair ids' keys."""
    df = rows.frame
    if "chosen_full" in df.columns:
        t = split_transcripts(df)
        failed = t.filter(pl.col("reject_reason").is_not_null())
        for line, reason, detail in failed.select("line", "reject_reason", "reject_detail").iter_rows():
            rows.bad.append(reject(src.name, line, reason, detail, *rows.raw(line)))
        if failed.height:
            t = t.filter(pl.col("reject_reason").is_null())
        df = t.drop("reject_reason", "reject_detail")
    else:
        none = pl.lit(None, dtype=pl.String)
        df = df.with_columns(chosen_full=none, rejected_full=none, diverged=pl.lit(False))
    c_norm, r_norm = stripped(pl.col("chosen")), stripped(pl.col("rejected"))
    # joined as text and split: pl.concat_list, building a list for every row, is several times slower
    flags = pl.concat_str(
        pl.when(pl.col("diverged")).then(pl.lit(FLAGS[0])),
        pl.when((c_norm == "") | (r_norm == "")).then(pl.lit(FLAGS[1])),
        pl.when(c_norm == r_norm).then(pl.lit(FLAGS[2])),
        separator=",", ignore_nulls=True,
    )
    rows.frame = df.with_columns(
        flags=pl.when(flags != "").then(flags.str.split(",")).otherwise(pl.lit([], dtype=pl.List(pl.String)))
    ).drop("diverged")
    if rows.frame.height:
        rows.keys, rows.check = pair_id_keys(rows.frame)
    return rows


def _finish(rows: _Rows, src, fmt, existing, seen, counts):
    """The rows' new pairs as a `pairs` frame, and the rejects (the parser's, then unsplittable transcripts, then
    pairs already seen in this ingest)."""
    bad, df = rows.bad, rows.frame
    counts["read"] += rows.read
    if not df.height:
        counts["rejected"] += len(bad)
        return pl.DataFrame(), bad
    ids = hash_keys(rows.keys, rows.check)
    lines = df["line"].to_list()
    keep = [True] * len(ids)
    here = seen.setdefault(src.name, {})
    if existing or len(set(ids)) < len(ids) or not all(s.keys().isdisjoint(ids) for s in seen.values()):
        for i, (pid, line) in enumerate(zip(ids, lines)):
            if pid in existing:
                counts["already_present"] += 1
                keep[i] = False
            elif first := next(((name, s[pid]) for name, s in seen.items() if pid in s), None):
                bad.append(reject(src.name, line, "duplicate_pair",
                                  f"same pair as {first[0]}, line {first[1]} (pair_id {pid})", *rows.raw(line)))
                keep[i] = False
            else:
                here[pid] = line
    else:  # the common case: every pair is new
        here.update(zip(ids, lines))
    counts["rejected"] += len(bad)
    added = sum(keep)
    counts["added"] += added
    df = df.with_columns(pair_id=pl.Series(ids, dtype=pl.String))
    if added < len(ids):
        df = df.filter(pl.Series(keep, dtype=pl.Boolean))
    return (
        df.with_columns(
            source=pl.lit(src.name),
            subset=pl.lit(src.subset, dtype=pl.String),
            split=pl.lit(src.split, dtype=pl.String),
            source_row=pl.col("line") - 1,
            format=pl.lit(fmt),
        ).drop("line"),
        bad,
    )


class _RawLookup:
    """line -> (raw, obj) of a chunk (reject()'s argument order), built only when a late-stage reject needs it."""

    def __init__(self, chunk):
        self.chunk, self.index = chunk, None

    def __call__(self, line):
        if self.index is None:
            self.index = {rec[0]: i for i, rec in enumerate(self.chunk)}
        _, obj, raw = self.chunk[self.index[line]]
        return raw, obj


class _BlockRaw:
    """line -> (raw, None) of a block read as columns, its lines split only when a late-stage reject needs them."""

    def __init__(self, block: sources.Lines):
        self.block, self.lines = block, None

    def __call__(self, line):
        if self.lines is None:
            self.lines = self.block.raw()
        return self.lines[line - self.block.first], None
