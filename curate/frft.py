"""`curate run`: FRFT(alpha) end to end from one TOML config, recorded step by step in the `runs` table.

The plan (Steps below, in order):

    ingest                  the config's sources -> pairs (sft and pref halves)
    sft                     fine-tune the policy on the sft half (or take a ready checkpoint)
    for k in 1..alpha:
      generate  (k = 1)     sample the SFT policy once, on the run's shared branch: every branch starts from it
      generate  (k > 1)     each branch samples its own PPO policy of iteration k - 1
      embed                 one step for all branches: only texts without a vector cost anything
      per branch (one per strategy, as the paper's RM1..RM4):
        score, filter       similarities of the generations this branch sampled (the shared ones at k = 1)
        rm                  fine-tune the reward model on the subset (from the SFT model at k = 1, else the
                            branch's reward model of k - 1)
        ppo                 PPO from the SFT policy (k = 1) or the branch's PPO policy of k - 1, KL against SFT
    report                  intersection of each strategy's subsets across iterations, CDF plot, HTML report

Every step writes a `runs` row (status running) before it starts and replaces it with the finished row (done,
with its outputs and seconds) when it ends, so `curate runs` and SQL show the lineage: subset -> RM -> policy ->
next generations. `--resume` skips the steps that are done (and says so); a step killed half-way is rerun,
and the steps underneath resume their own partial work (generation batches, embedding shards, PPO checkpoints).
Branches are named after the run: iteration 1's data (one SFT policy for all) lives on branch `<run>`, iteration
k > 1 on branch `<run>/<strategy>`, so several runs share a workspace (and its embeddings) without colliding, and
the plain commands' branch `main` is left alone.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CurateError
from .runconfig import RunConfig
from .workspace import Workspace

# The config sections each step reads. A resumed run whose config changed reruns the done steps that read a
# changed key, and after a step reruns, the done steps that depend on it (the rest of its branch; everything
# after a shared step). Changing what defines the run's data is refused instead.
STEP_READS = {"ingest": ("data",), "sft": ("sft",), "generate": ("generate",), "embed": ("embed",),
              "score": ("embed",), "filter": ("filter",), "rm": ("rm",), "ppo": ("ppo",), "report": ()}
FIXED = ("data", "run.seed", "run.name", "run.workspace", "run.checkpoints")
CONTENT_ADDRESSED = ("embed", "report")  # rerunning these changes no other step's inputs


def config_diff(old: dict, new: dict) -> list[str]:
    """The "section.key" names whose values differ between two RunConfig.to_dict() results."""
    keys = {f"{sec}.{k}" for d in (old, new) for sec, vals in d.items() for k in vals}
    return sorted(k for k in keys if old.get(k.split(".")[0], {}).get(k.split(".", 1)[1], None)
                  != new.get(k.split(".")[0], {}).get(k.split(".", 1)[1], None))


def _reads(step: str, key: str) -> bool:
    return any(key == sec or key.startswith(sec + ".") for sec in STEP_READS.get(step, ()))


@dataclass
class Step:
    step: str
    branch: str
    iteration: int
    inputs: Callable[[], dict]  # what the step starts from, evaluated when it starts (after the steps before it)
    fn: Callable[[], dict]
    # outputs that must still exist for a finished step to count as done (checkpoint folders)
    artifacts: Callable[[dict], list[str]] = field(default=lambda outputs: [])

    @property
    def key(self) -> str:
        return f"{self.step}/{self.branch}/it{self.iteration}"


# -- the runs table ------------------------------------------------------------------------------------
def runs_rows(ws: Workspace, run_id: str | None = None) -> list[dict]:
    """The rows of `runs` (of one run), oldest first."""
    if not ws.exists:
        return []
    con = ws.connect()
    try:
        cur = con.execute(
            "select * replace (strftime(started_at, '%Y-%m-%dT%H:%M:%SZ') as started_at, "
            "strftime(finished_at, '%Y-%m-%dT%H:%M:%SZ') as finished_at) from runs "
            "where ($run_id is null or run_id = $run_id) order by runs.started_at, runs.finished_at nulls last",
            {"run_id": run_id})
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()


# the keys that tell where a step's inputs came from and what it made (curate runs, the HTML report)
LINEAGE_IN = ("sources", "model", "checkpoint", "policy", "generations", "similarities", "subset", "base", "reward")
LINEAGE_OUT = ("added", "checkpoint", "policy", "rows", "embedded", "pairs", "subset", "eval_accuracy",
               "reward_last", "html")


def lineage_text(d: dict, out: bool = False, sep: str = "\n") -> str:
    parts = []
    for k in LINEAGE_OUT if out else LINEAGE_IN:
        if k in d and d[k] not in (None, ""):
            v = f"{d[k]:.3f}" if isinstance(d[k], float) else d[k]
            parts.append(f"{k}={v}")
    return sep.join(parts)


def _row(run_id: str, s: Step, inputs: dict, status: str, config_sha: str, started, finished,
         outputs: dict | None = None, seconds: float | None = None, error: str | None = None) -> dict:
    return {"run_id": run_id, "step": s.step, "branch": s.branch, "iteration": s.iteration, "status": status,
            "inputs": json.dumps(inputs, default=str), "outputs": json.dumps(outputs or {}, default=str),
            "config_sha256": config_sha, "started_at": started, "finished_at": finished, "seconds": seconds,
            "error": error}


def _now():
    """UTC now, naive, to the microsecond: steps that start within one second still sort in order."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(tzinfo=None)


