"""Training data for the trainers: preference rows (prompt, chosen, rejected[, margin]) and SFT rows.

    from curate.train.data import load_preferences, load_sft, load_eval_pairs
    prefs = load_preferences(workspace="workspace", subset="frft-split-even-it1")   # a curate subset
    prefs = load_preferences(data="datasets_out/frft-split-even-it1")               # an exported folder
    prefs.dataset        # datasets.Dataset: prompt, chosen, rejected (+ margin, pair_id, flipped when present)
    prefs.source         # what was read, with the subset id and its filter manifest's sha256

Every row is TRL's standard preference format with an explicit prompt (`prompt + chosen` is the chosen
transcript), which is what `curate export` writes and `trl.RewardTrainer` reads. A flipped row of a subset
(flip, --flip) comes with chosen and rejected swapped, as `curate export` writes it, so both routes train on
the same labels. `with_strength` adds the columns --margin strength and --smooth-incorrect train with.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CurateError
from ..fingerprint import sha256_file
from ..workspace import Workspace

if TYPE_CHECKING:
    import datasets

REQUIRED = ("prompt", "chosen", "rejected")
OPTIONAL = ("margin", "pair_id", "flipped")

EMPTY_SUBSET_FIX = (
    "Subset {name!r} (subset_id {subset_id}) has 0 rows: there is nothing to train on. Make a bigger one with a "
    "lower similarity floor (`curate filter --strategy ... --eps ...`, the floor is 1 - eps) and check it with "
    "`curate subsets {name}`."
)
NO_SFT_FIX = (
    "The workspace {root} has no pairs with role 'sft', so there is nothing to fine-tune on. Ingest with "
    "`curate ingest FILE --sft-fraction 0.5` (the paper gives half of HH-RLHF to SFT)."
)
MISSING_COLUMNS_FIX = (
    "{path} has no column(s) {missing} (it has {have}). Preference data needs prompt, chosen and rejected "
    "(TRL's explicit-prompt format, as `curate export` writes it); rename the columns or re-export the subset."
)


@dataclass
class Rows:
    """A datasets.Dataset and a record of where it came from (for curate_train.json)."""

    dataset: datasets.Dataset
    source: dict = field(default_factory=dict)


def load_preferences(workspace: str | os.PathLike | None = None, subset: str | None = None,
                     data: str | os.PathLike | None = None) -> Rows:
    """Preference rows from a workspace subset (by name or subset_id) or from an exported folder/parquet/jsonl."""
    if (subset is None) == (data is None):
        raise CurateError("Give either a subset of the workspace (--subset NAME) or a dataset (--data PATH), "
                          "one of them.")
    if subset is not None:
        return _from_subset(workspace, subset)
    return _from_path(Path(data))


def _from_subset(workspace, subset: str) -> Rows:
    import datasets

    from ..subsets import read_rows

    ws = Workspace(workspace).require()
    table, row = read_rows(ws, subset)
    if table.num_rows == 0:
        raise CurateError(EMPTY_SUBSET_FIX.format(name=row["name"], subset_id=row["subset_id"]))
    manifest = ws.manifests_dir / f"filter-{row['subset_id']}.json"
    source = {
        "kind": "subset", "workspace": str(ws.root), "subset": row["name"], "subset_id": row["subset_id"],
        "strategy": row["strategy"], "iteration": row["iteration"], "branch": row["branch"],
        "manifest": manifest.name if manifest.exists() else None,
        "manifest_sha256": sha256_file(manifest) if manifest.exists() else None,
        "sql_sha256": row["sql_sha256"],
    }
    cols = [c for c in (*REQUIRED, *OPTIONAL) if c in table.schema.names]
    return Rows(datasets.Dataset(table.select(cols)), source)


def _from_path(path: Path) -> Rows:
    import datasets

    if not path.exists():
        raise CurateError(f"{path} does not exist: give an exported folder (`curate export SUBSET`), a .parquet "
                          "or a .jsonl file.")
    # read afresh, never from datasets' cache: a re-exported folder at the same path once loaded as its stale copy
    fresh = {"download_mode": datasets.DownloadMode.FORCE_REDOWNLOAD}
    try:
        if path.is_dir():
            loaded = datasets.load_dataset(str(path), **fresh)
            split = "train" if "train" in loaded else next(iter(loaded))
            ds = loaded[split]
        elif path.suffix == ".parquet":
            ds = datasets.load_dataset("parquet", data_files=str(path), split="train", **fresh)
        elif path.suffix in (".jsonl", ".json") or path.name.endswith((".jsonl.gz", ".json.gz")):
            ds = datasets.load_dataset("json", data_files=str(path), split="train", **fresh)
        else:
            raise CurateError(f"{path}: unknown data format; give a folder, a .parquet or a .jsonl file.")
    except CurateError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds for unreadable inputs
        raise CurateError(f"{path}: could not load it with datasets.load_dataset ({type(e).__name__}: {e}).") from None
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise CurateError(MISSING_COLUMNS_FIX.format(path=path, missing=", ".join(missing),
                                                     have=", ".join(ds.column_names) or "none"))
    if len(ds) == 0:
        raise CurateError(f"{path} has 0 rows: there is nothing to train on.")
    ds = ds.select_columns([c for c in (*REQUIRED, *OPTIONAL) if c in ds.column_names])
    source: dict[str, Any] = {"kind": "data", "path": str(path.resolve())}
    if path.is_file():
        source["sha256"] = sha256_file(path)
    prov_file = path / "curate_provenance.json" if path.is_dir() else None
    if prov_file is not None and prov_file.is_file():  # an exported folder says which subset it holds
        prov = json.loads(prov_file.read_text(encoding="utf-8"))
        sub = prov.get("subset") or {}
        source.update(subset=sub.get("name"), subset_id=sub.get("subset_id"),
                      provenance_sha256=sha256_file(prov_file))
        data_files = sorted((path / "data").glob("*.parquet"))
        source["data_sha256"] = {f.name: sha256_file(f) for f in data_files}
    return Rows(ds, source)


def with_strength(rows: Rows, workspace, identity: str | None, margin_scale: float | None = None,
                  smooth_incorrect: float = 0.0) -> tuple["datasets.Dataset", dict]:
    """The rows with a `margin` column (max(mean, 0) * margin_scale; Secrets of RLHF II, eq. 6) and/or a
    `smoothing` column (smooth_incorrect where the mean is below 0, else 0; eq. 5 on the incorrect pairs only,
    section 2.5), from one strength identity of the workspace, each mean in the row's orientation (a flipped
    row's is -mean); and a record of what was used."""
    from ..strength_rows import check_scale, margins, oriented_means

    ds = rows.dataset
    if "pair_id" not in ds.column_names:
        raise CurateError("--margin strength and --smooth-incorrect look each row up in the `strength` table by "
                          "pair_id, and this data has no pair_id column: train on a --subset, or on an export of one.")
    flipped = list(ds["flipped"]) if "flipped" in ds.column_names else None
    means, chosen = oriented_means(Workspace(workspace).require(), list(ds["pair_id"]), flipped, identity)
    record: dict[str, Any] = {"identity": chosen.identity, "strength": chosen.record()}
    if margin_scale is not None:
        check_scale(margin_scale)
        if "margin" in ds.column_names:
            ds = ds.remove_columns("margin")
        ds = ds.add_column("margin", margins(means, margin_scale))
        record["margin"] = {"scale": margin_scale, "formula": "max(mean, 0) * scale"}
    if smooth_incorrect:
        ds = ds.add_column("smoothing", [smooth_incorrect if m < 0 else 0.0 for m in means])
        record["smooth_incorrect"] = {"alpha": smooth_incorrect, "rows": sum(m < 0 for m in means)}
    return ds, record


