"""`curate check`: prove every live table file sound, say what a damaged one affects, and a way back (--repair).

A live file is sound when it is there, has the size and SHA-256 its commit recorded in state.json's `files`
(curate.integrity), opens as Parquet and has its table's columns. A file committed by an older curate has no
record: it is "unverified" (still opened and schema-checked), and --repair records it once it passes.

--repair never deletes: each damaged file (and the intact files that only made sense with it) is moved into
<workspace>/quarantine/<id>/<table>/ and dropped from the live state in one commit, so every reader works again;
the report then says which command rebuilds it (a derived table: embed, score, filter, ...) or which source files
to ingest again (pairs, rejects: from the ingest manifests). Removing the quarantine folder is the user's call.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_text
from .integrity import FileProblem, file_record, verify_file
from .workspace import Workspace, file_key, new_id

# what each table feeds, for "which later steps depend on it"
DOWNSTREAM = {
    "pairs": ["generations", "embeddings", "similarities", "subsets", "strength", "exports and trained models"],
    "rejects": [],
    "generations": ["embeddings", "sample_similarities", "similarities", "subsets", "exports and trained models"],
    "embeddings": ["sample_similarities", "similarities", "neighbors indexes", "subsets"],
    "embedding_models": ["embeddings", "similarities (score finds the model here)"],
    "sample_similarities": ["subsets (filters over samples)"],
    "similarities": ["subsets", "subset_pairs", "exports and trained models"],
    "subsets": ["subset_pairs", "exports and trained models"],
    "subset_pairs": ["exports and trained models"],
    "strength": ["exports with --margin strength", "reports"],
    "runs": ["`curate run`'s resume (which steps are done)"],
    "judgments": ["winrates"],
    "winrates": ["reports"],
}
# how each table is made again: the command, and whether its rows can only come back from the user's files
REBUILD = {
    "pairs": ("curate ingest", True), "rejects": ("curate ingest", True),
    "generations": ("curate generate / curate generations import", True),
    "embeddings": ("curate embed", False), "embedding_models": ("curate embed", False),
    "sample_similarities": ("curate score", False), "similarities": ("curate score", False),
    "subsets": ("curate filter", False), "subset_pairs": ("curate filter", False),
    "strength": ("curate strength", False), "runs": ("curate run", False),
    "judgments": ("curate eval winrate", False), "winrates": ("curate eval winrate", False),
}
# run steps that read a table (the `runs` rows done before the damage may need their step again)
CONSUMERS = {"pairs": None, "generations": ("embed", "score"), "embeddings": ("score",),
             "similarities": ("filter", "export", "sft", "rm", "ppo"), "subsets": ("export", "sft", "rm", "ppo"),
             "subset_pairs": ("export", "sft", "rm", "ppo")}


@dataclass
class TableCheck:
    table: str
    files: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    affects: list[str] = field(default_factory=list)
    advice: str = ""

    def as_dict(self) -> dict:
        return {"files": self.files, "problems": [p.as_dict() for p in self.problems],
                "unverified": self.unverified, "affects": self.affects, "advice": self.advice}


@dataclass
class CheckResult:
    workspace: str
    tables: dict[str, TableCheck]
    repaired: list[str] = field(default_factory=list)
    quarantine: str | None = None

    @property
    def problems(self) -> list[FileProblem]:
        return [p for t in self.tables.values() for p in t.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        n = sum(t.files for t in self.tables.values())
        unverified = sum(len(t.unverified) for t in self.tables.values())
        return {"workspace": self.workspace, "ok": self.ok, "files": n, "unverified": unverified,
                "damaged": len(self.problems), "tables": {k: t.as_dict() for k, t in self.tables.items()},
                "repaired": self.repaired, "quarantine": self.quarantine}


def check(ws: Workspace, deep: bool = True) -> CheckResult:
    """Verify every live file of the workspace; deep=False skips the SHA-256 (size, Parquet footer and schema only)."""
    ws.require()
    state = ws.state()
    records = state.get("files", {})
    result = CheckResult(str(ws.root), {})
    for table, rels in state["tables"].items():
        if not rels:
            continue
        tc = result.tables[table] = TableCheck(table, files=len(rels))
        for rel in rels:
            problem = verify_file(table, rel, ws.tables_dir / rel, records.get(rel), deep)
            if problem is not None:
                tc.problems.append(problem)
            elif rel not in records:
                tc.unverified.append(rel)
    for tc in result.tables.values():
        if tc.problems:
            tc.affects = affected(ws, state, tc, result)
            tc.advice = advice(ws, state, tc, result)
    return result


def _key(rel: str) -> str | None:
    """The key a file was written with (Transaction.add's key, before `--` in its name), if any."""
    name = rel.split("/", 1)[-1]
    return name.split("--", 1)[0] if "--" in name else None


def _sound(state: dict, table: str, result: CheckResult) -> list[str]:
    bad = {p.path for p in result.problems}
    return [r for r in state["tables"].get(table, []) if r not in bad]


def _column(ws: Workspace, rels: list[str], column: str) -> set:
    import pyarrow.parquet as pq

    out: set = set()
    for rel in rels:
        try:
            out.update(pq.read_table(ws.tables_dir / rel, columns=[column]).column(column).to_pylist())
        except Exception:  # a file that is itself damaged says so in its own table's report
            continue
    return out


def affected(ws: Workspace, state: dict, tc: TableCheck, result: CheckResult) -> list[str]:
    """Later steps and tables that depend on tc's damaged files: the tables it feeds, and in detail the files keyed
    by the same model or iteration, and the `runs` steps done that read it."""
    out = [t if " " in t else f"table {t}" for t in DOWNSTREAM.get(tc.table, []) if " " in t or t in state["tables"]]
    keys = {k for p in tc.problems if (k := _key(p.path))}
    if tc.table == "embeddings":  # keyed by model id: that model's scores
        for k in sorted(keys):
            sims = [r for r in _sound(state, "similarities", result) if (_key(r) or "").endswith(k)]
            out += [f"similarities {_key(r)} (scored with model {k})" for r in sims]
    if tc.table in ("similarities", "sample_similarities"):  # keyed <branch>-it<N>-<model>
        for k in sorted(keys):
            out.append(f"subsets filtered from {k} (`curate subsets` lists them)")
    consumers = CONSUMERS.get(tc.table, ())
    if "runs" in state["tables"] and tc.table != "runs" and consumers is not None:
        import pyarrow.parquet as pq

        for rel in _sound(state, "runs", result):
            try:
                rows = pq.read_table(ws.tables_dir / rel, columns=["run_id", "step", "branch", "iteration",
                                                                  "status"]).to_pylist()
            except Exception:
                continue
            out += [f"run {r['run_id']}: step {r['step']} {r['branch']}/it{r['iteration']} (done)" for r in rows
                    if r["status"] == "done" and (not consumers or r["step"] in consumers)]
    return out


def advice(ws: Workspace, state: dict, tc: TableCheck, result: CheckResult) -> str:
    """What to run once --repair has dropped tc's damaged files."""
    command, source = REBUILD.get(tc.table, (None, True))
    if tc.table in ("pairs", "rejects"):
        return ingest_again(ws, state, tc, result)
    keys = sorted({k for p in tc.problems if (k := _key(p.path))})
    names = _model_names(ws, state, result)
    if tc.table == "embeddings":
        return " and ".join(f"`curate embed{_model_option(names, k)}`" for k in keys) + \
            " embeds the dropped texts again (the rest stays cached)" if keys else \
            "`curate embed` embeds the dropped texts again"
    if tc.table in ("similarities", "sample_similarities"):
        how = []
        for k in keys:
            branch, _, rest = k.partition("-it")
            it, _, model = rest.partition("-")
            how.append(f"`curate score -i {it} --branch {branch}{_model_option(names, model)}`")
        return " and ".join(how) or "`curate score -i N` for the iteration scored"
    if tc.table in ("subsets", "subset_pairs"):
        return f"`curate filter` again for subset(s) {', '.join(keys)} (its options are in manifests/filter-*.json)"
    if tc.table == "embedding_models":
        return "--repair also sets aside the embeddings of models no longer registered; `curate embed --model " \
               "MODEL` then embeds and registers them again"
    if tc.table == "generations":
        made = [m.get("input", {}).get("source") for m in ws.manifests("generations")]
        files = ", ".join(sorted({m for m in made if m})) or "none recorded"
        return "import the generations again (`curate generations import FILE -i N --policy P --overwrite`; files " \
               f"imported before: {files}) or `curate generate` them again"
    return f"`{command}` again" + (" from your own files" if source else "") if command else "nothing rebuilds it"


def _model_names(ws: Workspace, state: dict, result: CheckResult) -> dict[str, str]:
    """model_id -> the name `--model` takes, from the sound embedding_models files."""
    import pyarrow.parquet as pq

    names: dict[str, str] = {}
    for rel in _sound(state, "embedding_models", result):
        try:
            rows = pq.read_table(ws.tables_dir / rel, columns=["model_id", "name"]).to_pylist()
        except Exception:  # damaged itself: reported in its own table
            continue
        names |= {r["model_id"]: r["name"] for r in rows}
    return names


def _model_option(names: dict[str, str], model_id: str) -> str:
    """` --model NAME` for a model id (file keys hold ids, the option takes a name or folder)."""
    name = next((n for m, n in names.items() if file_key(m) == model_id), None)
    return f" --model {name}" if name else f" --model MODEL (the model whose id is {model_id})"


def ingest_again(ws: Workspace, state: dict, tc: TableCheck, result: CheckResult) -> str:
    """The ingests whose rows are in no sound file any more (from the manifests), as the commands to run again."""
    present = _column(ws, _sound(state, tc.table, result), "ingest_id")
    count = "added" if tc.table == "pairs" else "rejected"
    lost = []
    for m in ws.manifests("ingest"):
        n = m.get("counts", {}).get(count)
        n = sum(n.values()) if isinstance(n, dict) else (n or 0)
        if n and m.get("ingest_id") not in present:
            lost.append(m)
    if not lost:
        return "`curate ingest` the source files again (no ingest manifest names them)"
    return "; ".join(_ingest_command(m) for m in lost) + " (pairs already present are skipped; pair ids and roles " \
        "come out the same)"


def _ingest_command(manifest: dict) -> str:
    o = manifest.get("options", {})
    args = ["curate ingest", *[s["source"] for s in manifest.get("sources", [])]]
    if o.get("format"):
        args.append(f"--format {o['format']}")
    args += [f"--field {k}={v}" for k, v in (o.get("fields") or {}).items()]
    args += [f"--sft-fraction {o.get('sft_fraction', 0.0)}", f"--seed {o.get('seed', 0)}"]
    args += [f"--{k} {o[k]}" for k in ("subset", "split", "revision") if o.get(k)]
    if o.get("skip_invalid"):
        args.append("--skip-invalid")
    return "`" + " ".join(args) + "`"


def repair(ws: Workspace, result: CheckResult | None = None) -> CheckResult:
    """Move every damaged live file into the quarantine folder and drop it from the live state (one commit); record
    the size and SHA-256 of the sound files an older curate left unrecorded. Returns the check it repaired."""
    with ws.lock("curate check --repair"):
        result = result or check(ws)
        state = ws.state()
        drop = {p.path: p.table for p in result.problems}
        if "embedding_models" in {p.table for p in result.problems}:  # embeddings of a model no longer registered
            registered = _column(ws, _sound(state, "embedding_models", result), "model_id")
            drop |= {r: "embeddings" for r in state["tables"].get("embeddings", [])
                     if _key(r) not in {file_key(m) for m in registered}}
        records = state.setdefault("files", {})
        recorded = [rel for tc in result.tables.values() for rel in tc.unverified if rel not in drop]
        if not drop and not recorded:
            return result
        quarantine = ws.root / "quarantine" / new_id()
        for rel, table in drop.items():
            src, moved = ws.tables_dir / rel, (ws.tables_dir / rel).exists()
            if moved:
                (quarantine / table).mkdir(parents=True, exist_ok=True)
                os.replace(src, quarantine / table / Path(rel).name)
                result.quarantine = str(quarantine)
            state["tables"][table] = [r for r in state["tables"].get(table, []) if r != rel]
            records.pop(rel, None)
            result.repaired.append(f"dropped {rel} from the live state"
                                   + (f" (moved to {quarantine / table})" if moved else " (it was missing)"))
        for rel in recorded:
            records[rel] = file_record(ws.tables_dir / rel)
        if recorded:
            result.repaired.append(f"recorded the size and SHA-256 of {len(recorded)} unverified file(s)")
        state["generation"] = int(state["generation"]) + 1
        write_text(ws.state_path, json.dumps(state, indent=1))
        ws.refresh_catalog(state)
    return result