def _ts(value):
    from datetime import datetime

    if value is None or isinstance(value, datetime):
        return value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")


def _write_row(ws: Workspace, row: dict, replace: Path | None) -> Path:
    """Commit one `runs` row as its own file, replacing the file of the same attempt (running -> done)."""
    import polars as pl

    row = {**row, "started_at": _ts(row["started_at"]), "finished_at": _ts(row["finished_at"])}
    df = pl.DataFrame([row], schema_overrides={"seconds": pl.Float64, "error": pl.String, "finished_at": pl.Datetime})
    with ws.transaction("curate run") as tx:
        if replace is not None:
            tx.remove("runs", [replace])
        return tx.add("runs", df, key=f"{row['run_id']}-{row['step']}-{row['branch']}-it{row['iteration']}")


# -- the runner --------------------------------------------------------------------------------------
class Runner:
    def __init__(self, cfg: RunConfig, *, resume: bool = False, quiet: bool = False,
                 echo: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.ws = Workspace(cfg.run.workspace)
        self.run_id = cfg.run.name
        self.shared = cfg.run.name  # the branch of shared work: ingest, SFT, iteration 1's samples, embeddings
        self.resume = resume
        self.quiet = quiet
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr))
        self.ckpt = cfg.checkpoints.resolve()  # absolute: a resumed run finds them from any folder
        self.done: dict[str, dict] = {}  # step key -> outputs of its finished row
        self.current: str | None = None  # the step running now
        self.changed: list[str] = []  # config keys changed since the run's last attempt
        self.dirty_shared = False  # a shared step ran again: every later step must
        self.dirty_branches: set[str] = set()  # branches where a step ran again: their later steps must
        self.redo = False  # the step running now replaces a finished one
        self.skipped: list[str] = []
        self.ran: list[str] = []

    # paths of the checkpoints, fixed by the config so a resumed run finds them
    def sft_path(self) -> Path:
        done = self.done.get(f"sft/{self.shared}/it0")
        if done:  # the folder the sft step trained or resolved (a Hub id's snapshot)
            return Path(done["checkpoint"])
        if self.cfg.sft.checkpoint:
            given = Path(self.cfg.sft.checkpoint)
            return given.resolve() if given.exists() else given  # a folder, or a Hub id resolved by the step
        return self.ckpt / "sft"

    def rm_path(self, strategy: str, k: int) -> Path:
        return self.ckpt / strategy / f"rm-it{k}"

    def ppo_path(self, strategy: str, k: int) -> Path:
        return self.ckpt / strategy / f"ppo-it{k}"

    def subset_name(self, strategy: str, k: int) -> str:
        return f"{self.run_id}-{strategy}-it{k}"

    def branch(self, strategy: str) -> str:
        """A strategy's branch: its own reward models and actor (the paper's RM1..RM4)."""
        return f"{self.run_id}/{strategy}"

    def data_branch(self, strategy: str, k: int) -> str:
        """Where iteration k's generations and scores of a strategy live: the shared branch at k = 1."""
        return self.shared if k == 1 else self.branch(strategy)

    @property
    def report_key(self) -> str:
        return f"report/{self.shared}/it{self.cfg.run.alpha}"

    def rm_base(self, strategy: str, k: int) -> Path:
        """The reward model of iteration k starts from the SFT model (k = 1) or the branch's RM of k - 1."""
        return self.sft_path() if k == 1 else self.rm_path(strategy, k - 1)

    def policy_for(self, strategy: str | None, k: int) -> Path:
        """The policy that samples (and that PPO starts from) in iteration k of a strategy's branch."""
        return self.sft_path() if k == 1 else self.ppo_path(strategy, k - 1)

    # -- plan ---------------------------------------------------------------------------------------
    def plan(self) -> list[Step]:
        """The steps in order. Inputs are functions: they are read when the step starts, so they name what
        the steps before it actually made (a Hub id's local folder, for instance)."""
        cfg, steps, shared = self.cfg, [], self.shared
        checkpoint = {"artifacts": lambda o: [o["checkpoint"]]}  # redo a finished step whose model is gone

        def add(step: str, branch: str, k: int, inputs: Callable[[], dict], fn: Callable[[], dict], **kw) -> None:
            steps.append(Step(step, branch, k, inputs, fn, **kw))

        add("ingest", shared, 0, lambda: {"sources": cfg.data.sources, "sft_fraction": cfg.data.sft_fraction},
            self._ingest)
        if cfg.sft.checkpoint:
            add("sft", shared, 0, lambda: {"checkpoint": cfg.sft.checkpoint, "trained": False}, self._sft_given,
                **checkpoint)
        else:
            add("sft", shared, 0, lambda: {"model": cfg.sft.model, "pairs": f"role = 'sft' and split = "
                                           f"'{cfg.data.split}'"}, self._sft, **checkpoint)
        for k in range(1, cfg.run.alpha + 1):
            if k == 1:  # one SFT policy for every branch: sampled once
                add("generate", shared, 1, lambda: {"policy": str(self.sft_path())}, lambda: self._generate(None, 1))
            else:
                for s in cfg.run.strategies:
                    add("generate", self.branch(s), k, lambda s=s, k=k: {"policy": str(self.policy_for(s, k))},
                        lambda s=s, k=k: self._generate(s, k))
            add("embed", shared, k, lambda: {"model": cfg.embed.model}, self._embed)
            if k == 1:
                add("score", shared, 1, lambda: {"generations": f"{shared}/it1"}, lambda: self._score(shared, 1))
            for s in cfg.run.strategies:
                b = self.branch(s)
                if k > 1:
                    add("score", b, k, lambda b=b, k=k: {"generations": f"{b}/it{k}"},
                        lambda b=b, k=k: self._score(b, k))
                add("filter", b, k, lambda s=s, k=k: {"strategy": s, "similarities": f"{self.data_branch(s, k)}/it{k}",
                                                      "eps": cfg.filter.eps, "size": cfg.filter.size},
                    lambda s=s, k=k: self._filter(s, k))
                add("rm", b, k, lambda s=s, k=k: {"base": str(self.rm_base(s, k)), "subset": self.subset_name(s, k)},
                    lambda s=s, k=k: self._rm(s, k), **checkpoint)
                add("ppo", b, k, lambda s=s, k=k: {"policy": str(self.policy_for(s, k)),
                                                   "reward": str(self.rm_path(s, k)),
                                                   "reference": str(self.sft_path())},
                    lambda s=s, k=k: self._ppo(s, k), **checkpoint)
        add("report", shared, cfg.run.alpha, lambda: {"strategies": cfg.run.strategies}, self._report)
        return steps

    # -- execute ------------------------------------------------------------------------------------
    def check_existing(self) -> list[dict]:
        rows = runs_rows(self.ws, self.run_id)
        if not rows:
            if self.resume:
                self.echo(f"run {self.run_id!r}: nothing to resume in {self.ws.root}; starting it")
            return rows
        if not self.resume:
            n = sum(r["status"] == "done" for r in rows)
            raise CurateError(f"Run {self.run_id!r} already exists in {self.ws.root} ({n} steps done): add --resume "
                              "to continue it, or set another [run] name to start a new one.")
        latest = rows[-1]["config_sha256"]
        if latest != self.cfg.sha256:
            old = self._stored_config(latest)
            if old is None:
                raise CurateError(f"Run {self.run_id!r} was last run with another config (sha256 {latest[:12]}), "
                                  f"which is not recorded in {self.ws.manifests_dir}: restore {self.cfg.path}, or "
                                  "set another [run] name to start a new run.")
            self.changed = config_diff(old, self.cfg.to_dict())
            fixed = [k for k in self.changed if any(k == f or k.startswith(f + ".") for f in FIXED)]
            if fixed:
                raise CurateError(f"Run {self.run_id!r}: {', '.join(fixed)} changed since it started; they define "
                                  "the run's data, so it cannot continue with them. Restore them, or set another "
                                  "[run] name to start a new run (the workspace keeps its pairs and embeddings).")
            self.echo(f"config changed since the last attempt ({', '.join(self.changed)}): the finished steps that "
                      "read it run again, and the steps that depend on them")
        return rows

    def _config_manifest(self, sha: str) -> Path:
        return self.ws.manifests_dir / f"run-config-{self.run_id}-{sha[:16]}.json"

    def _stored_config(self, sha: str) -> dict | None:
        path = self._config_manifest(sha)
        return json.loads(path.read_text(encoding="utf-8"))["config"] if path.is_file() else None

    def _affected(self, s: Step) -> str | None:
        """Why a finished step must run again, or None."""
        keys = [k for k in self.changed if _reads(s.step, k)]
        if keys:
            return f"config changed: {', '.join(keys)}"
        if self.dirty_shared:
            return "a shared step before it ran again"
        if s.branch in self.dirty_branches:
            return "a step before it in its branch ran again"
        if s.branch == self.shared and self.dirty_branches:  # embed, report: they read every branch
            return "a branch before it ran again"
        return None

    def execute(self) -> list[Step]:
        self.ws.init()
        with self.ws.lock("curate run"):
            rows = self.check_existing()
            self.ws.write_manifest("run-config", f"{self.run_id}-{self.cfg.sha256[:16]}",
                                   {"run_id": self.run_id, "sha256": self.cfg.sha256, "path": self.cfg.path,
                                    "config": self.cfg.to_dict()})
            for r in rows:
                if r["status"] == "done":
                    self.done[f"{r['step']}/{r['branch']}/it{r['iteration']}"] = json.loads(r["outputs"] or "{}")
            self._mark_interrupted(rows)
            steps = self.plan()
            for s in steps:
                self._run_step(s)
        return steps

    def _mark_interrupted(self, rows: list[dict]) -> None:
        """Rows left 'running' by a killed process become 'interrupted'; their steps run again."""
        if not any(r["status"] == "running" for r in rows):
            return
        import polars as pl

        for f in self.ws.files("runs"):
            for row in pl.read_parquet(f).to_dicts():
                if row["run_id"] == self.run_id and row["status"] == "running":
                    _write_row(self.ws, {**row, "status": "interrupted",
                                         "error": "the process ended during this step (killed?)"}, f)

    def _run_step(self, s: Step) -> None:
        prev = self.done.get(s.key)
        self.redo = prev is not None
        if prev is not None:
            gone = [a for a in s.artifacts(prev) if not Path(a).exists()]
            why = f"{gone[0]} is gone" if gone else self._affected(s)
            if why is None:
                self.skipped.append(s.key)
                self.echo(f"skip  {s.key:<30} done earlier")
                return
            self.echo(f"redo  {s.key:<30} done earlier, but {why}")
        started = _now()
        self.current = s.key
        inputs = s.inputs()
        self.echo(f"run   {s.key:<30} {_short(inputs)}")
        path = _write_row(self.ws, _row(self.run_id, s, inputs, "running", self.cfg.sha256, started, None), None)
        t0 = time.perf_counter()
        try:
            outputs = s.fn()
        except BaseException as e:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            _write_row(self.ws, _row(self.run_id, s, inputs, status, self.cfg.sha256, started, _now(),
                                     seconds=round(time.perf_counter() - t0, 3),
                                     error=f"{type(e).__name__}: {e}"[:2000]), path)
            raise
        seconds = round(time.perf_counter() - t0, 3)
        done = _row(self.run_id, s, inputs, "done", self.cfg.sha256, started, _now(), outputs, seconds)
        _write_row(self.ws, done, path)
        self.done[s.key] = outputs
        self.ran.append(s.key)
        if s.step not in CONTENT_ADDRESSED:  # what comes after this step now starts from its new outputs
            if s.branch == self.shared:
                self.dirty_shared = True
            else:
                self.dirty_branches.add(s.branch)
        self.echo(f"done  {s.key:<30} {seconds:.1f} s  {_short(outputs)}")

    # -- the steps ------------------------------------------------------------------------------------
    def _ingest(self) -> dict:
        from .demo_data import demo_sources
        from .ingest import ingest

        groups: list[tuple[list[str], dict]] = []
        for src in self.cfg.data.sources:
            if src == "demo":
                groups.append(([str(p) for p in demo_sources()], {}))
            elif isinstance(src, dict):
                groups.append(([src["path"]], {k: src.get(k) for k in ("subset", "split", "revision")}))
            else:
                groups.append(([src], {}))
        added = read = rejected = 0
        ids = []
        for inputs, opts in groups:
            r = ingest(self.ws, inputs, sft_fraction=self.cfg.data.sft_fraction, seed=self.cfg.run.seed, **opts)
            added, read, rejected = added + r.added, read + r.read, rejected + sum(r.rejected.values())
            ids.append(r.ingest_id)
        con = self.ws.connect()
        try:
            roles = dict(con.execute("select role, count(*) from pairs where split = $s group by 1",
                                     {"s": self.cfg.data.split}).fetchall())
        finally:
            con.close()
        if not roles.get("pref"):
            raise CurateError(f"No pref pairs with split {self.cfg.data.split!r} after ingest: check [data] sources "
                              "and split.")
        return {"read": read, "added": added, "rejected": rejected, "ingest_ids": ids, "pairs_by_role": roles}

    def _sft_given(self) -> dict:
        from .policy import resolve_policy

        ref = resolve_policy(self.cfg.sft.checkpoint)
        return {"checkpoint": str(ref.folder), "policy_id": ref.policy_id, "trained": False}

    def _sft(self) -> dict:
        from train.sft import SFTRunConfig, train_sft

        from .policy import resolve_policy

        c = self.cfg.sft
        base = resolve_policy(c.model)  # a Hub id or the packaged default -> a local folder
        split = self.cfg.data.split.replace("'", "''")
        r = train_sft(SFTRunConfig(model=str(base.folder), output=str(self.sft_path()), workspace=str(self.ws.root),
                                   where=f"split = '{split}'",
                                   learning_rate=c.lr, epochs=c.epochs, max_steps=c.max_steps, batch_size=c.batch_size,
                                   max_length=c.max_length, seed=self.cfg.run.seed, overwrite=True, quiet=self.quiet))
        return {"checkpoint": str(r.output), "base": base.policy_id, "rows": r.rows, "truncated": r.truncated,
                "train_loss": r.metrics["train_loss"], "steps": r.metrics["steps"],
                "throughput": {"sft_rows_per_s": r.metrics["steps"] * c.batch_size / max(r.seconds, 1e-9)}}

    def _where(self) -> str:
        split = self.cfg.data.split.replace("'", "''")
        extra = f" and ({self.cfg.data.where})" if self.cfg.data.where else ""
        return f"split = '{split}'{extra}"

    def _generate(self, strategy: str | None, k: int) -> dict:
        from .generate import GenerateParams, generate
        from .progress import generation_progress

        g = self.cfg.generate
        params = GenerateParams(top_k=g.top_k, top_p=g.top_p, temperature=g.temperature,
                                max_new_tokens=g.max_new_tokens, samples=g.samples, seed=self.cfg.run.seed + k,
                                chat_template=g.chat_template)
        policy = self.policy_for(strategy, k)
        branch = self.shared if strategy is None else self.branch(strategy)
        with generation_progress(self.quiet) as progress:
            r = generate(self.ws, str(policy), iteration=k, branch=branch, params=params, backend=g.backend,
                         overwrite=self.redo,  # a finished step run again: its samples are replaced
                         dtype=g.dtype, batch_size=g.batch_size, where=self._where(), limit=g.limit or None,
                         sample_fraction=g.sample_fraction if g.sample_fraction < 1 else None, progress=progress)
        out = {"policy": r.policy, "policy_path": str(policy), "prompts": r.prompts, "rows": r.rows,
               "generated_prompts": r.generated_prompts, "new_tokens": r.new_tokens, "truncated": r.truncated}
        if r.generated_prompts and r.generate_seconds:
            out["throughput"] = {"generate_tokens_per_s": r.new_tokens / r.generate_seconds}
        return out

    def _embed(self) -> dict:
        from .embedding import embed
        from .progress import count_progress

        e = self.cfg.embed
        with count_progress(self.quiet, "embedding", "texts") as progress:
            r = embed(self.ws, None if e.model == "default" else e.model, backend=e.backend, batch_size=e.batch_size,
                      progress=progress)
        out = {"model_id": r.model_id, "distinct_texts": r.distinct_texts, "cached": r.cached, "embedded": r.embedded}
        if r.embedded and r.seconds:
            out["throughput"] = {"embed_texts_per_s": r.embedded / r.seconds}
        return out

    def _score(self, branch: str, k: int) -> dict:
        from .score import score

        e = self.cfg.embed
        r = score(self.ws, k, branch, None if e.model == "default" else e.model)
        return {"branch": branch, "model_id": r.model_id, "pairs": r.pairs, "samples": r.samples}

    def _filter(self, strategy: str, k: int) -> dict:
        from .filters import run_filter

        f = self.cfg.filter
        r = run_filter(self.ws, strategy, eps=f.eps, size=f.size, iteration=k, branch=self.data_branch(strategy, k),
                       aggregate=f.aggregate, distinct=f.distinct and strategy == "split-even",
                       name=self.subset_name(strategy, k))
        if r.rows == 0:
            raise CurateError(f"The {strategy} filter of iteration {k} kept no pairs at eps {f.eps}: no pair is "
                              f"similar enough to the policy's responses. Raise [filter] eps (the floor is 1 - eps).")
        if r.rows < f.size:
            self.echo(f"      {strategy}: {r.rows} pairs pass the floor 1 - {f.eps}, fewer than size {f.size}")
        return {"subset": r.name, "subset_id": r.subset_id, "rows": r.rows, "distinct_pairs": r.distinct_pairs,
                "manifest": r.manifest}

    def _rm(self, strategy: str, k: int) -> dict:
        from train.rm import RMConfig, evaluate_rm, train_rm

        c = self.cfg.rm
        r = train_rm(RMConfig(base=str(self.rm_base(strategy, k)), output=str(self.rm_path(strategy, k)),
                              subset=self.subset_name(strategy, k),
                              workspace=str(self.ws.root), learning_rate=c.lr, epochs=c.epochs,
                              batch_size=c.batch_size, max_length=c.max_length, long_rows=c.long_rows,
                              label_smoothing=c.label_smoothing, activation_checkpointing=c.activation_checkpointing,
                              seed=self.cfg.run.seed, overwrite=True, quiet=self.quiet))
        out = {"checkpoint": str(r.output), "subset": self.subset_name(strategy, k), "trained_rows": r.trained_rows,
               "dropped_long": r.dropped_long, "train_loss": r.metrics["train_loss"],
               "throughput": {"rm_pairs_per_s": r.trained_rows * c.epochs / max(r.seconds, 1e-9)}}
        if self.cfg.data.eval_split:
            split = self.cfg.data.eval_split.replace("'", "''")
            where = f"split = '{split}'"
            if c.eval_pairs:
                where += (f" and pair_id in (select pair_id from pairs where split = '{split}' "
                          f"order by pair_id limit {int(c.eval_pairs)})")
            ev = evaluate_rm(r.output, str(self.ws.root), where=where, max_length=c.max_length)
            out.update(eval_pairs=ev["pairs"], eval_accuracy=ev["accuracy"], eval_margin=ev["mean_margin"])
        return out

    def _ppo(self, strategy: str, k: int) -> dict:
        from train.ppo import PPOConfig, train_ppo

        from .generate import select_prompts

        p, g = self.cfg.ppo, self.cfg.generate
        prompts = [x.text for x in select_prompts(self.ws, self._where(), g.limit or None,
                                                  g.sample_fraction if g.sample_fraction < 1 else None,
                                                  self.cfg.run.seed)]
        out_dir = self.ppo_path(strategy, k)
        if self.redo:  # a finished step run again starts over (an interrupted one resumes from its checkpoint)
            import shutil

            shutil.rmtree(out_dir, ignore_errors=True)
        config = PPOConfig(policy=str(self.policy_for(strategy, k)), reward=str(self.rm_path(strategy, k)),
                           reference=str(self.sft_path()), output=str(out_dir), steps=p.steps,
                           batch_size=p.batch_size, mini_batch_size=p.mini_batch_size,
                           max_new_tokens=p.max_new_tokens, ppo_epochs=p.ppo_epochs, top_k=p.top_k,
                           kl_coef=p.kl_coef, kl_target=p.kl_target or None, actor_lr=p.actor_lr,
                           critic_lr=p.critic_lr, save_every=p.save_every, dtype=p.dtype,
                           seed=self.cfg.run.seed + k, quiet=self.quiet)
        t0 = time.perf_counter()
        r = train_ppo(config, prompts=prompts)
        last = r.history[-1] if r.history else {}
        trained = [h for h in r.history if "seconds" in h]
        per_step = sum(h["seconds"] for h in trained) / len(trained) if trained else None
        out = {"checkpoint": str(r.output), "steps": r.step, "prompts": len(prompts),
               "reward_last": last.get("reward"), "kl_last": last.get("kl"),
               "seconds_total": round(time.perf_counter() - t0, 3)}
        if per_step:
            out["throughput"] = {"ppo_prompts_per_s": p.batch_size / per_step}
        return out

    def _report(self) -> dict:
        from . import report

        out: dict = {}
        folder = self.ws.root / "reports" / self.run_id
        folder.mkdir(parents=True, exist_ok=True)
        names = [self.subset_name(s, k) for k in range(1, self.cfg.run.alpha + 1) for s in self.cfg.run.strategies]
        if self.cfg.run.alpha >= 2:
            df = report.intersect(self.ws, strategies=self.cfg.run.strategies, names=names)
            path = folder / "intersect.csv"
            tmp = path.with_suffix(".csv.tmp")
            df.write_csv(tmp)
            tmp.replace(path)
            out["intersect"] = str(path)
            out["intersect_rows"] = df.to_dicts()
            out["intersect_png"] = str(report.intersect_heatmap(df, folder / "intersect.png"))
        branches = [self.shared] + [self.branch(s) for s in self.cfg.run.strategies]
        c = report.cdf(self.ws, branch=branches, eps=self.cfg.filter.eps, aggregate=self.cfg.filter.aggregate,
                       output=folder / "cdf.png")
        out["cdf"] = str(c.path)
        out["html"] = str(report.html_report(self.ws, folder / "report.html", eps=self.cfg.filter.eps))
        out["subsets"] = names
        return out


