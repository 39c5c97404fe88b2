"""--engine ray on a real two-node Ray cluster on this machine (ray.cluster_utils.Cluster: two raylets, one CPU each,
small object stores): the same tables as the local path, both nodes working, an actor killed mid-task retried with
no key twice, and a resumed job recomputing only its unfinished shards."""

from __future__ import annotations

import json
import shutil

import pytest
import ray  # the `ray` extra: `make install` installs it, so a missing Ray fails here, never skips

from curate.embedding import embed
from curate.engine import EngineSettings, shard_name
from curate.engine.staging import Staging
from curate.generate import GenerateParams, generate
from curate.workspace import Workspace

from .conftest import hh_row, query, tiny_lm, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RAY = EngineSettings(kind="ray", actors=2, cpus_per_actor=1, gpus_per_actor=0)


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 1024**2})
    c.add_node(num_cpus=1, object_store_memory=100 * 1024**2)
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def base_ws(tmp_path_factory):
    """160 pref pairs: 160 distinct prompts, 320 distinct responses."""
    from curate.ingest import ingest

    tmp = tmp_path_factory.mktemp("engine")
    rows = [hh_row(f"question {i} about {'bread' if i % 2 else 'tea'}?", f"good answer {i} " + "yes " * (i % 7),
                   f"bad answer {i} " + "no " * (i % 5)) for i in range(160)]
    src = write_jsonl(tmp / "data" / "harmless-base" / "train.jsonl", rows)
    ingest(Workspace(tmp / "ws"), [str(src)])
    return tmp / "ws"


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return tiny_lm(tmp_path_factory.mktemp("tiny-policy"))[0]


def copy_ws(base, tmp_path, name="ws") -> Workspace:
    shutil.copytree(base, tmp_path / name)
    return Workspace(tmp_path / name)


def vectors(ws: Workspace) -> dict:
    return {h: v for h, v in query(ws.root, "select text_hash, vector from embeddings")}


def manifest(ws: Workspace, kind: str) -> dict:
    return ws.manifests(kind)[-1]


def test_embed_on_ray_gives_the_local_vectors_and_both_nodes_work(cluster, base_ws, tmp_path):
    local, remote = copy_ws(base_ws, tmp_path, "local"), copy_ws(base_ws, tmp_path, "ray")
    a = embed(local, "default", backend="torch", shard_size=40)
    b = embed(remote, "default", backend="torch", shard_size=40, engine=RAY)
    assert a.embedded == b.embedded == 320 and b.model_id == a.model_id
    va, vb = vectors(local), vectors(remote)
    assert va.keys() == vb.keys()
    import numpy as np

    assert max(float(np.abs(np.array(va[h]) - np.array(vb[h])).max()) for h in va) < 1e-5
    eng = manifest(remote, "embed")["engine"]
    assert eng["kind"] == "ray" and eng["actors"] == 2 and eng["cluster"]["nodes"] == 2
    assert len(eng["nodes_used"]) == 2 and {s["node"] for s in eng["shards"]} == set(eng["nodes_used"])
    assert len(eng["shards"]) == 8 and all(s["committed"] == 40 for s in eng["shards"])
    assert not any((remote.root / "staging").rglob("*.parquet"))  # committed shards are removed from staging
    assert embed(remote, "default", backend="torch", engine=RAY).embedded == 0  # nothing twice


def _gen(ws, policy, **kw):
    return generate(ws, str(policy), iteration=1, params=GenerateParams(max_new_tokens=6, samples=2, seed=3),
                    backend="transformers", dtype="float32", batch_size=4, shard_size=8, limit=40, **kw)


def gen_rows(ws: Workspace) -> list:
    return query(ws.root, "select branch, iteration, pair_id, sample, text, policy, params from generations "
                          "order by pair_id, sample")


