"""The `runs` table: one row per step of `curate run`, its inputs, outputs, status and time (the lineage).

    from curate.runs import runs_rows, lineage_text
    for r in runs_rows(Workspace("workspace-demo"), "demo"):
        print(r["step"], r["branch"], r["iteration"], r["status"], lineage_text(json.loads(r["outputs"]), out=True))

Each attempt of a step is one Parquet file holding one row: written `running` when the step starts and replaced
by its finished row (done, failed or interrupted) when it ends, so a killed process leaves a `running` row that
the next `--resume` marks `interrupted`. `curate runs` and the HTML report read the table through here.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from .workspace import Workspace

# the keys that tell where a step's inputs came from and what it made (curate runs, the HTML report)
LINEAGE_IN = ("sources", "model", "checkpoint", "policy", "generations", "similarities", "subset", "base", "reward")
LINEAGE_OUT = ("added", "checkpoint", "policy", "rows", "embedded", "pairs", "subset", "eval_accuracy",
               "reward_last", "html")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def runs_rows(ws: Workspace, run_id: str | None = None) -> list[dict]:
    """The rows of `runs` (of one run), oldest first, times as ISO strings."""
    if not ws.exists:
        return []
    with ws.connect() as con:
        cur = con.execute(
            "select * replace (strftime(started_at, '%Y-%m-%dT%H:%M:%SZ') as started_at, "
            "strftime(finished_at, '%Y-%m-%dT%H:%M:%SZ') as finished_at) from runs "
            "where ($run_id is null or run_id = $run_id) order by runs.started_at, runs.finished_at nulls last",
            {"run_id": run_id})
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def lineage_text(d: dict, out: bool = False, sep: str = "\n") -> str:
    """`key=value` lines of the lineage keys a step's inputs (or outputs) hold."""
    parts = []
    for k in LINEAGE_OUT if out else LINEAGE_IN:
        if k in d and d[k] not in (None, ""):
            v = f"{d[k]:.3f}" if isinstance(d[k], float) else d[k]
            parts.append(f"{k}={v}")
    return sep.join(parts)


def lineage_rows(ws: Workspace, run_id: str | None = None) -> list[dict]:
    """Every step (of one run) with its lineage as text, paths relative to the workspace (`curate runs`)."""
    root = str(ws.root) + "/"
    out = []
    for r in runs_rows(ws, run_id):
        made = lineage_text(json.loads(r["outputs"] or "{}"), out=True) or (r["error"] or "")
        out.append({**r, "from": lineage_text(json.loads(r["inputs"] or "{}")).replace(root, ""),
                    "made": made.replace(root, "")})
    return out


def now() -> datetime:
    """UTC now, naive, to the microsecond: steps that start within one second still sort in order."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _timestamp(value):
    if value is None or isinstance(value, datetime):
        return value
    return datetime.strptime(value, TIME_FORMAT)


def step_row(run_id: str, step: str, branch: str, iteration: int, inputs: dict, status: str, config_sha: str,
             started, finished, outputs: dict | None = None, seconds: float | None = None,
             error: str | None = None) -> dict:
    return {"run_id": run_id, "step": step, "branch": branch, "iteration": iteration, "status": status,
            "inputs": json.dumps(inputs, default=str), "outputs": json.dumps(outputs or {}, default=str),
            "config_sha256": config_sha, "started_at": started, "finished_at": finished, "seconds": seconds,
            "error": error}


def write_row(ws: Workspace, row: dict, replace: Path | None) -> Path:
    """Commit one `runs` row as its own file, replacing the file of the same attempt (running -> done)."""
    import polars as pl

    row = {**row, "started_at": _timestamp(row["started_at"]), "finished_at": _timestamp(row["finished_at"])}
    df = pl.DataFrame([row], schema_overrides={"seconds": pl.Float64, "error": pl.String, "finished_at": pl.Datetime})
    with ws.transaction("curate run") as tx:
        if replace is not None:
            tx.remove("runs", [replace])
        return tx.add("runs", df, key=f"{row['run_id']}-{row['step']}-{row['branch']}-it{row['iteration']}")


def mark_interrupted(ws: Workspace, run_id: str) -> int:
    """Rows left `running` by a killed process become `interrupted`; returns how many."""
    import polars as pl

    n = 0
    for f in ws.files("runs"):
        for row in pl.read_parquet(f).to_dicts():
            if row["run_id"] == run_id and row["status"] == "running":
                write_row(ws, {**row, "status": "interrupted",
                               "error": "the process ended during this step (killed?)"}, f)
                n += 1
    return n


def measured_throughput(ws: Workspace) -> dict[str, tuple[float, str]]:
    """{measure: (value, where from)}: the latest throughput each kind of finished run step measured."""
    out: dict[str, tuple[float, str]] = {}
    for r in runs_rows(ws):
        if r["status"] != "done" or not r["outputs"]:
            continue
        for k, v in (json.loads(r["outputs"]).get("throughput") or {}).items():
            if v:
                out[k] = (float(v), f"run {r['run_id']}, step {r['step']}")
    return out