def _short(d: dict, width: int = 90) -> str:
    text = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("throughput", "intersect_rows", "subsets"))
    return text if len(text) <= width else text[:width - 1] + "…"


# -- cost estimate -----------------------------------------------------------------------------------
# Throughputs measured by curate's benchmarks on a 2-core CPU (benchmarks/results/*.json) with the offline
# defaults: all-MiniLM-L6-v2 on ONNX Runtime, SmolLM2-135M in bfloat16. A workspace's own finished runs
# replace them with what its steps measured.
DEFAULT_THROUGHPUT = {
    "embed_texts_per_s": 241.0,  # bench_embed (b): 6,871 texts in 28.5 s
    "generate_tokens_per_s": 186.6,  # bench_generate: batch 32, bfloat16
    "sft_rows_per_s": 1.5,  # the RM's rate: both are one forward and backward pass per transcript
    "rm_pairs_per_s": 1.31,  # a full epoch over a 2,000-pair subset, max_length 512
    "ppo_prompts_per_s": 0.13,  # bench_train: 4 prompts x 32 new tokens per step
}


def measured_throughput(ws: Workspace) -> dict[str, tuple[float, str]]:
    """{measure: (value, where from)}: the latest value a finished run step measured, else the default."""
    out = {k: (v, "curate's CPU benchmark") for k, v in DEFAULT_THROUGHPUT.items()}
    for r in runs_rows(ws):
        if r["status"] != "done" or not r["outputs"]:
            continue
        for k, v in (json.loads(r["outputs"]).get("throughput") or {}).items():
            if k in out and v:
                out[k] = (float(v), f"run {r['run_id']}, step {r['step']}")
    return out


