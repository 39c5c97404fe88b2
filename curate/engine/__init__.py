"""Where a step's units of work run: in this process (`local`, the default) or on a Ray cluster (`ray`).

    from curate.engine import EngineSettings, Shard, executor
    ex = executor(EngineSettings(kind="ray", actors=4))
    ex.run(job, shards, on_done, advance)      # on_done(name, rows, info) runs on the driver, in shard order or not

A step (curate.embedding.embed, curate.generate.generate) keeps everything that reads or writes the workspace on
the driver: it computes its to-do list from content (texts without a vector for the model; batches of the plan
without their samples), cuts it into Shards with content-derived names, and commits each shard's rows through
Workspace.transaction, keeping only rows whose keys are still missing. A *job* is the one piece both executors
share: job.load() builds the worker's state once (the model), job.run(state, payload, advance) turns one shard's
payload into rows that carry their keys, plus an info dict. The local executor calls them in this process and
hands the rows straight to on_done; the Ray executor (curate.engine.ray_pool) runs them in an actor pool and the
actors write each shard to the workspace's staging folder (curate.engine.staging), which the driver commits from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..errors import CurateError
from ..settings import setting

KINDS = ("local", "ray")


@dataclass
class EngineSettings:
    """`--engine` and its Ray options (embed, generate), and `curate run`'s [engine] section."""

    kind: str = setting("local", "Where the work runs: local (this process) or ray (an actor pool on a Ray cluster; "
                        "pip install 'curate[ray]').", flag="--engine", choices=KINDS)
    address: str = setting("", "With --engine ray: the cluster's address (default: $RAY_ADDRESS, else the Ray that "
                           "`ray start` runs on this machine, else one started for the step).", flag="--ray-address")
    actors: int = setting(0, "With --engine ray: actors in the pool, one model each (0: as many as the cluster's "
                          "CPUs or GPUs hold).")
    cpus_per_actor: float = setting(1.0, "With --engine ray: CPUs each actor reserves.")
    gpus_per_actor: float = setting(-1.0, "With --engine ray: GPUs each actor reserves (-1: 1 when the cluster has "
                                    "GPUs, else 0).")

    def check(self) -> None:
        if self.kind not in KINDS:
            raise CurateError(f"--engine {self.kind!r}: expected one of {', '.join(KINDS)}.")
        if self.actors < 0 or self.cpus_per_actor <= 0 or (self.gpus_per_actor < 0 and self.gpus_per_actor != -1):
            raise CurateError("--actors must be 0 (as many as fit) or more, --cpus-per-actor above 0, and "
                              "--gpus-per-actor -1 (auto) or more.")

    def manifest(self) -> dict:
        return {"kind": self.kind} if self.kind == "local" else {
            "kind": self.kind, "address": self.address or None, "actors": self.actors,
            "cpus_per_actor": self.cpus_per_actor, "gpus_per_actor": self.gpus_per_actor}


@dataclass
class Shard:
    name: str  # content-derived: the same work gets the same name in every run
    payload: Any  # what job.run needs (picklable), e.g. [(text_hash, text), ...]
    size: int  # units of progress it stands for (texts, prompts)


def shard_name(*parts: Any) -> str:
    """A shard's name from its content (keys, settings): equal work, equal name."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return "s-" + h.hexdigest()[:20]


class Job(Protocol):
    step: str  # "embed", "generate"

    def load(self) -> Any: ...

    def run(self, state: Any, payload: Any, advance: Callable | None) -> tuple[Any, dict]: ...


OnDone = Callable[[str, Any, dict], None]


class LocalExecutor:
    """Every shard in this process, in order; on_done commits each as it finishes (an interrupt loses one shard)."""

    kind = "local"

    def __init__(self, settings: EngineSettings | None = None):
        self.settings = settings or EngineSettings()
        self.info: dict = {"kind": "local"}

    def run(self, job: Job, shards: list[Shard], on_done: OnDone, advance: Callable | None = None, *,
            staging=None, state: Any = None) -> None:
        """`state`: the job's state when the caller loaded it already (embed's calibrated encoder)."""
        if not shards:
            return
        if state is None:
            state = job.load()
        for shard in shards:
            rows, info = job.run(state, shard.payload, advance)
            on_done(shard.name, rows, info)

    def close(self) -> None:
        pass


def executor(settings: EngineSettings | None):
    """The executor for `settings` (local when None); a Ray one connects to the cluster here and checks its
    resources, so a bad address or a too-small cluster fails before any model loads."""
    s = settings or EngineSettings()
    s.check()
    if s.kind == "local":
        return LocalExecutor(s)
    from .ray_pool import RayExecutor

    return RayExecutor(s)


def commit_staged(staging, on_done: OnDone) -> list[str]:
    """Commit the done shards an earlier, killed run left in `staging` (on_done keeps the rows whose keys are still
    missing), then remove them; returns their names."""
    names = staging.done()
    for name in names:
        rows, info = staging.read(name)
        on_done(name, rows, {**info, "recovered": True})
        staging.remove(name)
    return names
