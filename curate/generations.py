"""Import policy generations (vLLM, OpenRLHF, TRL outputs...) into the `generations` table.

    from curate.workspace import Workspace
    from curate.generations import import_generations
    res = import_generations(Workspace("workspace"), "gens.jsonl", iteration=1, policy="smollm2-135m")

One input row holds one generation (or a list of them) for one prompt. Rows are matched to pairs by
`pair_id`, or by the prompt text (equal to `pairs.prompt`; a prompt shared by several pairs gives the
generation to each of them). Every row that is not imported goes to `rejects` with a reason code
(issue 3): unlike ingest, unmatched rows do not stop the import, because policy outputs often cover a
subset of the pairs; a file in which no row matches stops it, since that is almost always the wrong
workspace or the wrong key.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from . import rejects as rejects_
from .errors import CurateError
from .ingest import sources
from .provenance import versions
from .rejects import raw_text, reject
from .workspace import Workspace, new_id, utcnow

MATCH_MODES = ("auto", "pair_id", "prompt")
TEXT_FIELDS = ("generation", "text")  # tried in this order unless text_field is given
# per-row fields read as sampling parameters (vLLM SamplingParams / HF generate names); a row may also
# carry them as one object in `params` or `sampling_params`
PARAM_FIELDS = ("temperature", "top_p", "top_k", "min_p", "max_tokens", "max_new_tokens", "repetition_penalty",
                "presence_penalty", "frequency_penalty", "seed", "do_sample", "num_beams")
PARAM_OBJECTS = ("params", "sampling_params")
_PARAM_KEYS = frozenset(PARAM_FIELDS + PARAM_OBJECTS)

NO_MATCH_FIX = (
    "Check that --workspace is the workspace these prompts were ingested into (`curate info` shows its "
    "sources), and that the rows are matched on the right key: --match pair_id for rows carrying curate's "
    "pair_id, --match prompt for rows carrying the prompt text exactly as in pairs.prompt "
    "(the transcript up to and including the final '\\n\\nAssistant:'). Nothing was written."
)
POLICY_FIX = (
    "Import it under another --iteration or --branch, or pass --overwrite to replace that iteration's "
    "generations."
)

LIST_SQL = """
select branch, iteration, policy,
       count(*) as generations,
       count(distinct pair_id) as pairs,
       max(sample) + 1 as max_samples
