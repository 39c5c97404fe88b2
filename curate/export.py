"""`curate export`: write a subset as a dataset TRL's RewardTrainer reads, with its provenance; push it to the Hub.

    from curate.export import export_subset, push_to_hub
    r = export_subset(Workspace("workspace"), "frft-split-even-it1")          # datasets_out/frft-split-even-it1/
    url = push_to_hub(r.path, "me/frft-split-even-it1", private=True)

One row per row of `subset_pairs`, in rank order, joined to `pairs`: `prompt`, `chosen`, `rejected` (TRL's
standard preference format with an explicit prompt: `prompt + chosen` is the chosen transcript), then
`pair_id`, `rank`, `score`, `picked_by` and the similarities the filter ranked by (`pos_sim`, `neg_sim`).
A split-even subset may hold a pair twice (picked by both halves, as in the paper): both rows are kept.

Formats: `folder` (default) is a Hub dataset folder that `datasets.load_dataset(folder)` loads
(`data/train-00000-of-00001.parquet`, a `README.md` dataset card, `curate_provenance.json`); `parquet` is
one file with the provenance in its schema metadata (key `curate_provenance`); `jsonl` is one file with a
`<file>.provenance.json` sidecar. Every target is staged next to itself and renamed into place when
complete, so a failed export leaves nothing behind, and `force` replaces an old target only then.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CurateError
from .workspace import Workspace, file_key, utcnow

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

FORMATS = ("folder", "parquet", "jsonl")
DEFAULT_DIR = "datasets_out"
DATA_FILE = "data/train-00000-of-00001.parquet"
CARD_FILE = "README.md"
PROVENANCE_FILE = "curate_provenance.json"
PROVENANCE_KEY = b"curate_provenance"  # parquet schema metadata key
PROVENANCE_FORMAT = "curate-export/1"
# Preference strength is a later issue: when a source for it exists, pass `margin` (pair_id -> margin) and the
# export gains this column, which RewardTrainer reads as the margin of its loss (trl.RewardTrainer.compute_loss).
MARGIN_COLUMN = "margin"

# (name, arrow type, dataset card dtype, meaning), in the order the files hold them
COLUMNS = (
    ("prompt", "string", "string", "shared transcript up to and including the final '\\n\\nAssistant:'"),
    ("chosen", "string", "string", "preferred response (prompt + chosen is the chosen transcript)"),
    ("rejected", "string", "string", "unfavored response (prompt + rejected is the rejected transcript)"),
    ("pair_id", "string", "string", "content hash of the pair (the same in every curate workspace)"),
    ("rank", "int32", "int32", "rank within the subset (1 = first picked)"),
    ("score", "float64", "float64", "the score the filter ranked by"),
    ("picked_by", "string", "string", "which rule picked the row (pos or neg half, or the filter's own label)"),
    ("pos_sim", "float64", "float64",
     "cos(E(chosen), E(policy generation)), aggregated over samples as the filter did"),
    ("neg_sim", "float64", "float64",
     "cos(E(rejected), E(policy generation)), aggregated over samples as the filter did"),
)
MARGIN_SPEC = (MARGIN_COLUMN, "float64", "float64", "preference strength, used by RewardTrainer as the loss margin")


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
HUB_INSTALL_FIX = "--hub needs huggingface_hub: pip install 'curate[hub]'."
NO_TOKEN_FIX = (
    "The Hub refused the push to {repo_id!r} (401 Unauthorized): {why}. Set HF_TOKEN to a token with write "
    "access (https://huggingface.co/settings/tokens) or run `hf auth login`, then try again."
)
NETWORK_FIX = (
    "Could not reach the Hugging Face Hub at {endpoint} ({error}). Check the network, or HF_ENDPOINT if you use "
    "a mirror; or export locally with --to PATH and upload the folder later."
)

# Licenses we can name from a LICENSE file's opening lines or a known Hub id; anything else is 'other'.
LICENSE_PATTERNS = (
    (r"\bMIT License\b", "mit"),
    (r"\bApache License\b.*\b2\.0\b", "apache-2.0"),
    (r"\bCreative Commons Attribution-ShareAlike 4\.0\b", "cc-by-sa-4.0"),
    (r"\bCreative Commons Attribution 4\.0\b", "cc-by-4.0"),
    (r"\bCC0 1\.0\b", "cc0-1.0"),
)
KNOWN_HUB_LICENSES = {"Anthropic/hh-rlhf": "mit"}  # the license file of github.com/anthropics/hh-rlhf
LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")


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
    margin: "pl.DataFrame | None" = None,
) -> ExportResult:
    """Write the subset named `subset` (or its subset_id) as a folder, a Parquet file or a JSONL file.

    repo_id only goes into the dataset card's loading snippets. margin, a frame of `pair_id` and `margin`,
    adds the margin column (no values are made up: without it there is no such column).
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
    if margin is not None:
        table = _with_margin(table, margin)
    target = Path(to) if to is not None else default_target(row["name"], fmt)
    sidecar = target.with_name(target.name + ".provenance.json") if fmt == "jsonl" else None
    existing = [p for p in (target, sidecar) if p is not None and (p.exists() or p.is_symlink())]
    if existing and not force:
        raise CurateError(f"{existing[0]} already exists: pass --force to replace it, or choose another --to PATH.")

    prov = provenance(ws, row, table, sources, fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []  # (temporary, final)
    try:
        if fmt == "folder":
            tmp = _temp_path(target)
            staged.append((tmp, target))
            write_folder(tmp, table, prov, repo_id=repo_id)
        elif fmt == "parquet":
            tmp = _temp_path(target)
            staged.append((tmp, target))
            _write_parquet(tmp, table, prov)
        else:
            tmp, tmp_side = _temp_path(target), _temp_path(sidecar)
            staged += [(tmp, target), (tmp_side, sidecar)]
            _write_jsonl(tmp, table)
            tmp_side.write_text(_json(prov), encoding="utf-8")
        for tmp, final in staged:
            _move_into_place(tmp, final, force)
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise
    names = table.schema.names
    return ExportResult(target, fmt, row["name"], row["subset_id"], table.num_rows, prov["distinct_pairs"],
                        prov["picked_twice"], names, bool(existing), time.perf_counter() - t0, prov)


def _bigger_eps(eps: Any) -> str:
    try:
        return f"{min(2.0, float(eps) * 2):g}"
    except (TypeError, ValueError):
        return "0.4"


# -- reading --------------------------------------------------------------------------------------
def _read_subset(ws: Workspace, subset: str) -> tuple["pa.Table", dict, list[dict]]:
    """The subset's rows (Arrow, in the export schema), its `subsets` row, and its pairs' sources."""
    from .subsets import read_rows

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


def _conform(table: "pa.Table") -> "pa.Table":
    import pyarrow as pa

    schema = _schema()
    return pa.table([table.column(f.name).cast(f.type) for f in schema], schema=schema)


def _with_margin(table: "pa.Table", margin: "pl.DataFrame") -> "pa.Table":
    """Add the margin column from a (pair_id, margin) frame; every exported pair needs one."""
    import polars as pl
    import pyarrow as pa

    if not {"pair_id", MARGIN_COLUMN} <= set(margin.columns):
        raise CurateError(f"margin must have columns pair_id and {MARGIN_COLUMN}; it has {', '.join(margin.columns)}.")
    m = margin.select(pl.col("pair_id").cast(pl.String), pl.col(MARGIN_COLUMN).cast(pl.Float64)).unique("pair_id")
    df = pl.from_arrow(table).join(m, on="pair_id", how="left", maintain_order="left")
    missing = df.filter(pl.col(MARGIN_COLUMN).is_null())
    if missing.height:
        raise CurateError(f"margin has no value for {missing['pair_id'].n_unique():,} pair(s) of the subset "
                          f"(e.g. {missing['pair_id'][0]}): RewardTrainer needs a margin on every row.")
    out = df.to_arrow()
    schema = _schema(with_margin=True)
    return pa.table([out.column(f.name).cast(f.type) for f in schema], schema=schema)


# -- provenance -----------------------------------------------------------------------------------
def provenance(ws: Workspace, row: dict, table: "pa.Table", sources: list[dict], fmt: str) -> dict:
    """Everything about how the subset was made: filter, model, policy, inputs and their hashes, versions."""
    import pyarrow.compute as pc

    from .provenance import versions

    params = json.loads(row["params"] or "{}")
    counts = json.loads(row["counts"] or "{}")
    manifest_path = ws.manifests_dir / f"filter-{row['subset_id']}.json"
    manifest = _load_json(manifest_path) or {}
    model = manifest.get("embedding_model") or {"model_id": params.get("model_id")}
    model = {k: (str(v) if k == "created_at" and v is not None else v) for k, v in model.items()}
    if isinstance(model.get("identity"), str):
        try:
            model["identity"] = json.loads(model["identity"])
        except ValueError:
            pass
    ingest_sources, ingest_manifests = _ingest_sources(ws, sources)
    generations, gen_manifests = _generation_sources(ws, row["branch"], row["iteration"])
    license_id, license_from = _license([s["source"] for s in sources])
    picked_by = pc.value_counts(table.column("picked_by")).to_pylist()
    distinct = len(pc.unique(table.column("pair_id")))
    return {
        "format": PROVENANCE_FORMAT,
        "subset": {
            "name": row["name"], "subset_id": row["subset_id"], "strategy": row["strategy"],
            "branch": row["branch"], "iteration": row["iteration"], "params": params,
            "paper": (manifest.get("header") or {}).get("paper"), "created_at": row["created_at"],
            "counts": counts,
        },
        "filter_sql": {"file": manifest.get("sql_file"), "sha256": row["sql_sha256"], "sql": manifest.get("sql")},
        "embedding_model": model,
        "similarity_aggregate": params.get("aggregate", "mean"),
        "policies": manifest.get("policies", []),
        "rows": table.num_rows,
        "distinct_pairs": distinct,
        "picked_twice": table.num_rows - distinct,
        "picked_by": {d["values"]: d["counts"] for d in sorted(picked_by, key=lambda d: str(d["values"]))},
        "columns": table.schema.names,
        "sources": ingest_sources,
        "generations": generations,
        "similarities_files": manifest.get("similarities_files", []),
        "license": license_id,
        "license_from": license_from,
        "manifests": {
            "filter": manifest_path.name if manifest else None,
            "ingest": ingest_manifests,
            "generations": gen_manifests,
        },
        "filter_versions": manifest.get("versions", {}),
        "versions": versions(("polars", "duckdb", "pyarrow", "datasets", "huggingface_hub", "trl")),
        "export_format": fmt,
        "exported_at": utcnow(),
    }


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def _ingest_sources(ws: Workspace, sources: list[dict]) -> tuple[list[dict], list[str]]:
    """The input files of the exported pairs, with the hashes their ingest manifests recorded."""
    out, names = [], []
    manifests: dict[str, dict | None] = {}
    for s in sources:
        iid = s["ingest_id"]
        if iid not in manifests:
            manifests[iid] = _load_json(ws.manifests_dir / f"ingest-{iid}.json")
            if manifests[iid] is not None:
                names.append(f"ingest-{iid}.json")
        recorded = next((x for x in (manifests[iid] or {}).get("sources", []) if x.get("source") == s["source"]), {})
        out.append({"source": s["source"], "ingest_id": iid, "rows_in_export": s["rows"],
                    **{k: recorded.get(k) for k in ("sha256", "size", "format", "subset", "split", "revision")}})
    return out, names


def _generation_sources(ws: Workspace, branch: str, iteration: int) -> tuple[list[dict], list[str]]:
    """Generation files imported for the subset's (branch, iteration), with their hashes."""
    out, names = [], []
    for path in sorted(ws.manifests_dir.glob("generations-*.json")):
        m = _load_json(path) or {}
        opts = m.get("options", {})
        if opts.get("branch") == branch and opts.get("iteration") == iteration:
            names.append(path.name)
            out.append({**(m.get("input") or {}), "policy": opts.get("policy"), "import_id": m.get("import_id")})
    return out, names


def _license(sources: list[str]) -> tuple[str, list[str]]:
    """The sources' license when every source names the same one (LICENSE file or known Hub id), else 'other'."""
    found, where = set(), []
    for source in sources:
        lic, src = _source_license(source)
        found.add(lic)
        if src:
            where.append(src)
    if len(found) == 1 and None not in found:
        return found.pop(), sorted(set(where))
    return "other", []


def _source_license(source: str) -> tuple[str | None, str | None]:
    if source.startswith("hf:"):
        repo = source[3:]
        return KNOWN_HUB_LICENSES.get(repo), (f"hf:{repo}" if repo in KNOWN_HUB_LICENSES else None)
    for folder in list(Path(source).parents)[:3]:  # the file's folder and two above (HH-RLHF: repo/subset/file)
        for name in LICENSE_FILES:
            path = folder / name
            if path.is_file():
                try:
                    head = path.read_text(encoding="utf-8", errors="replace")[:400]
                except OSError:
                    return None, None
                for pattern, lic in LICENSE_PATTERNS:
                    if re.search(pattern, head):
                        return lic, str(path)
                return None, str(path)
    return None, None


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


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(tmp: Path, final: Path, force: bool) -> None:
    """Rename the complete tmp to final; an old final (with force) is moved aside first and removed after."""
    if not (final.exists() or final.is_symlink()):
        os.rename(tmp, final)
        return
    if not force:
        raise CurateError(f"{final} already exists: pass --force to replace it, or choose another --to PATH.")
    old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    _remove(old)


# -- the dataset card -----------------------------------------------------------------------------
def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def to_yaml(obj: Any) -> str:
    """Block-style YAML for the card's front matter (PyYAML, which huggingface_hub also uses for cards)."""
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")


def card_metadata(prov: dict, table: "pa.Table") -> dict:
    """The card's YAML front matter: license, task, tags, the data files and their features."""
    dtypes = {name: dtype for name, _, dtype, _ in COLUMNS + (MARGIN_SPEC,)}
    meta: dict[str, Any] = {"license": prov["license"]}
    if prov["license"] == "other":
        meta["license_name"] = "unknown"  # the sources named no license curate knows: see the card's Sources
    meta.update({
        "pretty_name": prov["subset"]["name"],
        "task_categories": ["text-generation", "text-classification"],
        "tags": ["rlhf", "frft", "preference", "reward-modeling", "trl", "curate"],
        "size_categories": [_size_category(table.num_rows)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "dataset_info": {
            "features": [{"name": name, "dtype": dtypes[name]} for name in table.schema.names],
            "splits": [{"name": "train", "num_bytes": table.nbytes, "num_examples": table.num_rows}],
            "dataset_size": table.nbytes,
        },
    })
    return meta


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    s = "" if v is None else (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v))
    return s.replace("|", "\\|").replace("\n", " ")


def dataset_card(prov: dict, table: "pa.Table", *, repo_id: str | None = None) -> str:
    """README.md of an exported folder: YAML front matter, then what the subset is and how it was made."""
    s, p, m = prov["subset"], prov["subset"]["params"], prov["embedding_model"]
    counts = s.get("counts") or {}
    name = s["name"]
    floor = p.get("floor", None if p.get("eps") is None else round(1 - p["eps"], 12))
    where = repo_id or f"path/to/{name}"
    lines = ["---", to_yaml(card_metadata(prov, table)), "---", "", f"# {name}", ""]
    paper = f" ({s['paper']})" if s.get("paper") else ""
    lines += [
        f"Preference pairs picked by curate with the FRFT filter `{s['strategy']}`{paper} "
        f"from iteration {s['iteration']} of branch `{s['branch']}`: **{prov['rows']:,} rows** "
        f"({prov['distinct_pairs']:,} distinct pairs)"
        + (f" out of {counts['scored']:,} scored pairs" if "scored" in counts else "") + ".",
        "",
        "Rows are in rank order. `prompt`, `chosen` and `rejected` are TRL's standard preference format with an "
        "explicit prompt (`prompt + chosen` is the full chosen transcript), so `trl.RewardTrainer` takes the "
        "`train` split as it is; the other columns say why each row was picked.",
        "",
    ]
    if prov["picked_twice"]:
        lines += [
            f"**{prov['picked_twice']:,} pair(s) appear twice**: picked by both halves of the filter (`picked_by` "
            "`pos` and `neg`). The FRFT paper keeps both copies (section 5.3, Part 2), and so does this export; "
            "drop duplicates on `pair_id` if you want each pair once.",
            "",
        ]
    lines += ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    docs = {name: (dtype, doc) for name, _, dtype, doc in COLUMNS + (MARGIN_SPEC,)}
    for col in table.schema.names:
        dtype, doc = docs[col]
        if col in ("pos_sim", "neg_sim"):
            doc = doc.replace("as the filter did", f"by their {prov['similarity_aggregate']} (as the filter did)")
        lines.append(f"| `{col}` | {dtype} | {_cell(doc)} |")
    lines += ["", "## Provenance", "", "| | |", "|---|---|"]
    model_desc = m.get("model_id")
    if m.get("name"):
        model_desc = f"{m['model_id']} ({m['name']}"
        model_desc += f", revision {m['revision']}" if m.get("revision") else ""
        model_desc += f", weights sha256 {m['weights_sha256']}" if m.get("weights_sha256") else ""
        model_desc += ")"
    param_desc = ", ".join(f"{k} {_cell(v)}" for k, v in (
        ("eps", p.get("eps")), ("floor", floor), ("size", p.get("size")), ("aggregate", p.get("aggregate")),
        ("distinct", p.get("distinct"))) if v is not None)
    if p.get("user"):
        param_desc += f", user parameters {_cell(p['user'])}"
    picked = ", ".join(f"{k} {v:,}" for k, v in prov["picked_by"].items())
    floor_counts = ", ".join(f"{k.replace('_', ' ')} {counts[k]:,}" for k in (
        "pos_above_floor", "neg_above_floor", "both_above_floor", "either_above_floor") if k in counts)
    rows = [
        ("subset", f"`{name}` (subset_id `{s['subset_id']}`)"),
        ("strategy", f"`{s['strategy']}`{paper}"),
        ("parameters", param_desc),
        ("iteration, branch", f"{s['iteration']}, `{s['branch']}`"),
        ("embedding model", model_desc),
        ("policy", ", ".join(f"`{x}`" for x in prov["policies"]) or "(not recorded)"),
        ("rows", f"{prov['rows']:,} ({prov['distinct_pairs']:,} distinct pairs, {prov['picked_twice']:,} picked "
                 f"twice; picked by: {picked})"),
        ("scored pairs", f"{counts['scored']:,}; above the floor: {floor_counts}" if "scored" in counts else None),
        ("filter SQL", f"`{prov['filter_sql'].get('file') or '?'}`, sha256 `{prov['filter_sql']['sha256']}`"),
        ("subset created", s.get("created_at")),
        ("exported", prov["exported_at"]),
        ("license", prov["license"] + (f" (from {', '.join(prov['license_from'])})" if prov["license_from"]
                                       else " (no license curate recognises in the sources)")),
        ("versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if k != "platform")),
    ]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows if v is not None]
    lines += ["", "### Sources", "", "| source | rows here | sha256 | size | ingest |", "|---|---|---|---|---|"]
    for src in prov["sources"]:
        lines.append(f"| `{_cell(src['source'])}` | {src['rows_in_export']:,} | `{src.get('sha256') or '?'}` | "
                     f"{_cell(src.get('size'))} | `{src['ingest_id']}` |")
    if prov["generations"]:
        lines += ["", "### Policy generations", "", "| source | policy | sha256 | size |", "|---|---|---|---|"]
        for g in prov["generations"]:
            lines.append(f"| `{_cell(g.get('source'))}` | `{_cell(g.get('policy'))}` | `{g.get('sha256') or '?'}` | "
                         f"{_cell(g.get('size'))} |")
    lines += ["", f"The same record as JSON is in `{PROVENANCE_FILE}` (and in the Parquet file's schema metadata, "
              f"key `{PROVENANCE_KEY.decode()}`)."]
    if prov["filter_sql"].get("sql"):
        lines += ["", "<details><summary>The filter's SQL</summary>", "", "```sql",
                  prov["filter_sql"]["sql"].rstrip(), "```", "", "</details>"]
    local = repo_id is None
    lines += [
        "", "## Load it", "", "```python", "from datasets import load_dataset", "",
        f'ds = load_dataset("{where}")["train"]' + ("   # this folder" if local else ""),
        "```", "", "```python", "import polars as pl", "",
        (f'df = pl.read_parquet("{where}/data/*.parquet")' if local
         else f'df = pl.read_parquet("hf://datasets/{repo_id}/data/*.parquet")'),
        "```", "", "```sql",
        (f"-- duckdb\nselect * from '{where}/data/*.parquet' order by rank;" if local
         else f"-- duckdb\nselect * from 'hf://datasets/{repo_id}/data/*.parquet' order by rank;"),
        "```", "", "Train a reward model on it with TRL:", "", "```python",
        "from trl import RewardConfig, RewardTrainer", "",
        'trainer = RewardTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=RewardConfig(output_dir="rm"), '
        "train_dataset=ds)",
        "trainer.train()", "```", "",
    ]
    return "\n".join(lines)


# -- the Hub ---------------------------------------------------------------------------------------
def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False, *,
                commit_message: str | None = None) -> str:
    """Create dataset repo `repo_id` (if new) and upload `folder` to it; returns the repo's URL.

    The token is whatever huggingface_hub finds (HF_TOKEN, then `hf auth login`'s file): curate never reads,
    prints or stores it.
    """
    try:
        from huggingface_hub import HfApi, constants
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
    except ImportError:
        raise CurateError(HUB_INSTALL_FIX) from None

    folder = Path(folder)
    if not (folder / CARD_FILE).is_file():
        raise CurateError(f"{folder} is not an exported dataset folder (it has no {CARD_FILE}): export it first "
                          "with `curate export SUBSET`.")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=None)
        if private:  # exist_ok keeps an existing repo's visibility; never leave a --private push public
            api.update_repo_settings(repo_id, repo_type="dataset", private=True, token=None)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset", token=None,
                          commit_message=commit_message or f"curate export {folder.name}")
    except HFValidationError as e:
        raise CurateError(f"{repo_id!r} is not a valid Hub repo id ({e}). Use NAMESPACE/NAME, e.g. my-user/"
                          "frft-split-even-it1: letters, digits, '-', '_' and '.', at most 96 characters.") from None
    except OfflineModeIsEnabled:
        raise CurateError("HF_HUB_OFFLINE is set, so nothing can be pushed: unset it, or export locally with "
                          "--to PATH.") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise CurateError(_http_message(repo_id, status, e)) from None
    except Exception as e:
        if _is_network_error(e):
            error = _scrub(f"{type(e).__name__}: {e}")
            raise CurateError(NETWORK_FIX.format(endpoint=constants.ENDPOINT, error=error)) from None
        raise
    return str(url)


