"""The Ray executor: shards through Ray Data's map_batches with a callable class on an actor pool.

Each actor loads the job's model once (job.load() in its constructor) and runs job.run on one shard per call,
writing the rows to the staging folder (curate.engine.staging) and returning only the shard's name, node and row
count. Ray decides where the shards run; which rows a shard holds was fixed by the driver from content, so Ray's
block layout, retries and ordering change nothing in the result. A dead actor is restarted and its task retried
(Ray Data's defaults for actor pools: max_restarts and max_task_retries -1); the retried task writes the same
shard again.

The input is ray.data.from_items, one row per shard: its name and the path of the to-do list the driver wrote to
staging (the driver's object store holds no texts). No read task, so a cluster whose every CPU is held by an actor
does not deadlock waiting for one (ray.data.range's read task would).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable

from ..errors import CurateError

WAIT_FOR_ACTORS_S = 900  # loading a 7B model on every actor takes minutes; then the pool fails with one line
FAULT_ENV = "CURATE_ENGINE_FAULT"  # tests: a file path; the first actor call that finds it missing creates it and dies


class _Worker:
    """One actor: the job's state, loaded once; each call runs one shard and stages its rows."""

    def __init__(self, job, staging_dir: str):
        from .staging import Staging

        self.job, self.staging = job, Staging(staging_dir)
        self.state, self.error = None, ""
        try:
            self.state = job.load()
        except CurateError as e:  # a user error (a model that does not load): told to the driver as one line, not
            self.error = str(e)   # retried (an actor that dies in its constructor is a traceback and no restart)

    def __call__(self, batch: dict) -> dict:
        import ray

        node = ray.get_runtime_context().get_node_id()
        out: dict[str, list] = {"name": [], "rows": [], "node": [], "error": []}
        for name, payload in zip(batch["name"], batch["payload"]):
            t0 = time.perf_counter()
            try:
                if self.error:
                    raise CurateError(self.error)
                rows, info = self.job.run(self.state, self.staging.read_todo(str(payload)), None)
            except CurateError as e:
                out["name"].append(str(name))
                out["rows"].append(0)
                out["node"].append(node)
                out["error"].append(str(e))
                continue
            _fault_once()
            self.staging.write(str(name), rows, {**info, "node": node, "pid": os.getpid(),
                                                 "seconds": round(time.perf_counter() - t0, 3)})
            out["name"].append(str(name))
            out["rows"].append(rows.height)
            out["node"].append(node)
            out["error"].append("")
        return out


def _fault_once() -> None:
    """Fault injection for the tests: die mid-task (work done, nothing staged) once per marker file."""
    marker = os.environ.get(FAULT_ENV)
    if marker and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        os._exit(1)


def _unreachable(address: str | None, flag: str, why: str) -> CurateError:
    where = address or "a Ray started on this machine"
    return CurateError(f"--engine ray: could not reach the Ray cluster at {where} (--ray-address {flag or '-'}, "
                       f"RAY_ADDRESS {os.environ.get('RAY_ADDRESS') or '-'}): {why}. Start one with `ray start --head` "
                       "or fix the address.")


def _reachable(address: str | None, flag: str) -> None:
    """A quick TCP check of host:port first: ray.init waits minutes on an address nobody answers."""
    import socket

    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise _unreachable(address, flag, "expected host:port (or ray://host:port)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise _unreachable(address, flag, f"{type(e).__name__}: {e.strerror or e}") from None


def _cause(e: BaseException) -> str:
    """The innermost message of a Ray error, on one line (Ray wraps an actor's exception in its own)."""
    while getattr(e, "cause", None) is not None and e.cause is not e:
        e = e.cause
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[-400:]}"