from generations
group by branch, iteration, policy
order by branch, iteration, policy
"""


@dataclass
class ImportResult:
    import_id: str
    source: str
    branch: str
    iteration: int
    policy: str
    match: str = ""  # the key used: pair_id or prompt
    read: int = 0  # input rows (blank lines are not rows)
    imported: int = 0  # new generations rows
    pairs: int = 0  # distinct pairs among them
    already_present: int = 0  # identical rows an earlier import stored (re-import is idempotent)
    replaced: int = 0  # rows of (branch, iteration) removed by overwrite
    replaced_policies: list[str] = field(default_factory=list)
    shared_prompts: int = 0  # matched prompts that several pairs share
    shared_rows: int = 0  # generations given to several pairs through such a prompt
    shared_extra: int = 0  # generations rows this added beyond one per generation
    rejected: Counter = field(default_factory=Counter)
    sha256: str | None = None
    manifest: str = ""

    @property
    def unmatched(self) -> int:
        return self.rejected.get("unmatched_generation", 0)


def import_generations(
    ws: Workspace,
    path: str | Path,
    *,
    iteration: int,
    policy: str,
    branch: str = "main",
    match: str = "auto",
    text_field: str | None = None,
    params: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Read one JSONL(.gz) or Parquet file of generations and store them for (branch, iteration)."""
    if match not in MATCH_MODES:
        raise CurateError(f"--match {match!r}: expected one of {', '.join(MATCH_MODES)}.")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
        raise CurateError(f"--iteration {iteration!r}: iterations are numbered from 1.")
    if not policy or not policy.strip():
        raise CurateError("--policy: give the policy's name or checkpoint id (e.g. smollm2-135m).")
    if not branch or not branch.strip():
        raise CurateError("--branch: give a branch name (plain commands use 'main').")
    src = _source(path)
    ws.require()
    params = dict(params or {})
    res = ImportResult(import_id=new_id(), source=src.name, branch=branch, iteration=iteration, policy=policy)

    def write_manifest() -> str:
        manifest = {
            "step": "generations import",
            "import_id": res.import_id,
            "created_at": utcnow(),
            "input": {"source": src.name, "sha256": src.sha256, "size": src.size},
            "options": {
                "branch": branch, "iteration": iteration, "policy": policy, "match": match,
                "match_used": res.match, "text_field": text_field, "params": params, "overwrite": overwrite,
            },
            "counts": {
                "read": res.read,
                "imported": res.imported,
                "pairs": res.pairs,
                "already_present": res.already_present,
                "replaced": res.replaced,
                "replaced_policies": res.replaced_policies,
                "shared_prompts": res.shared_prompts,
                "shared_rows": res.shared_rows,
                "shared_extra": res.shared_extra,
                "rejected": dict(res.rejected),
            },
            "versions": versions(("polars", "duckdb", "pyarrow", "orjson")),
        }
        return str(ws.write_manifest("generations", res.import_id, manifest))

    with ws.transaction("curate generations import") as tx:
        existing = _existing(ws, branch, iteration)
        other = sorted(set(existing["policy"].unique().to_list()) - {policy}) if existing.height else []
        if other and not overwrite:
            raise CurateError(
                f"branch {branch!r}, iteration {iteration} already has {existing.height:,} generations from "
                f"policy {', '.join(other)}, not {policy}. {POLICY_FIX}"
            )
        rows, rejects, res.match = _read(src, match, text_field, ws, res)
        res.sha256 = src.sha256
        if res.read == 0:  # an empty file lands nothing, like an empty ingest: recorded, and the CLI warns
            res.manifest = write_manifest()
            return res
        if overwrite and existing.height:
            res.replaced = existing.height
            res.replaced_policies = sorted(existing["policy"].unique().to_list())
            _drop_iteration(ws, tx, branch, iteration)
            existing = existing.clear()
        keys = _pair_keys(ws, res.match)
        if keys.height == 0:
            raise CurateError(f"workspace {ws.root} has no pairs to attach generations to. "
                              "Ingest the preference data first: curate ingest FILE.")

        # unmatched keys -> rejects (one per input row), the rest fan out to their pairs
        unmatched = rows.join(keys, on="key", how="anti").unique("line", keep="first", maintain_order=True)
        rejects += _row_rejects(unmatched, "unmatched_generation", _unmatched_detail(res.match))
        rows = rows.join(keys.select("key").unique(), on="key", how="semi")
        if rows.height == 0:
            raise CurateError(_no_match_message(src.name, res, rejects, ws, keys))
        gens = rows.join(keys, on="key", how="inner")  # (key, sample) x pairs with that key
        fan = keys.group_by("key").len().filter(pl.col("len") > 1)
        shared = rows.join(fan, on="key", how="semi")
        res.shared_prompts = shared["key"].n_unique() if shared.height else 0
        res.shared_rows = shared.height
        res.shared_extra = gens.height - rows.height

        # against what an earlier import of this (branch, iteration) stored: same text -> already there,
        # different text -> a conflict the user must resolve (never a silent overwrite)
        if existing.height:
            gens = gens.join(existing.select("pair_id", "sample", pl.col("text").alias("_old")),
                             on=["pair_id", "sample"], how="left")
            same = gens.filter(pl.col("_old") == pl.col("text"))
            conflict = gens.filter(pl.col("_old").is_not_null() & (pl.col("_old") != pl.col("text")))
            res.already_present = same.height
            rejects += _row_rejects(
                conflict.unique("line", keep="first", maintain_order=True), "conflicting_generation",
                f"(branch {branch}, iteration {iteration}) already holds a different text for this pair and "
                "sample; give the rows distinct `sample` values or pass --overwrite",
            )
            gens = gens.filter(pl.col("_old").is_null()).drop("_old")

        out = gens.select(
            branch=pl.lit(branch),
            iteration=pl.lit(iteration, dtype=pl.Int32),
            pair_id="pair_id",
            sample=pl.col("sample").cast(pl.Int32),
            text="text",
            policy=pl.lit(policy),
            params=_params_column(gens, params),
        ).sort("pair_id", "sample")
        res.imported = out.height
        res.pairs = out["pair_id"].n_unique()
        tx.add("generations", out)

        rejects = _fill_raw(src, rejects)
        res.rejected.update(r["reason"] for r in rejects)
        new_rejects = rejects_.new_only(ws, rejects)
        if new_rejects:
            tx.add("rejects", rejects_.frame(new_rejects, res.import_id))

        res.manifest = write_manifest()
    return res