def _http_message(repo_id: str, status: int | None, e: Exception) -> str:
    server = _scrub(getattr(e, "server_message", None) or str(e).splitlines()[-1]).strip()
    if status == 401:
        from huggingface_hub import get_token

        why = "no token was found" if get_token() is None else "the token was not accepted"
        return NO_TOKEN_FIX.format(repo_id=repo_id, why=why)
    if status == 403:
        return (f"The Hub refused the push to {repo_id!r} (403 Forbidden: {server}): the token cannot write to the "
                f"namespace {repo_id.split('/')[0]!r}. Use a token with write access there, or push to your own "
                "namespace.")
    return f"The Hub answered {status} while pushing to {repo_id!r}: {server}"


def _is_network_error(e: BaseException) -> bool:
    """Connection refused, DNS failure, timeout: from httpx, requests or the socket layer, whichever is in use."""
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"TransportError", "ConnectError", "NetworkError", "TimeoutException", "ConnectionError",
                "ConnectTimeout", "Timeout"}:
        return True
    return isinstance(e, (ConnectionError, TimeoutError)) or (
        e.__cause__ is not None and _is_network_error(e.__cause__))


def _scrub(text: str) -> str:
    """Keep the token out of anything curate prints, whatever a library put in an error message."""
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:
        token = None
    return text.replace(token, "hf_***") if token else text