def _fits(resources: dict, cpus_per_actor: float, gpus_per_actor: float) -> int:
    """How many actors one node's resources hold."""
    n = int(float(resources.get("CPU", 0)) // cpus_per_actor)
    if gpus_per_actor:
        n = min(n, int(float(resources.get("GPU", 0)) // gpus_per_actor))
    return max(n, 0)


class RayExecutor:
    kind = "ray"

    def __init__(self, settings):
        try:
            import ray
        except ImportError:
            raise CurateError("--engine ray needs Ray: pip install 'curate[ray]'.") from None
        self.settings = settings
        self.address = settings.address or os.environ.get("RAY_ADDRESS") or None
        self._started = False
        if not ray.is_initialized():
            _reachable(self.address, settings.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except Exception as e:  # ConnectionError, a timeout, a version mismatch: one line, with the address
                raise _unreachable(self.address, settings.address,
                                   f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
            self._started = True
        self.resources = ray.cluster_resources()
        gpus = float(self.resources.get("GPU", 0))
        cpus = float(self.resources.get("CPU", 0))
        self.gpus_per_actor = (1.0 if gpus else 0.0) if settings.gpus_per_actor == -1 else settings.gpus_per_actor
        # an actor lives on one node: count what fits node by node (two 1-GPU nodes hold no 2-GPU actor)
        fit = sum(_fits(n.get("Resources", {}), settings.cpus_per_actor, self.gpus_per_actor)
                  for n in ray.nodes() if n.get("Alive"))
        self.actors = settings.actors or fit
        if self.actors < 1 or self.actors > fit:
            self.close()
            raise CurateError(f"--engine ray: the cluster at {self.address or 'this machine'} has {cpus:g} CPUs and "
                              f"{gpus:g} GPUs, room for {fit} actor(s) of {settings.cpus_per_actor:g} CPUs and "
                              f"{self.gpus_per_actor:g} GPUs on one node each; {max(self.actors, 1)} asked. Lower "
                              "--actors, --cpus-per-actor or --gpus-per-actor, or add nodes.")
        self.nodes: set[str] = set()
        self.info: dict = {"kind": "ray", "address": self.address or "local", "actors": self.actors,
                           "cpus_per_actor": settings.cpus_per_actor, "gpus_per_actor": self.gpus_per_actor,
                           "cluster": {"CPU": cpus, "GPU": gpus,
                                       "nodes": sum(1 for n in ray.nodes() if n.get("Alive"))}}

    @property
    def device(self) -> str:
        """What the actors' models run on."""
        return "cuda" if self.gpus_per_actor else "cpu"

    def run(self, job, shards: list, on_done: Callable, advance: Callable | None = None, *,
            staging=None, state: Any = None) -> None:
        """Run the shards on the pool; on_done(name, rows, info) on the driver as each is staged, then the staged
        files go. `state` is ignored: each actor loads its own."""
        import ray.data

        if not shards:
            return
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # curate's bar on the driver counts committed rows instead
        ctx.print_on_execution_start = False
        # every actor has its model before the first shard goes out, and holds one shard at a time: shards are
        # big units, so the pool shares them out evenly instead of queueing them on the first actor up
        ctx.wait_for_min_actors_s = WAIT_FOR_ACTORS_S
        remote: dict[str, Any] = {}
        if os.environ.get(FAULT_ENV):
            remote["runtime_env"] = {"env_vars": {FAULT_ENV: os.environ[FAULT_ENV]}}
        # the driver writes the to-do list, one file per shard; a task carries the shard's name and that path
        items = [{"name": s.name, "payload": staging.write_todo(s.name, s.payload)} for s in shards]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(_Worker, batch_size=1, compute=ray.data.ActorPoolStrategy(
                                size=min(self.actors, len(shards)), max_tasks_in_flight_per_actor=1),
                            fn_constructor_kwargs={"job": job, "staging_dir": str(staging.folder)},
                            num_cpus=self.settings.cpus_per_actor, num_gpus=self.gpus_per_actor or None,
                            **remote)
        # stdout is for data (--json): what Ray prints while the pool runs (a raylet's note on a retried task, from
        # its error thread) goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            try:
                self._drain(ds, on_done, advance, staging)
            except CurateError:
                raise
            except Exception as e:  # an actor's own exception (CUDA out of memory, a model path missing on a node),
                # or the pool not starting in time (resources taken by other jobs): one line, not Ray's traceback
                raise CurateError(f"--engine ray: the actor pool failed: {_cause(e)}. Ray's logs (under "
                                  "/tmp/ray/session_latest/logs on each node) have the details.") from None
        self.info["nodes_used"] = sorted(self.nodes)

    def _drain(self, ds, on_done: Callable, advance: Callable | None, staging) -> None:
        for row in ds.iter_rows():
            if row["error"]:
                raise CurateError(f"--engine ray, in an actor on node {str(row['node'])[:12]}: {row['error']}")
            name = str(row["name"])
            if not staging.is_done(name):  # a second result for a shard already committed (a retried task)
                continue
            rows, info = staging.read(name)
            on_done(name, rows, info)
            staging.remove(name)
            self.nodes.add(info.get("node", ""))
            if advance is not None:
                advance(*info.get("units", (rows.height,)))

    def close(self) -> None:
        """Shut down the Ray this step started (a cluster it joined stays up)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
