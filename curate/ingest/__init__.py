"""Ingest preference data into the workspace's `pairs` table; bad rows go to `rejects`.

    from curate.workspace import Workspace
    from curate.ingest import ingest
    result = ingest(Workspace("workspace"), ["test.jsonl.gz"], sft_fraction=0.5)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import polars as pl

from .. import rejects as rejects_
from ..errors import INGEST_FIX, CurateError, InputError
from ..hashing import assign_roles, pair_ids, stripped
from ..provenance import versions
from ..rejects import reject
from ..workspace import Workspace, new_id, utcnow
from . import formats, sources
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
        seen: dict[str, tuple[str, int]] = {}
        rejects: list[dict] = []
        with tx.writer("pairs") as out:
            for src in srcs:
                advance = progress(src.name, sources.estimated_bytes(src)) if progress else None
                counts = Counter()
                src_fmt = fmt
                for chunk in sources.prefetch(sources.read(src, on_bytes=advance)):
                    if src_fmt is None:
                        src_fmt = _detect(src, chunk, fields)
                    pairs, bad = _process(chunk, src, src_fmt, fields, existing, seen, counts)
                    if bad and not skip_invalid:
                        first = min((r for r in bad if r["reason"] != "duplicate_pair"), key=lambda r: r["line"], default=None)
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


def _process(chunk, src, fmt, fields, existing, seen, counts):
    """Parse one chunk into a `pairs` frame (new pairs only) and a list of reject rows."""
    bad: list[dict] = []
    t_lines, t_c, t_r, s_lines, s_p, s_c, s_r = [], [], [], [], [], [], []
    extract, Reject = formats.extract, formats.Reject
    kc, kr = fields.get("chosen", "chosen"), fields.get("rejected", "rejected")
    counts["read"] += len(chunk)
    for line, obj, raw in chunk:
        if fmt == "hh" and type(obj) is dict:  # the common case, inlined; anything odd takes extract()
            c, r = obj.get(kc), obj.get(kr)
            if type(c) is str and type(r) is str:
                t_lines.append(line), t_c.append(c), t_r.append(r)
                continue
        if isinstance(obj, sources.InvalidJson):
            bad.append(reject(src.name, line, "invalid_json", f"invalid JSON ({obj.error})", raw))
            continue
        try:
            rec = extract(obj, fmt, fields)
        except Reject as r:
            bad.append(reject(src.name, line, r.reason, r.detail, raw, obj))
            continue
        if rec[0] == "T":
            t_lines.append(line), t_c.append(rec[1]), t_r.append(rec[2])
        else:
            s_lines.append(line), s_p.append(rec[1]), s_c.append(rec[2]), s_r.append(rec[3])

    raws = _RawLookup(chunk)
    frames = []
    if t_lines:
        t = split_transcripts(
            pl.DataFrame({"line": t_lines, "chosen_full": t_c, "rejected_full": t_r}, schema_overrides={"line": pl.Int64})
        )
        failed = t.filter(pl.col("reject_reason").is_not_null())
        for line, reason, detail in failed.select("line", "reject_reason", "reject_detail").iter_rows():
            bad.append(reject(src.name, line, reason, detail, *raws[line]))
        frames.append(t.filter(pl.col("reject_reason").is_null()).drop("reject_reason", "reject_detail"))
    if s_lines:
        frames.append(
            pl.DataFrame(
                {"line": s_lines, "prompt": s_p, "chosen": s_c, "rejected": s_r},
                schema_overrides={"line": pl.Int64},
            ).with_columns(
                chosen_full=pl.lit(None, dtype=pl.String),
                rejected_full=pl.lit(None, dtype=pl.String),
                diverged=pl.lit(False),
            )
        )
    if not frames:
        counts["rejected"] += len(bad)
        return pl.DataFrame(), bad
    df = pl.concat(frames, how="diagonal").sort("line")
    c_norm, r_norm = stripped(pl.col("chosen")), stripped(pl.col("rejected"))
    df = df.with_columns(
        flags=pl.concat_list(
            pl.when(pl.col("diverged")).then(pl.lit(FLAGS[0])),
            pl.when((c_norm == "") | (r_norm == "")).then(pl.lit(FLAGS[1])),
            pl.when(c_norm == r_norm).then(pl.lit(FLAGS[2])),
        ).list.drop_nulls(),
    )
    ids = pair_ids(df)
    keep = []
    for pid, line in zip(ids, df["line"]):
        keep.append(False)
        if pid in existing:
            counts["already_present"] += 1
        elif pid in seen:
            first_src, first_line = seen[pid]
            bad.append(
                reject(src.name, line, "duplicate_pair", f"same pair as {first_src}, line {first_line} (pair_id {pid})",
                       *raws[line])
            )
        else:
            seen[pid] = (src.name, line)
            keep[-1] = True
    counts["rejected"] += len(bad)
    counts["added"] += sum(keep)
    df = df.with_columns(pair_id=pl.Series(ids, dtype=pl.String)).filter(pl.Series(keep, dtype=pl.Boolean))
    return (
        df.with_columns(
            source=pl.lit(src.name),
            subset=pl.lit(src.subset, dtype=pl.String),
            split=pl.lit(src.split, dtype=pl.String),
            source_row=pl.col("line") - 1,
            format=pl.lit(fmt),
        ).drop("line", "diverged"),
        bad,
    )


class _RawLookup:
    """line -> (raw, obj) of a chunk (reject()'s argument order), built only when a late-stage reject needs it."""

    def __init__(self, chunk):
        self.chunk, self.index = chunk, None

    def __getitem__(self, line):
        if self.index is None:
            self.index = {rec[0]: i for i, rec in enumerate(self.chunk)}
        _, obj, raw = self.chunk[self.index[line]]
        return raw, obj