def generation_counts(ws: Workspace) -> list[dict]:
    """Generations per (branch, iteration, policy): rows, distinct pairs, most samples per pair."""
    with ws.require().connect() as con:
        cur = con.execute(LIST_SQL)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


# -- reading ------------------------------------------------------------------------------------
_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def _source(path: str | Path) -> sources.Source:
    p = Path(path)
    if not p.is_file():
        raise CurateError(f"{path}: no such file.")
    if not p.name.endswith(_SUFFIXES):
        raise CurateError(f"{path}: unsupported file type; expected one of {', '.join(_SUFFIXES)} "
                          "with one generation per row.")
    return sources.Source(str(path), path=p)


def _detect_match(chunk: list, src_name: str) -> str:
    from .ingest import not_an_object

    not_an_object(src_name, chunk)
    for _, obj, _ in chunk:
        if isinstance(obj, dict):
            if "pair_id" in obj:
                return "pair_id"
            if "prompt" in obj:
                return "prompt"
    first = next((obj for _, obj, _ in chunk if isinstance(obj, dict)), None)
    keys = sorted(first) if first else []
    raise CurateError(
        f"{src_name}: cannot tell how to match the rows to pairs: no row in the first {len(chunk):,} has a "
        f"pair_id or a prompt field (first row's keys: {keys}). Rename the key field to pair_id or prompt."
    )