def test_generate_on_ray_gives_the_local_rows(cluster, base_ws, policy, tmp_path):
    local, remote = copy_ws(base_ws, tmp_path, "local"), copy_ws(base_ws, tmp_path, "ray")
    a, b = _gen(local, policy), _gen(remote, policy, engine=RAY)
    assert a.rows == b.rows == 80 and a.new_tokens == b.new_tokens
    assert gen_rows(local) == gen_rows(remote)
    eng = json.loads(open(b.manifest).read())["engine"]
    assert len(eng["nodes_used"]) == 2 and len(eng["shards"]) == 5


def test_an_actor_killed_mid_task_is_retried_and_no_key_appears_twice(cluster, cli, base_ws, policy, tmp_path,
                                                                      monkeypatch):
    ws = copy_ws(base_ws, tmp_path)
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("CURATE_ENGINE_FAULT", str(marker))
    r = cli("generate", "-w", ws.root, "--model", policy, "-i", 1, "--max-new-tokens", 6, "--samples", 2, "--seed", 3,
            "--backend", "transformers", "--dtype", "float32", "--batch-size", 4, "--shard-size", 8, "--limit", 40,
            "--engine", "ray", "--actors", 2, "--gpus-per-actor", 0, "--json", "-q")
    assert r.exit_code == 0, r.output
    assert marker.exists()  # an actor did die (os._exit) after sampling a shard, before staging it
    assert json.loads(r.stdout)["rows"] == 80
    n, keys = query(ws.root, "select count(*), count(distinct (pair_id, sample)) from generations")[0]
    assert n == keys == 80


def test_a_resumed_job_recomputes_only_the_unfinished_shards(cluster, base_ws, policy, tmp_path):
    """A driver killed after two shards were staged but before it committed them: the next run commits those two
    from staging and samples only the other three."""
    from curate.generate_job import GenerateJob
    from curate.models import resolve_policy
    from curate.policy import load_policy
    from curate.sampling import TransformersBackend, batch_plan, tokenize_prompts

    full = copy_ws(base_ws, tmp_path, "full")
    _gen(full, policy)
    ws = copy_ws(base_ws, tmp_path, "resumed")
    # what two actors of the killed run left: the first two shards of the plan, staged as a worker stages them
    ref = resolve_policy(str(policy))
    from curate.generate import select_prompts

    p = GenerateParams(max_new_tokens=6, samples=2, seed=3)
    prompts = select_prompts(ws, None, 40, None, p.seed)
    lp = load_policy(ref, "cpu", "float32")
    tokenize_prompts(prompts, lp.tokenizer, False, 64 - 6)
    plan = batch_plan(prompts, 4)
    row_params = {**p.__dict__, "backend": "transformers", "dtype": "float32"}
    job = GenerateJob(ref, "cpu", "float32", p, row_params, "main", 1, ref.model_id)
    staging = Staging.of(ws, "generate", shard_name(ref.model_id, "main", 1, row_params, 4))
    backend = TransformersBackend(lp.model, lp.tokenizer, "cpu", "float32")
    for first in (0, 2):
        part = [(b, plan[b]) for b in (first, first + 1)]
        rows, info = job.run(backend, part, None)
        keys = [(b, [x.key for x in batch]) for b, batch in part]
        staging.write(shard_name(ref.model_id, "main", 1, row_params, keys), rows, {**info, "node": "killed-run"})
    r = _gen(ws, policy, engine=RAY)
    assert r.recovered == 32 and r.rows == 48 and r.generated_prompts == 24  # 16 of 40 prompts came from staging
    eng = json.loads(open(r.manifest).read())["engine"]
    assert sorted(s["committed"] for s in eng["shards"]) == [16, 16, 16, 16, 16]
    assert sum(1 for s in eng["shards"] if s.get("recovered")) == 2
    assert gen_rows(ws) == gen_rows(full)
    assert staging.done() == []


