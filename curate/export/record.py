"""The provenance record of an export: how the subset was made, from what inputs, with which versions.

It goes into every export (curate_provenance.json in a folder, the Parquet schema metadata, a JSONL file's
sidecar) and the dataset card is written from it. Package versions come from curate.provenance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..workspace import Workspace, utcnow
from .card import license_of
from .spec import PROVENANCE_FORMAT

if TYPE_CHECKING:
    import pyarrow as pa


def provenance(ws: Workspace, row: dict, table: "pa.Table", sources: list[dict], fmt: str) -> dict:
    """Everything about how the subset was made: filter, model, policy, inputs and their hashes, versions."""
    import pyarrow.compute as pc

    from ..provenance import versions

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
    license_id, license_from = license_of([s["source"] for s in sources])
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
        "flipped_rows": int(pc.sum(table.column("flipped")).as_py() or 0),  # written with chosen and rejected swapped
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