def _read(src: sources.Source, match: str, text_field: str | None, ws: Workspace, res: ImportResult):
    """Parse the file into one row per generation: line, key, sample (may be null), text, row params."""
    # one entry per generation (a row with a list of n texts gives n entries, elem 0..n-1)
    lines: list[int] = []
    elems: list[int] = []
    sizes: list[int] = []
    keys: list[str] = []
    samples: list[int | None] = []
    texts: list[str] = []
    row_params: list[str | None] = []
    rejects: list[dict] = []
    key_field = None if match == "auto" else match
    tfields = (text_field,) if text_field else TEXT_FIELDS
    for chunk in sources.read(src):
        if key_field is None:
            key_field = _detect_match(chunk, src.name)
        res.read += len(chunk)
        for line, obj, raw in chunk:
            if isinstance(obj, sources.InvalidJson):
                rejects.append(reject(src.name, line, "invalid_json", f"invalid JSON ({obj.error})", raw))
                continue
            if not isinstance(obj, dict):
                rejects.append(reject(src.name, line, "not_an_object", f"a row must be an object, found "
                                       f"{type(obj).__name__}", raw, obj))
                continue
            key = obj.get(key_field)
            if key is None:
                rejects.append(reject(src.name, line, f"missing_field:{key_field}", f"the row has no {key_field!r} "
                                       f"field to match it to a pair (keys: {sorted(obj)})", raw, obj))
                continue
            if not isinstance(key, str):
                rejects.append(reject(src.name, line, f"non_str_field:{key_field}",
                                       f"{key_field!r} is a {type(key).__name__}, not a string", raw, obj))
                continue
            tname = next((f for f in tfields if obj.get(f) is not None), None)
            if tname is None:
                name = tfields[0]
                rejects.append(reject(src.name, line, f"missing_field:{name}",
                                       f"the row has no {' or '.join(map(repr, tfields))} field "
                                       f"(keys: {sorted(obj)}); name the field with --text-field", raw, obj))
                continue
            text = obj[tname]
            if type(text) is str:  # the common case
                rp = _row_params(obj) if not obj.keys().isdisjoint(_PARAM_KEYS) else None
                lines.append(line), elems.append(0), sizes.append(1), keys.append(key), texts.append(text)
                samples.append(obj.get("sample")), row_params.append(rp)
                continue
            if not (isinstance(text, list) and text and all(isinstance(t, str) for t in text)):
                rejects.append(reject(src.name, line, f"non_str_field:{tname}", f"{tname!r} must be a string or a "
                                       f"non-empty list of strings, found {type(text).__name__}", raw, obj))
                continue
            sample = obj.get("sample")
            if sample is not None and len(text) > 1:
                rejects.append(reject(src.name, line, "invalid_field:sample",
                                       f"a row with a list of {len(text)} generations numbers them itself; "
                                       "drop its sample field", raw, obj))
                continue
            rp = _row_params(obj) if not obj.keys().isdisjoint(_PARAM_KEYS) else None
            for i, t in enumerate(text):
                lines.append(line), elems.append(i), sizes.append(len(text)), keys.append(key), texts.append(t)
                samples.append(sample), row_params.append(rp)

    bad_sample = [i for i, v in enumerate(samples) if v is not None and (type(v) is not int or v < 0)]
    for i in reversed(bad_sample):  # rare: checked here to keep the per-row loop lean
        rejects.append({"source": src.name, "line": lines[i], "reason": "invalid_field:sample",
                        "detail": f"sample must be a non-negative integer, found {samples[i]!r}", "raw": None})
        for col in (lines, elems, sizes, keys, samples, texts, row_params):
            del col[i]
    rows = pl.DataFrame(
        {"line": lines, "elem": elems, "n": sizes, "key": keys, "sample": samples, "text": texts,
         "row_params": row_params},
        schema={"line": pl.Int64, "elem": pl.Int64, "n": pl.Int64, "key": pl.String, "sample": pl.Int64,
                "text": pl.String, "row_params": pl.String},
    )
    empty = rows.filter(pl.col("text").str.strip_chars() == "")
    for line, elem, n in empty.select("line", "elem", "n").iter_rows():
        detail = "the generation is empty or whitespace" if n == 1 else f"generation {elem + 1} of {n} is empty or whitespace"
        rejects.append({"source": src.name, "line": line, "reason": "empty_text", "detail": detail, "raw": None})
    rows = rows.filter(pl.col("text").str.strip_chars() != "")
    # samples not given are numbered 0, 1, 2... per key in file order
    auto = pl.col("sample").is_null()
    rows = rows.sort("line", "elem").with_columns(
        sample=pl.when(auto).then(auto.cast(pl.Int64).cum_sum().over("key") - 1).otherwise(pl.col("sample"))
    )
    dup = rows.filter(~pl.struct("key", "sample").is_first_distinct())
    rejects += _row_rejects(dup.unique("line", keep="first", maintain_order=True), "duplicate_generation",
                            "an earlier row of the file has the same key and sample; the first one is imported")
    rows = rows.filter(pl.struct("key", "sample").is_first_distinct()).drop("elem", "n")
    return rows, rejects, key_field


def _row_params(obj: dict) -> str | None:
    found = {k: obj[k] for k in PARAM_FIELDS if obj.get(k) is not None}
    for name in PARAM_OBJECTS:
        if isinstance(obj.get(name), dict):
            found.update(obj[name])
    return orjson.dumps(found, option=orjson.OPT_SORT_KEYS, default=str).decode() if found else None


def _params_column(gens: pl.DataFrame, params: dict[str, Any]) -> pl.Expr:
    """JSON of the sampling parameters: -p values, overridden by a row's own fields."""
    base = json.dumps(params, sort_keys=True, default=str)
    distinct = [rp for rp in gens["row_params"].unique().to_list() if rp is not None]
    if not distinct:
        return pl.lit(base)
    merged = [json.dumps({**params, **json.loads(rp)}, sort_keys=True, default=str) for rp in distinct]
    return pl.col("row_params").replace_strict(distinct, merged, default=base, return_dtype=pl.String)