def test_unreachable_cluster_and_too_few_resources_are_one_line_errors(cluster, base_ws, policy, tmp_path):
    from curate.engine.ray_pool import RayExecutor
    from curate.errors import CurateError

    with pytest.raises(CurateError, match=r"has 2 CPUs and 0 GPUs, room for 2 actor\(s\) of 1 CPUs .*; 3 asked"):
        RayExecutor(EngineSettings(kind="ray", actors=3))
    with pytest.raises(CurateError, match=r"room for 0 actor\(s\) of 1 CPUs and 1 GPUs on one node each; 1 asked"):
        RayExecutor(EngineSettings(kind="ray", actors=1, gpus_per_actor=1))
    # 2 CPUs in all, but 1 per node: an actor of 2 CPUs fits nowhere
    with pytest.raises(CurateError, match=r"room for 0 actor\(s\) of 2 CPUs and 0 GPUs on one node each"):
        RayExecutor(EngineSettings(kind="ray", actors=1, cpus_per_actor=2, gpus_per_actor=0))
    assert RayExecutor(EngineSettings(kind="ray")).actors == 2  # as many as fit
    with pytest.raises(CurateError, match=r"in an actor on node \w+: Could not load .*Torch not compiled with CUDA"):
        embed(copy_ws(base_ws, tmp_path, "cuda"), "default", backend="torch", device="cuda", engine=RAY)
    with pytest.raises(CurateError, match=r"runs vLLM replicas on GPUs; the cluster at .* has none"):
        generate(copy_ws(base_ws, tmp_path, "vllm"), str(policy), iteration=1, backend="vllm", engine=RAY)
    # a fresh process (this one has joined the test cluster): an address nobody answers fails at once, in one line
    import subprocess
    import sys

    ws = copy_ws(base_ws, tmp_path)
    out = subprocess.run([sys.executable, "-c", "from curate.cli import main; main()", "embed", "-w", str(ws.root),
                          "--engine", "ray", "--ray-address", "127.0.0.1:1"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "could not reach the Ray cluster at 127.0.0.1:1" in out.stderr
    assert "RAY_ADDRESS" in out.stderr and "Traceback" not in out.stderr


def test_run_config_engine_section_is_checked_and_outside_the_config_hash():
    from curate.errors import CurateError
    from curate.run.config import parse

    plain = parse({"data": {"sources": ["demo"]}})
    ray_cfg = parse({"data": {"sources": ["demo"]}, "engine": {"kind": "ray", "address": "10.0.0.1:6379", "actors": 8}})
    assert (ray_cfg.engine.kind, ray_cfg.engine.actors, plain.engine.kind) == ("ray", 8, "local")
    assert ray_cfg.sha256 == plain.sha256  # where the work runs does not change what a run computes
    with pytest.raises(CurateError, match=r"\[engine\] kind must be one of 'local', 'ray'"):
        parse({"data": {"sources": ["demo"]}, "engine": {"kind": "spark"}})


def test_a_rerun_that_only_recovers_staged_shards_still_records_them(base_ws, tmp_path):
    """Every shard of a killed run was staged before the kill: the rerun has nothing to compute (no Ray is even
    started) and commits them, and its manifest says so."""
    done, ws = copy_ws(base_ws, tmp_path, "done"), copy_ws(base_ws, tmp_path, "staged")
    a = embed(done, "default", backend="torch")
    rows = query(done.root, "select text_hash, model_id, vector from embeddings order by text_hash")
    import polars as pl

    frame = pl.DataFrame({"text_hash": [r[0] for r in rows], "model_id": [r[1] for r in rows],
                          "vector": pl.Series([list(r[2]) for r in rows], dtype=pl.Array(pl.Float32, 384))})
    staging = Staging.of(ws, "embed", a.model_id)
    for i, part in enumerate((frame.head(200), frame.tail(120))):
        staging.write(f"s-killed-{i}", part, {"node": "killed-run", "backend": "torch"})
    r = embed(ws, "default", backend="torch", engine=RAY)
    assert (r.recovered, r.embedded) == (320, 0)
    m = manifest(ws, "embed")
    assert m["counts"]["recovered_from_staging"] == 320 and m["engine"]["kind"] == "local"
    assert vectors(ws) == vectors(done) and staging.done() == []
