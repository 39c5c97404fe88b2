"""`curate run`: FRFT(alpha) end to end from one TOML config, recorded step by step in the `runs` table.

The plan (Runner.plan, in order):

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
      (the baseline branch, [run] baseline = random or all, trains its RM and PPO the same way; it never samples:
      from k = 2 on it draws from iteration 1's scored pairs, with seed + k - 1)
      eval                  each strategy's PPO policy of iteration k against the baseline's (judge win rate on
                            held-out prompts, both orders) and each RM's accuracy on the held-out pairs its filter
                            selects for its policy
    report                  intersection of each strategy's subsets across iterations, CDF plot, HTML report

Every step writes a `runs` row (status running) before it starts and replaces it with the finished row (done,
with its outputs and seconds) when it ends, so `curate runs` and SQL show the lineage: subset -> RM -> policy ->
next generations. `--resume` skips the steps that are done (and says so); a step killed half-way is rerun,
and the steps underneath resume their own partial work (generation batches, embedding shards, PPO checkpoints).
Where things live is curate.run.layout's business, what each step does curate.run.steps'.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CurateError
from ..runs import mark_interrupted, now, runs_rows, step_row, write_row
from ..workspace import Workspace
from .config import RunConfig
from .layout import Layout
from .steps import Steps

# The config sections each step reads. A resumed run whose config changed reruns the done steps that read a
# changed key, and after a step reruns, the done steps that depend on it (the rest of its branch; everything
# after a shared step). Changing what defines the run's data is refused instead.
STEP_READS = {"ingest": ("data",), "sft": ("sft",), "generate": ("generate",), "embed": ("embed",),
              "score": ("embed",), "filter": ("filter",), "rm": ("rm", "ppo.reward_mode"), "ppo": ("ppo",),
              "eval": ("eval", "ppo.reward_mode"),  # the rm step evaluates its model in the mode PPO reads it
              "report": ("eval",)}  # the report shows the eval steps' win rates
FIXED = ("data", "run.seed", "run.name", "run.workspace", "run.checkpoints")
CONTENT_ADDRESSED = ("embed", "eval", "report")  # rerunning these changes no other step's inputs


def config_diff(old: dict, new: dict, defaults: dict | None = None) -> list[str]:
    """The "section.key" names whose values differ between two RunConfig.to_dict() results. A key an older
    record lacks meant its default then (a setting added since), so it differs only if the new value does."""
    defaults = defaults or {}

    def value(d: dict, key: str):
        sec, name = key.split(".", 1)
        return d.get(sec, {}).get(name, defaults.get(sec, {}).get(name))

    keys = {f"{sec}.{k}" for d in (old, new) for sec, vals in d.items() for k in vals}
    return sorted(k for k in keys if json.dumps(value(old, k)) != json.dumps(value(new, k)))


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


# -- the runner --------------------------------------------------------------------------------------
class Runner:
    def __init__(self, cfg: RunConfig, *, resume: bool = False, quiet: bool = False,
                 echo: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.ws = Workspace(cfg.run.workspace)
        self.run_id = cfg.run.name
        self.resume = resume
        self.quiet = quiet
        self.echo = echo or (lambda msg: print(msg, file=sys.stderr))
        self.done: dict[str, dict] = {}  # step key -> outputs of its finished row
        self.at = Layout(cfg, self.done)
        self.ckpt = self.at.ckpt
        self.steps = Steps(cfg, self.ws, self.at, quiet=quiet, echo=self.echo, redo=lambda: self.redo)
        self.current: str | None = None  # the step running now
        self.changed: list[str] = []  # config keys changed since the run's last attempt
        self.dirty_shared = False  # a shared step ran again: every later step must
        self.dirty_branches: set[str] = set()  # branches where a step ran again: their later steps must
        self.redo = False  # the step running now replaces a finished one
        self.skipped: list[str] = []
        self.ran: list[str] = []

    @property
    def report_key(self) -> str:
        return self.at.report_key

    # -- plan ---------------------------------------------------------------------------------------
    def plan(self) -> list[Step]:
        """The steps in order. Inputs are functions: they are read when the step starts, so they name what
        the steps before it actually made (a Hub id's local folder, for instance)."""
        cfg, at, run, steps = self.cfg, self.at, self.steps, []
        shared = at.shared
        checkpoint = {"artifacts": lambda o: [o["checkpoint"]]}  # redo a finished step whose model is gone

        def add(step: str, branch: str, k: int, inputs: Callable[[], dict], fn: Callable[[], dict], **kw) -> None:
            steps.append(Step(step, branch, k, inputs, fn, **kw))

        add("ingest", shared, 0, lambda: {"sources": cfg.data.sources, "sft_fraction": cfg.data.sft_fraction},
            run.ingest)
        if cfg.sft.checkpoint:
            add("sft", shared, 0, lambda: {"checkpoint": cfg.sft.checkpoint, "trained": False}, run.sft_given,
                **checkpoint)
        else:
            add("sft", shared, 0, lambda: {"model": cfg.sft.model, "sft_pairs_of_split": cfg.data.split}, run.sft,
                **checkpoint)
        for k in range(1, cfg.run.alpha + 1):
            if k == 1:  # one SFT policy for every branch: sampled once
                add("generate", shared, 1, lambda: {"policy": str(at.sft_path())}, lambda: run.generate(None, 1))
            else:
                for s in [s for s in cfg.run.strategies if not at.is_baseline(s)]:  # a baseline does not sample
                    add("generate", at.branch(s), k, lambda s=s, k=k: {"policy": str(at.policy_for(s, k))},
                        lambda s=s, k=k: run.generate(s, k))
            add("embed", shared, k, lambda: {"model": cfg.embed.model}, run.embed)
            if k == 1:
                add("score", shared, 1, lambda: {"generations": f"{shared}/it1"}, lambda: run.score(shared, 1))
            for s in cfg.branches:
                b = at.branch(s)
                if k > 1 and not at.is_baseline(s):
                    add("score", b, k, lambda b=b, k=k: {"generations": f"{b}/it{k}"},
                        lambda b=b, k=k: run.score(b, k))
                add("filter", b, k, lambda s=s, k=k: {"strategy": s, "similarities":
                                                      f"{at.data_branch(s, k)}/it{at.data_iteration(s, k)}",
                                                      "eps": cfg.filter.eps, "size": cfg.filter.size},
                    lambda s=s, k=k: run.filter(s, k))
                add("rm", b, k, lambda s=s, k=k: {"base": str(at.rm_base(s, k)), "subset": at.subset_name(s, k)},
                    lambda s=s, k=k: run.rm(s, k), **checkpoint)
                add("ppo", b, k, lambda s=s, k=k: {"policy": str(at.policy_for(s, k)),
                                                   "reward": str(at.rm_path(s, k)),
                                                   "reference": str(at.sft_path())},
                    lambda s=s, k=k: run.ppo(s, k), **checkpoint)
            if cfg.run.baseline:
                add("eval", shared, k, lambda k=k: {"policies": {s: str(at.ppo_path(s, k)) for s in cfg.branches},
                                                    "baseline": cfg.run.baseline, "judge": cfg.eval.judge},
                    lambda k=k: run.evaluate(k))
        add("report", shared, cfg.run.alpha, lambda: {"strategies": cfg.run.strategies}, run.report)
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
            self.changed = config_diff(old, self.cfg.to_dict(), RunConfig.defaults())
            fixed = [k for k in self.changed if any(k == f or k.startswith(f + ".") for f in FIXED)]
            if fixed:
                raise CurateError(f"Run {self.run_id!r}: {', '.join(fixed)} changed since it started; they define "
                                  "the run's data, so it cannot continue with them. Restore them, or set another "
                                  "[run] name to start a new run (the workspace keeps its pairs and embeddings).")
            if self.changed:
                self.echo(f"config changed since the last attempt ({', '.join(self.changed)}): the finished steps "
                          "that read it run again, and the steps that depend on them")
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
        if s.branch == self.at.shared and self.dirty_branches:  # embed, report: they read every branch
            return "a branch before it ran again"
        return None

    def execute(self) -> list[Step]:
        with self.ws.lock("curate run"):  # creates the workspace, or says why it cannot
            rows = self.check_existing()
            self.ws.write_manifest("run-config", f"{self.run_id}-{self.cfg.sha256[:16]}",
                                   {"run_id": self.run_id, "sha256": self.cfg.sha256, "path": self.cfg.path,
                                    "config": self.cfg.to_dict()})
            for r in rows:
                if r["status"] == "done":
                    self.done[f"{r['step']}/{r['branch']}/it{r['iteration']}"] = json.loads(r["outputs"] or "{}")
            if any(r["status"] == "running" for r in rows):
                mark_interrupted(self.ws, self.run_id)
            steps = self.plan()
            for s in steps:
                self._run_step(s)
        return steps

    def _row(self, s: Step, inputs: dict, status: str, started, finished, outputs: dict | None = None,
             seconds: float | None = None, error: str | None = None) -> dict:
        return step_row(self.run_id, s.step, s.branch, s.iteration, inputs, status, self.cfg.sha256, started,
                        finished, outputs, seconds, error)

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
        started = now()
        self.current = s.key
        inputs = s.inputs()
        self.echo(f"run   {s.key:<30} {_short(inputs)}")
        path = write_row(self.ws, self._row(s, inputs, "running", started, None), None)
        t0 = time.perf_counter()
        try:
            outputs = s.fn()
        except BaseException as e:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            write_row(self.ws, self._row(s, inputs, status, started, now(), seconds=round(time.perf_counter() - t0, 3),
                                         error=f"{type(e).__name__}: {e}"[:2000]), path)
            raise
        seconds = round(time.perf_counter() - t0, 3)
        write_row(self.ws, self._row(s, inputs, "done", started, now(), outputs, seconds), path)
        self.done[s.key] = outputs
        self.ran.append(s.key)
        if s.step not in CONTENT_ADDRESSED:  # what comes after this step now starts from its new outputs
            if s.branch == self.at.shared:
                self.dirty_shared = True
            else:
                self.dirty_branches.add(s.branch)
        self.echo(f"done  {s.key:<30} {seconds:.1f} s  {_short(outputs)}")


def _short(d: dict, width: int = 90) -> str:
    text = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("throughput", "intersect_rows", "subsets"))
    return text if len(text) <= width else text[:width - 1] + "…"