# -- matching -----------------------------------------------------------------------------------
def _pair_keys(ws: Workspace, match: str) -> pl.DataFrame:
    """(key, pair_id) for every pair: key is the pair_id or the prompt."""
    files = ws.files("pairs")
    if not files:
        return pl.DataFrame(schema={"key": pl.String, "pair_id": pl.String})
    col = "pair_id" if match == "pair_id" else "prompt"
    return (
        pl.scan_parquet(files)
        .select(key=pl.col(col), pair_id=pl.col("pair_id"))
        .unique(maintain_order=True)
        .collect()
    )


def _unmatched_detail(match: str) -> str:
    if match == "pair_id":
        return "no pair in the workspace has this pair_id"
    return "no pair in the workspace has this prompt (it must equal pairs.prompt exactly)"


def _no_match_message(name: str, res: ImportResult, rejects: list[dict], ws: Workspace, keys: pl.DataFrame) -> str:
    counts = Counter(r["reason"] for r in rejects)
    why = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    n_pairs = keys["pair_id"].n_unique()
    if counts.get("unmatched_generation"):
        head = (f"{name}: none of the {res.read:,} rows matches a pair of workspace {ws.root} "
                f"(matched by {res.match} against {n_pairs:,} pairs; {why}).")
        return f"{head}\n{NO_MATCH_FIX}"
    return (f"{name}: no generation could be imported from the {res.read:,} rows ({why}). Fix the rows "
            "(see the reasons), or name the text field with --text-field. Nothing was written.")


# -- existing rows --------------------------------------------------------------------------------
def _existing(ws: Workspace, branch: str, iteration: int) -> pl.DataFrame:
    files = ws.files("generations")
    schema = {"pair_id": pl.String, "sample": pl.Int32, "text": pl.String, "policy": pl.String}
    if not files:
        return pl.DataFrame(schema=schema)
    return (
        pl.scan_parquet(files)
        .filter((pl.col("branch") == branch) & (pl.col("iteration") == iteration))
        .select(list(schema))
        .collect()
    )


def _drop_iteration(ws: Workspace, tx, branch: str, iteration: int) -> None:
    """Remove every row of (branch, iteration): files holding only such rows are dropped, files that also
    hold other rows are rewritten without them (another writer may have mixed iterations in one file)."""
    this = (pl.col("branch") == branch) & (pl.col("iteration") == iteration)
    for f in ws.files("generations"):
        counts = pl.scan_parquet(f).select(hit=this.sum(), n=pl.len()).collect().row(0, named=True)
        if not counts["hit"]:
            continue
        tx.remove("generations", [f])
        if counts["hit"] < counts["n"]:
            tx.add("generations", pl.read_parquet(f).filter(~this))


# -- rejects --------------------------------------------------------------------------------------


def _row_rejects(rows: pl.DataFrame, reason: str, detail: str) -> list[dict]:
    """Rejects for rows found after parsing; their raw text is filled in by _fill_raw."""
    return [{"source": None, "line": line, "reason": reason, "detail": detail, "raw": None}
            for line in rows["line"].to_list()]


def _fill_raw(src: sources.Source, rejects: list[dict]) -> list[dict]:
    """Give rejects found after parsing their source and raw row text (a second read, only when needed)."""
    need = {r["line"] for r in rejects if r["raw"] is None}
    if need:
        raws: dict[int, str | None] = {}
        again = sources.Source(src.name, path=src.path)
        for chunk in sources.read(again):
            for line, obj, raw in chunk:
                if line in need:
                    raws[line] = raw_text(raw, None if isinstance(obj, sources.InvalidJson) else obj)
        for r in rejects:
            if r["raw"] is None:
                r["raw"] = raws.get(r["line"])
    for r in rejects:
        r["source"] = src.name
    return sorted(rejects, key=lambda r: (r["line"], r["reason"]))
