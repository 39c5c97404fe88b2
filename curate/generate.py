"""`curate generate`: sample the policy's response to every preference prompt, batched and resumable.

    from curate.generate import generate, GenerateParams
    generate(Workspace("workspace"), "smollm2-135m", iteration=1, params=GenerateParams(max_new_tokens=64))

Prompts are the distinct prompts of the selected `pref` pairs (a prompt shared by several pairs is
sampled once and its samples go to each pair). They are formatted (HH transcript as is, or the model's
chat template), tokenized, truncated from the left to fit the model's window, and sorted by length into
a fixed *batch plan*: batch b is seeded from (seed, b), so a run gives the same generations whether it
ran in one go or was interrupted and resumed (same backend and machine). Finished batches are committed
in shards; a rerun with the same arguments skips every batch whose pairs already have their samples.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

from .engine import EngineSettings, LocalExecutor, Shard, commit_staged, executor, shard_name
from .engine.staging import Staging
from .errors import CurateError
from .generate_job import GenerateJob
from .provenance import versions
from .sampling import (  # noqa: F401  (names callers import from here: curate.generate is the step's API)
    STOP,
    GenerateParams,
    Prompt,
    TransformersBackend,
    VllmBackend,
    as_transcript,
    batch_plan,
    batch_seed,
    format_prompt,
    hh_messages,
    resolve_backend,
    response_text,
    tokenize_prompts,
    transformers_engine,
    vllm_engine,
    window,
)
from .settings import setting
from .workspace import Workspace, new_id, utcnow

BACKENDS = ("auto", "transformers", "vllm")

# {where} is the user's own SQL predicate (--where); every value curate supplies is a bound parameter
SELECT_SQL = """
select prompt, list(pair_id order by pair_id) as pair_ids
from pairs
where ($role is null or role = $role) and trim(prompt) <> '' and ($split is null or split = $split) and ({where})
group by prompt
"""


@dataclass
class GenerateSettings(GenerateParams):
    """GenerateParams plus how the step runs (not stored per row): `curate generate`'s options and `curate run`'s
    [generate] section."""

    batch_size: int = setting(16, "Prompts per forward batch.")
    limit: int = setting(0, "At most N prompts, a deterministic sample by --seed (0: all).")
    sample_fraction: float = setting(1.0, "A deterministic fraction of the prompts (1: all).")
    dtype: str = setting("auto", "auto (bfloat16 on CUDA and on CPUs with bfloat16 instructions, else float32), "
                         "float32, float16 or bfloat16.")
    backend: str = setting("auto", "auto (vllm when a python with vLLM is found or --vllm-url is given and it "
                           "starts, else transformers), transformers, or vllm (its OpenAI-compatible server, started "
                           "for the step on the policy; see `curate serve`).", choices=BACKENDS)
    vllm_python: str = setting("", "The python that has vLLM (default: $CURATE_VLLM_PYTHON, else this one if it has "
                               "vLLM; `make vllm-env` builds .venv-vllm with vLLM's CPU build).")
    vllm_url: str = setting("", "A running vLLM server to generate with (`curate serve` or `vllm serve`), instead "
                            "of starting one.")
    vllm_args: str = setting("", "Extra arguments for the vLLM server curate starts, e.g. \"--enforce-eager\".")

    def sampling(self) -> GenerateParams:
        """The sampling part alone: what is stored with every generations row."""
        return GenerateParams(**{f.name: getattr(self, f.name) for f in fields(GenerateParams)})


@dataclass
class GenerateResult:
    policy: str
    branch: str
    iteration: int
    backend: str
    prompts: int = 0
    pairs: int = 0
    batches: int = 0
    batches_done_before: int = 0
    generated_prompts: int = 0
    rows: int = 0
    new_tokens: int = 0
    truncated: int = 0
    replaced: int = 0
    recovered: int = 0  # rows committed from shards an interrupted --engine ray run had staged
    seconds: float = 0.0  # the whole step: selection, model load, generation, commits
    generate_seconds: float = 0.0  # inside the backend's generate calls only
    manifest: str = ""


# -- selection --------------------------------------------------------------------------------------
def select_prompts(ws: Workspace, where: str | None, limit: int | None, fraction: float | None,
                   seed: int, split: str | None = None, role: str | None = "pref") -> list[Prompt]:
    """The distinct prompts of the pref pairs (of `split`, matching `where`), a deterministic sample by seed.
    role None: the pairs of either role (held-out prompts to evaluate policies on)."""
    import duckdb

    if limit is not None and limit < 1:
        raise CurateError(f"--limit must be at least 1; got {limit}.")
    if fraction is not None and not 0 < fraction <= 1:
        raise CurateError(f"--sample-fraction must be in (0, 1]; got {fraction}.")
    with ws.connect() as con:
        try:
            rows = con.execute(SELECT_SQL.format(where=where or "true"), {"split": split, "role": role}).fetchall()
        except duckdb.Error as e:
            raise CurateError(f"--where {where!r} failed: {str(e).strip()} (it is a SQL predicate on the pairs "
                              "table, e.g. \"len(prompt) < 2000 and source like '%harmless%'\").") from None
    prompts = [Prompt(ids[0], text, ids) for text, ids in rows]
    # a deterministic sample: order by a hash of (key, seed); the first N, or those under the fraction
    rank = {p.key: hashlib.sha256(f"{seed}:{p.key}".encode()).hexdigest() for p in prompts}
    prompts.sort(key=lambda p: rank[p.key])
    if fraction is not None:
        prompts = [p for p in prompts if int(rank[p.key][:12], 16) / 16**12 < fraction]
    if limit is not None:
        prompts = prompts[:limit]
    return prompts


# -- the step ---------------------------------------------------------------------------------------
def generate(
    ws: Workspace,
    model: str = "smollm2-135m",
    *,
    iteration: int,
    branch: str = "main",
    params: GenerateParams | None = None,
    revision: str | None = None,
    backend: str = GenerateSettings.backend,
    device: str | None = None,
    dtype: str = GenerateSettings.dtype,
    batch_size: int = GenerateSettings.batch_size,
    shard_size: int = 256,
    where: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    sample_fraction: float | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], Callable[[int, int], None]] | None = None,
    loaded=None,
    prompts: list[Prompt] | None = None,
    vllm_python: str | None = None,
    vllm_url: str | None = None,
    vllm_args: str = "",
    status: Callable[[str], None] | None = None,
    engine: EngineSettings | None = None,
) -> GenerateResult:
    """Generate for every selected prompt that has no samples yet in (branch, iteration); see the module doc.

    `loaded` (a (PolicyRef, model, tokenizer) triple) skips resolving and loading, for tests and callers
    that hold the model already. `prompts` replaces the selection (where, split, limit, sample_fraction): the
    held-out prompts `curate eval winrate` compares policies on (their pair_ids may be prompt keys, not pairs).
    vllm_python, vllm_url, vllm_args: where vLLM runs (curate.vllm_server); status(text) hears what the backend
    is doing before the first batch (starting vLLM takes minutes on a CPU). engine: where the batches are sampled
    (curate.engine; default this process): with Ray, actors load the policy with transformers (or ray.data.llm's
    vLLM replicas with --backend vllm, curate.engine.llm) and this driver keeps the plan, the resume and the commits.
    """
    import polars as pl

    from .generations import _existing

    run_on, engine = engine, None  # `engine` below is the sampling backend
    p = params or GenerateParams()
    p.check()
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 1:
        raise CurateError(f"--iteration {iteration!r}: iterations are numbered from 1.")
    if backend not in BACKENDS:
        raise CurateError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}.")
    if batch_size < 1 or shard_size < 1:
        raise CurateError("--batch-size and --shard-size must be at least 1.")
    ws.require()
    t0 = time.perf_counter()
    if prompts is None:
        prompts = select_prompts(ws, where, limit, sample_fraction, p.seed, split)
    else:
        prompts = [Prompt(x.key, x.text, list(x.pair_ids)) for x in prompts]  # tokenizing fills them in
    if not prompts:
        raise CurateError("No pref prompts selected" + (f" by --where {where!r}" if where else "")
                          + ": nothing to generate (ingest pairs first, or widen the selection).")

    with ws.lock("curate generate"):
        if loaded is not None:
            ref, mdl, tok = loaded
        else:
            from .models import resolve_policy

            ref = resolve_policy(model, revision)
        policy = ref.model_id
        existing = _existing(ws, branch, iteration)
        others = sorted(set(existing["policy"].unique().to_list()) - {policy}) if existing.height else []
        if others and not overwrite:  # checked before the model loads
            raise CurateError(_other_policy(branch, iteration, existing.height, others, model, ref))
        res = GenerateResult(policy, branch, iteration, backend, prompts=len(prompts),
                             pairs=sum(len(x.pair_ids) for x in prompts))
        mine = existing.filter(pl.col("policy") == policy) if existing.height else existing
        done_pairs = set() if overwrite else set(mine["pair_id"].unique().to_list()) if mine.height else set()

        def prepare(engine):
            """Row params (checked against an earlier run's), then tokenize with this engine and plan the batches."""
            row_params = {**asdict(p), "backend": engine.name, "dtype": engine.dtype}
            if mine.height and not overwrite:
                old = _stored_params(ws, branch, iteration, policy)
                differ = {k: (old.get(k), v) for k, v in row_params.items() if k in old and old.get(k) != v}
                if differ:
                    raise CurateError(
                        f"branch {branch!r}, iteration {iteration} holds generations of this policy made with other "
                        "settings (" + ", ".join(f"{k}: {a} then, {b} now" for k, (a, b) in differ.items())
                        + "). Rerun with the same arguments to resume, or pass --overwrite to start again.")
            window_ = engine.window()
            max_prompt = None if window_ is None else window_ - p.max_new_tokens
            if max_prompt is not None and max_prompt < 1:
                raise CurateError(f"--max-new-tokens {p.max_new_tokens} does not fit the model's window of {window_} "
                                  "tokens.")
            truncated = tokenize_prompts(prompts, engine.tokenizer, p.chat_template, max_prompt)
            plan = batch_plan(prompts, batch_size)
            todo = [(b, batch) for b, batch in enumerate(plan)
                    if overwrite or not all(pid in done_pairs for x in batch for pid in x.pair_ids)]
            return row_params, truncated, plan, todo

        fallback = None  # why --backend auto did not use vLLM after all
        ex = executor(run_on) if run_on is not None and run_on.kind != "local" else None
        if ex is not None:
            try:  # a Ray this step started goes down with it, whatever fails here
                if loaded is not None:
                    raise CurateError("--engine ray loads the policy in each actor: pass a model path, not a loaded "
                                      "one.")
                if backend == "vllm":
                    from .engine.llm import VllmRayEngine

                    engine = VllmRayEngine(ref, dtype, ex, vllm_args)
                else:  # auto on a cluster: transformers in the actors (vLLM there is asked for with --backend vllm)
                    from .generate_job import DriverTokenizer

                    engine = DriverTokenizer(ref, device or ex.device, dtype)
            except BaseException:
                ex.close()
                raise
        elif loaded is not None:
            engine = TransformersBackend(mdl, tok, str(mdl.device), str(mdl.dtype).replace("torch.", ""))
        else:
            engine = None
            if resolve_backend(backend, vllm_url) == "vllm":
                try:
                    engine = vllm_engine(ref, dtype, p.seed, vllm_python, vllm_url, vllm_args, status)
                except CurateError as e:
                    if backend != "auto":
                        raise
                    fallback = str(e)
            if engine is None:
                engine = transformers_engine(ref, device, dtype)
        try:
            row_params, res.truncated, plan, todo = prepare(engine)
            if todo:
                try:
                    engine.open([batch for _, batch in todo], p)
                except CurateError as e:
                    if backend != "auto" or engine.name != "vllm":
                        raise
                    engine.close()
                    fallback = str(e)
                    engine = transformers_engine(ref, device, dtype)
                    row_params, res.truncated, plan, todo = prepare(engine)
            if fallback and status:
                status(f"--backend auto: vLLM is installed but did not start, so transformers generates; why: "
                       f"{fallback.splitlines()[0]}")
            res.backend, res.batches, res.batches_done_before = engine.name, len(plan), len(plan) - len(todo)
            job = GenerateJob(ref, engine.device, engine.dtype, p, row_params, branch, iteration, policy)
            staging = Staging.of(ws, "generate", shard_name(policy, branch, iteration, row_params, batch_size))
            if overwrite:
                staging.clear()
            runner = engine if engine.name == "vllm-ray" else ex or LocalExecutor()
            engine_info = _run_plan(ws, runner, job, engine, staging, todo, res,
                                    overwrite and existing.height > 0, existing.height, shard_size, progress)
            staging.clear()  # every shard is committed: what is left there (to-do lists, a killed write) is spent
        finally:
            engine.close()
            if ex is not None:
                ex.close()
        res.seconds = time.perf_counter() - t0
        res.manifest = str(ws.write_manifest("generate", new_id(), {
            "step": "generate", "created_at": utcnow(), "branch": branch, "iteration": iteration,
            "policy": {"policy_id": policy, "name": ref.name, "source": ref.source, "revision": ref.revision,
                       "identity": ref.identity},
            "backend": engine.name, "backend_requested": backend, "backend_fallback": fallback,
            "device": engine.device, "dtype": engine.dtype, "params": asdict(p), "server": engine.provenance(),
            "selection": {"split": split, "where": where, "limit": limit, "sample_fraction": sample_fraction},
            "batch_size": batch_size, "shard_size": shard_size, "overwrite": overwrite, "engine": engine_info,
            "counts": {"prompts": res.prompts, "pairs": res.pairs, "batches": res.batches,
                       "batches_done_before": res.batches_done_before, "generated_prompts": res.generated_prompts,
                       "rows": res.rows, "recovered_rows": res.recovered, "new_tokens": res.new_tokens,
                       "truncated_prompts": res.truncated,
                       "replaced": res.replaced},
            "seconds": round(res.seconds, 3), "generate_seconds": round(res.generate_seconds, 3),
            "versions": versions(),
        }))
    return res


def _run_plan(ws: Workspace, ex, job: GenerateJob, engine, staging: Staging, todo, res: GenerateResult,
              replace_first: bool, n_existing: int, shard_size: int, progress) -> dict:
    """Sample every batch still to do, in shards of about shard_size prompts (whole batches), each committed on
    its own: first what an interrupted Ray run staged, then the rest on `ex`. Returns the engine's record."""
    import polars as pl

    from .generations import _drop_iteration

    res.replaced = n_existing if replace_first else 0
    missing = {pid for _, batch in todo for x in batch for pid in x.pair_ids}
    log: list[dict] = []

    def on_done(name: str, rows, info: dict) -> None:
        """Commit the rows of pairs still without samples: a retried or recovered shard adds no key twice."""
        nonlocal replace_first
        keep = rows.filter(pl.Series([pid in missing for pid in rows["pair_id"].to_list()], dtype=pl.Boolean))
        log.append({"shard": name, **{k: v for k, v in info.items() if k != "units"}, "committed": keep.height})
        if not keep.height and not replace_first:
            return
        with ws.transaction("curate generate") as tx:
            if replace_first:
                _drop_iteration(ws, tx, job.branch, job.iteration)
                replace_first = False
            tx.add("generations", keep)
        missing.difference_update(keep["pair_id"].to_list())
        if info.get("recovered"):
            res.recovered += keep.height
            return
        res.rows += keep.height
        res.new_tokens += info.get("tokens", 0)
        res.generated_prompts += info.get("prompts", 0)
        res.generate_seconds += info.get("generate_seconds", 0.0)

    if commit_staged(staging, on_done):
        todo = [(b, batch) for b, batch in todo if any(pid in missing for x in batch for pid in x.pair_ids)]
        res.batches_done_before = res.batches - len(todo)
    shards: list[Shard] = []
    part: list = []
    for i, (b, batch) in enumerate(todo):  # consecutive batches of the plan, cut where a shard reaches shard_size
        part.append((b, batch))
        if sum(len(x) for _, x in part) >= shard_size or i == len(todo) - 1:
            keys = [(j, [x.key for x in bt]) for j, bt in part]
            shards.append(Shard(shard_name(job.policy, job.branch, job.iteration, job.row_params, keys), part,
                                sum(len(x) for _, x in part)))
            part = []
    advance = progress(sum(s.size for s in shards), res.batches_done_before) if progress else None
    ex.run(job, shards, on_done, advance, staging=staging, state=engine)
    if replace_first:  # nothing was generated, yet the old samples go (--overwrite)
        with ws.transaction("curate generate") as tx:
            _drop_iteration(ws, tx, job.branch, job.iteration)
    info = dict(ex.info)
    if ex.kind != "local":
        info["shards"] = log
    return info


def _other_policy(branch: str, iteration: int, n: int, others: list[str], model: str, ref) -> str:
    """Why (branch, iteration) refuses this model's samples, and how the stored policy differs from it."""
    head = f"branch {branch!r}, iteration {iteration} already has {n:,} generations from policy {', '.join(others)}"
    fix = "Generate into another --iteration or --branch, or pass --overwrite to replace them."
    named = [o for o in others if o in (model, ref.name)]
    if named:  # `generations import --policy NAME` stored the label NAME; a model resolves to name + identity hash
        return (f"{head}: a label given to `curate generations import --policy {named[0]}`. --model {model} resolves "
                f"to the model {ref.model_id} (its name and the hashes of its weights, config and tokenizer), and one "
                f"iteration holds one policy's samples. {fix} Importing with --policy {ref.model_id} records the same "
                "identity.")
    return f"{head}, not {ref.model_id}. {fix}"


def _stored_params(ws: Workspace, branch: str, iteration: int, policy: str) -> dict:
    """The sampling settings an earlier run of this policy stored (without the per-row fields)."""
    with ws.connect() as con:
        row = con.execute("select params from generations where branch = $b and iteration = $i and policy = $p "
                          "limit 1", {"b": branch, "i": iteration, "p": policy}).fetchall()
    if not row:
        return {}
    try:
        old = json.loads(row[0][0])
    except (TypeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in old.items() if k not in ("prompt_truncated", "prompt_tokens")}
