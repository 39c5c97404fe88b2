"""`curate export`: write a subset as a dataset TRL's RewardTrainer reads, with its provenance; push it to the Hub.

    from curate.export import export_subset, push_to_hub
    r = export_subset(Workspace("workspace"), "frft-split-even-it1")          # datasets_out/frft-split-even-it1/
    url = push_to_hub(r.path, "me/frft-split-even-it1", private=True)

One row per row of `subset_pairs`, in rank order, joined to `pairs`: `prompt`, `chosen`, `rejected` (TRL's
standard preference format with an explicit prompt: `prompt + chosen` is the chosen transcript), then
`pair_id`, `rank`, `score`, `picked_by`, the similarities the filter ranked by (`pos_sim`, `neg_sim`) and
`flipped`: a flipped row (flip, --flip) is written with chosen and rejected swapped, so a trainer reading the
file learns the flipped label. A split-even subset may hold a pair twice (picked by both halves, as in the
paper): both rows are kept. `margin="strength"` adds TRL's `margin` column from the `strength` table.

Formats: `folder` (default) is a Hub dataset folder that `datasets.load_dataset(folder)` loads
(`data/train-00000-of-00001.parquet`, a `README.md` dataset card, `curate_provenance.json`); `parquet` is
one file with the provenance in its schema metadata (key `curate_provenance`); `jsonl` is one file with a
`<file>.provenance.json` sidecar. Every target is staged next to itself and renamed into place when
complete (curate.atomic), so a failed export leaves nothing behind, and `force` replaces an old target only then.

The package: spec (columns, file names), record (the provenance record), card (the dataset card and its
license), hub (push_to_hub); this module reads the subset and writes the files.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import clear_stale, exists, move_into_place, remove, temp_name
from ..errors import CurateError
from ..faults import folder_bytes, guard
from ..workspace import Workspace, file_key
from .card import card_metadata, dataset_card, to_yaml
from .hub import push_to_hub
from .record import provenance
from .spec import (
    CARD_FILE,
    COLUMNS,
    DATA_FILE,
    MARGIN_COLUMN,
    MARGIN_SPEC,
    PROVENANCE_FILE,
    PROVENANCE_FORMAT,
    PROVENANCE_KEY,
)

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

__all__ = [
    "CARD_FILE", "COLUMNS", "DATA_FILE", "DEFAULT_DIR", "FORMATS", "MARGIN_COLUMN", "MARGIN_SPEC", "PROVENANCE_FILE",
    "PROVENANCE_FORMAT", "PROVENANCE_KEY", "ExportResult", "card_metadata", "dataset_card", "default_target",
    "export_subset", "provenance", "push_to_hub", "to_yaml", "write_folder",
]

FORMATS = ("folder", "parquet", "jsonl")
DEFAULT_DIR = "datasets_out"

SOURCES_SQL = """
select p.source, p.ingest_id, count(*) as rows
from subset_pairs sp join pairs p using (pair_id)
where sp.subset_id = $subset_id
group by all order by p.source, p.ingest_id
"""

# What to say when a subset is empty: the floor 1 - eps let nothing through.
EMPTY_FIX = (
    "Subset {name!r} has 0 rows: there is nothing to export. Make a bigger one with a lower similarity floor, "
    "e.g. `curate filter --strategy {strategy} --eps {bigger} --iteration {iteration}` (the floor is 1 - eps), "
    "or check what was scored with `curate sql \"select count(*) from similarities where iteration = "
    "{iteration}\"`."
)


@dataclass
class ExportResult:
    path: Path
    format: str
    name: str
    subset_id: str
    rows: int
    distinct_pairs: int
    picked_twice: int
    columns: list[str]
    replaced: bool
    seconds: float
    provenance: dict = field(default_factory=dict)


def default_target(name: str, fmt: str) -> Path:
    """datasets_out/<subset> (folder) or datasets_out/<subset>.<fmt>, relative to the current directory."""
    stem = file_key(name)
    return Path(DEFAULT_DIR) / (stem if fmt == "folder" else f"{stem}.{fmt}")


def export_subset(
    ws: Workspace,
    subset: str,
    fmt: str = "folder",
    to: str | os.PathLike | None = None,
    force: bool = False,
    *,
    repo_id: str | None = None,
    margin: "pl.DataFrame | str | None" = None,
    margin_scale: float = 1.0,
    strength: str | None = None,
) -> ExportResult:
    """Write the subset named `subset` (or its subset_id) as a folder, a Parquet file or a JSONL file.

    repo_id only goes into the dataset card's loading snippets. margin adds the margin column: "strength" for
    max(mean, 0) * margin_scale from the strength identity `strength` (default: the latest), the mean taken in
    each row's orientation (a flipped row's is -mean); or a frame of `pair_id` and `margin` (no values are made
    up: without a margin there is no such column).
    """
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise CurateError(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    ws.require()
    table, row, sources = _read_subset(ws, subset)
    if table.num_rows == 0:
        params = json.loads(row["params"] or "{}")
        raise CurateError(EMPTY_FIX.format(name=row["name"], strategy=row["strategy"],
                                           bigger=_bigger_eps(params.get("eps")), iteration=row["iteration"]))
    margin_record = None
    if isinstance(margin, str):
        margin, margin_record = _strength_margin(ws, table, margin, margin_scale, strength)
    elif strength is not None:
        raise CurateError("--strength picks the strength rows of --margin strength: give --margin strength too.")
    if margin is not None:
        table = _with_margin(table, margin)
        margin_record = margin_record or {"source": "frame"}
    target = Path(to) if to is not None else default_target(row["name"], fmt)
    sidecar = target.with_name(target.name + ".provenance.json") if fmt == "jsonl" else None
    finals = [target] if sidecar is None else [target, sidecar]
    for p in finals:
        clear_stale(p)  # what a killed export of this target left beside it (an earlier version is put back)
    existing = [p for p in finals if exists(p)]
    if existing and not force:
        raise _already_there(existing[0])

    prov = provenance(ws, row, table, sources, fmt)
    if margin_record:
        prov["margin"] = margin_record
    target.parent.mkdir(parents=True, exist_ok=True)
    # One staging for every format rather than staged_dir/staged_file: a JSONL export is two files that go
    # into place together, and staged_file would replace an existing file even without force.
    staged = [temp_name(p) for p in finals]
    try:
        with guard(target, needed=table.nbytes, written=lambda: sum(folder_bytes(p) for p in staged)):
            if fmt == "folder":
                write_folder(staged[0], table, prov, repo_id=repo_id)
            elif fmt == "parquet":
                _write_parquet(staged[0], table, prov)
            else:
                _write_jsonl(staged[0], table)
                staged[1].write_text(_json(prov), encoding="utf-8")
            for tmp, final in zip(staged, finals):
                move_into_place(tmp, final, force, refuse=_already_there)
    except BaseException:
        for tmp in staged:
            remove(tmp)
        raise
    names = table.schema.names
    return ExportResult(target, fmt, row["name"], row["subset_id"], table.num_rows, prov["distinct_pairs"],
                        prov["picked_twice"], names, bool(existing), time.perf_counter() - t0, prov)


def _already_there(path: Path) -> CurateError:
    return CurateError(f"{path} already exists: pass --force to replace it, or choose another --output PATH.")


def _bigger_eps(eps: Any) -> str:
    try:
        return f"{min(2.0, float(eps) * 2):g}"
    except (TypeError, ValueError):
        return "0.4"


# -- reading --------------------------------------------------------------------------------------
def _read_subset(ws: Workspace, subset: str) -> tuple["pa.Table", dict, list[dict]]:
    """The subset's rows (Arrow, in the export schema), its `subsets` row, and its pairs' sources."""
    from ..subsets import read_rows

    table, row = read_rows(ws, subset)
    with ws.connect() as con:
        cur = con.execute(SOURCES_SQL, {"subset_id": row["subset_id"]})
        cols = [d[0] for d in cur.description]
        sources = [dict(zip(cols, r)) for r in cur.fetchall()]
    return _conform(table), row, sources


def _schema(with_margin: bool = False) -> "pa.Schema":
    import pyarrow as pa

    specs = COLUMNS + ((MARGIN_SPEC,) if with_margin else ())
    return pa.schema([pa.field(name, pa.type_for_alias(arrow)) for name, arrow, _, _ in specs])


def _conform(table: "pa.Table", with_margin: bool = False) -> "pa.Table":
    import pyarrow as pa

    schema = _schema(with_margin)
    return pa.table([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def _strength_margin(ws: Workspace, table: "pa.Table", source: str, scale: float,
                     strength: str | None) -> tuple["pl.DataFrame", dict]:
    """(pair_id, flipped, margin) from the strength table, and its record for the provenance."""
    import polars as pl

    from ..strength_rows import check_scale, margins, oriented_means

    if source != "strength":
        raise CurateError(f"margin {source!r}: the one named source is 'strength' (or pass a pair_id, margin frame).")
    check_scale(scale)
    ids, flipped = table.column("pair_id").to_pylist(), table.column("flipped").to_pylist()
    means, chosen = oriented_means(ws, ids, flipped, strength)
    frame = pl.DataFrame({"pair_id": ids, "flipped": flipped, MARGIN_COLUMN: margins(means, scale)})
    return frame, {"source": "strength", "identity": chosen.identity, "strength": chosen.record(), "scale": scale,
                   "formula": "max(mean, 0) * scale; a flipped row's mean is -mean (Secrets of RLHF II, eq. 6, "
                              "as TRL's d = r_chosen - r_rejected - margin)"}


def _with_margin(table: "pa.Table", margin: "pl.DataFrame") -> "pa.Table":
    """Add the margin column from a (pair_id[, flipped], margin) frame; every exported row needs one."""
    import polars as pl

    if not {"pair_id", MARGIN_COLUMN} <= set(margin.columns):
        raise CurateError(f"margin must have columns pair_id and {MARGIN_COLUMN}; it has {', '.join(margin.columns)}.")
    on = ["pair_id", "flipped"] if "flipped" in margin.columns else ["pair_id"]  # a row's margin follows its label
    keys = [pl.col("pair_id").cast(pl.String)] + ([pl.col("flipped").cast(pl.Boolean)] if len(on) > 1 else [])
    m = margin.select(*keys, pl.col(MARGIN_COLUMN).cast(pl.Float64)).unique(on)
    df = pl.from_arrow(table).join(m, on=on, how="left", maintain_order="left")
    missing = df.filter(pl.col(MARGIN_COLUMN).is_null())
    if missing.height:
        raise CurateError(f"margin has no value for {missing['pair_id'].n_unique():,} pair(s) of the subset "
                          f"(e.g. {missing['pair_id'][0]}): RewardTrainer needs a margin on every row.")
    return _conform(df.to_arrow(), with_margin=True)


# -- writing --------------------------------------------------------------------------------------
def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"


def _with_provenance(table: "pa.Table", prov: dict) -> "pa.Table":
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(prov, ensure_ascii=False, default=str).encode("utf-8")
    return table.replace_schema_metadata(meta)


def _write_parquet(path: Path, table: "pa.Table", prov: dict) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_with_provenance(table, prov), path, compression="zstd")


def _write_jsonl(path: Path, table: "pa.Table") -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for batch in table.to_batches(max_chunksize=4096):
            for rec in batch.to_pylist():
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_folder(folder: Path, table: "pa.Table", prov: dict, *, repo_id: str | None = None) -> None:
    """A Hub dataset folder: data/train-00000-of-00001.parquet, README.md (the card), curate_provenance.json."""
    folder.mkdir(parents=True)
    (folder / DATA_FILE).parent.mkdir(parents=True)
    _write_parquet(folder / DATA_FILE, table, prov)
    (folder / CARD_FILE).write_text(dataset_card(prov, table, repo_id=repo_id), encoding="utf-8")
    (folder / PROVENANCE_FILE).write_text(_json(prov), encoding="utf-8")