def estimate(cfg: RunConfig) -> dict:
    """Work per iteration and the expected time: what `curate run --dry-run` prints. Loads no model."""
    from .workspace import Workspace

    ws = Workspace(cfg.run.workspace)
    n_pref = n_sft = n_texts = 0
    n_prompts = None
    if ws.exists:
        con = ws.connect()
        try:
            split = cfg.data.split.replace("'", "''")
            extra = f" and ({cfg.data.where})" if cfg.data.where else ""
            n_pref, n_sft, n_prompts = con.execute(
                f"select count(*) filter (role = 'pref'), count(*) filter (role = 'sft'), "
                f"count(distinct prompt) filter (role = 'pref') from pairs where split = '{split}'{extra}").fetchone()
            pref = f"from pairs where role = 'pref' and split = '{split}'{extra}"
            n_texts = con.execute(f"select count(distinct t) from (select chosen as t {pref} "
                                  f"union all select rejected {pref})").fetchone()[0]
        finally:
            con.close()
    known = bool(n_prompts)
    counts_from = "the workspace"
    if not known:  # not ingested yet: count the sources' lines (cheap) for an order of magnitude
        n_lines, unknown = _count_source_lines(cfg)
        if unknown:  # hf:IDs and folders: unknown until ingested
            counts_from = (f"unknown until {', '.join(dict.fromkeys(unknown))} is ingested: run the config once, or "
                           "`curate ingest` it into the workspace first")
            n_pref = n_sft = n_prompts = n_texts = None
        else:
            counts_from = "the source files' lines"
            n_pref, n_sft = int(n_lines * (1 - cfg.data.sft_fraction)), int(n_lines * cfg.data.sft_fraction)
            n_prompts, n_texts = n_pref, 2 * n_pref
    g, p = cfg.generate, cfg.ppo
    if n_prompts is None:
        prompts = g.limit or None
    else:
        prompts = min(n_prompts, g.limit) if g.limit else int(n_prompts * g.sample_fraction)
    subset = cfg.filter.size if n_pref is None else min(cfg.filter.size, n_pref)
    branches = len(cfg.run.strategies)
    rate = measured_throughput(ws)
    iterations = []
    for k in range(1, cfg.run.alpha + 1):
        samplers = 1 if k == 1 else branches
        # tokens are an upper bound: responses may stop earlier
        tokens = None if prompts is None else prompts * g.samples * g.max_new_tokens * samplers
        texts = None if prompts is None or n_texts is None else \
            (n_texts if k == 1 else 0) + prompts * g.samples * samplers
        seconds = {
            "generate": None if tokens is None else tokens / rate["generate_tokens_per_s"][0],
            "embed": None if texts is None else texts / rate["embed_texts_per_s"][0],
            "rm": subset * cfg.rm.epochs * branches / rate["rm_pairs_per_s"][0],
            "ppo": p.steps * p.batch_size * branches / rate["ppo_prompts_per_s"][0],
        }
        iterations.append({"iteration": k, "policies_sampled": samplers, "prompts": prompts,
                           "tokens_to_generate": tokens, "texts_to_embed": texts,
                           "rm_steps": math.ceil(subset / cfg.rm.batch_size * cfg.rm.epochs) * branches,
                           "ppo_steps": p.steps * branches, "seconds": seconds})
    if cfg.sft.checkpoint:
        sft_rows = 0
    elif cfg.sft.max_steps > 0:
        sft_rows = cfg.sft.max_steps * cfg.sft.batch_size
    else:
        sft_rows = None if n_sft is None else int(n_sft * cfg.sft.epochs)
    sft_seconds = None if sft_rows is None else sft_rows / rate["sft_rows_per_s"][0]
    total = (sft_seconds or 0) + sum(v or 0 for it in iterations for v in it["seconds"].values())
    complete = sft_seconds is not None and all(v is not None for it in iterations for v in it["seconds"].values())
    return {"run": cfg.run.name, "workspace": str(ws.root), "counts_from": counts_from, "complete": complete,
            "pref_pairs": n_pref, "sft_pairs": n_sft, "sft_rows": sft_rows, "sft_seconds": sft_seconds,
            "iterations": iterations, "total_seconds": total,
            "throughput": {k: {"value": v, "from": src} for k, (v, src) in rate.items()}}


def _count_source_lines(cfg: RunConfig) -> tuple[int, list[str]]:
    """(lines of the .jsonl[.gz] sources, the sources that cannot be counted without ingesting them)."""
    import gzip

    from .demo_data import demo_sources

    n, unknown = 0, []
    for src in cfg.data.sources:
        paths = [str(p) for p in demo_sources()] if src == "demo" else [src["path"] if isinstance(src, dict) else src]
        for p in paths:
            path = Path(p)
            if not path.is_file() or not path.name.endswith((".jsonl", ".jsonl.gz")):
                unknown.append(p)
                continue
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as fh:
                n += sum(1 for _ in fh)
    return n, unknown