def _query_rows(workspace, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple], Path]:
    ws = Workspace(workspace).require()
    with ws.connect() as con:
        cur = con.execute(sql, params or {})
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall(), ws.root


def _predicate(where: str | None) -> str:
    """A user's own SQL predicate on `pairs` (typed values are bound as parameters, never formatted in)."""
    return f" and ({where})" if where else ""


def load_sft(workspace: str | os.PathLike | None = None, where: str | None = None, split: str | None = None) -> Rows:
    """The `sft` role pairs (of `split`, and matching `where`, a user's SQL predicate on pairs) as prompt +
    completion (the chosen response): the transcript is prompt + chosen."""
    import datasets

    cols, rows, root = _query_rows(
        workspace, "select pair_id, prompt, chosen as completion from pairs where role = 'sft' "
                   f"and ($split is null or split = $split){_predicate(where)} order by pair_id", {"split": split})
    if not rows:
        if where or split:
            what = " and ".join(x for x in (f"split {split!r}" if split else "", repr(where) if where else "") if x)
            raise CurateError(f"No pairs with role 'sft' match {what} in {root}.")
        raise CurateError(NO_SFT_FIX.format(root=root))
    ds = datasets.Dataset.from_dict({c: [r[i] for r in rows] for i, c in enumerate(cols)})
    ids = "\n".join(r[0] for r in rows).encode()
    return Rows(ds, {"kind": "sft_pairs", "workspace": str(root), "rows": len(rows), "split": split, "where": where,
                     "pair_ids_sha256": hashlib.sha256(ids).hexdigest()})


def load_eval_pairs(workspace: str | os.PathLike | None = None, where: str | None = None,
                    subset: str | None = None, split: str | None = None, limit: int | None = None) -> Rows:
    """Held-out pairs: those of `split` (default 'test' when neither split nor where is given) and matching
    `where` (a SQL predicate on pairs), the first `limit` by pair_id; or a subset's pairs."""
    import datasets

    if subset is not None and (where is not None or split is not None):
        raise CurateError("Give --where/--split or --subset, not both.")
    if subset is not None:
        rows = load_preferences(workspace, subset=subset)
        return Rows(rows.dataset, {**rows.source, "selection": f"subset {subset}"})
    if split is None and where is None:
        split = "test"
    try:
        cols, rows, root = _query_rows(
            workspace, "select pair_id, prompt, chosen, rejected from pairs where ($split is null or split = $split)"
                       f"{_predicate(where)} order by pair_id limit $limit",
            {"split": split, "limit": limit if limit else None})
    except CurateError:
        raise
    except Exception as e:  # noqa: BLE001 - a DuckDB error in the user's predicate
        raise CurateError(f"--where {where!r}: {str(e).splitlines()[0]}") from None
    described = " and ".join(x for x in (f"split = {split!r}" if split else "", where or "") if x)
    if not rows:
        raise CurateError(f"No pairs match {described!r} in the workspace: nothing to evaluate on. Pick held-out "
                          "pairs with --split (e.g. --split test), --where or --subset NAME.")
    ds = datasets.Dataset.from_dict({c: [r[i] for r in rows] for i, c in enumerate(cols)})
    return Rows(ds, {"kind": "pairs", "workspace": str(root), "where": described, "split": split, "limit": limit,
                     "rows": len(rows)})
