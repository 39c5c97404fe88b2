"""Embeddings cache, backends, and scoring against hand-computed cosines on real rows."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import polars as pl
import pytest

from curate.embedding import embed
from curate.embedding.model import load_encoder, resolve
from curate.errors import CurateError
from curate.ingest import ingest
from curate.score import score
from curate.workspace import Workspace

from .conftest import SHARED_HH, query, scalar

N_PAIRS = 12


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """One ONNX export and fingerprint cache for the whole session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CURATE_CACHE", str(tmp_path_factory.mktemp("curate-cache")))
    yield
    mp.undo()


@pytest.fixture
def small_ws(tmp_path):
    """12 real pref pairs from the shared file, with 2 fake policy samples each in iteration 1."""
    if not SHARED_HH.exists():
        pytest.skip(f"needs the shared HH-RLHF file at {SHARED_HH}")
    with gzip.open(SHARED_HH, "rt", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(N_PAIRS)]
    src = tmp_path / "harmless-base" / "test.jsonl"
    src.parent.mkdir()
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ws = Workspace(tmp_path / "ws")
    ingest(ws, [str(src)])
    pairs = pl.read_parquet(ws.files("pairs")).sort("source_row")
    gens = pl.DataFrame(
        {
            "branch": "main",
            "iteration": 1,
            "pair_id": [p for p in pairs["pair_id"] for _ in range(2)],
            "sample": [0, 1] * pairs.height,
            # sample 0 echoes the chosen response's start, sample 1 is a refusal: distinct similarities
            "text": [t for c in pairs["chosen"] for t in (c[:80] + " indeed.", "I can't help with that.")],
            "policy": "test-policy",
            "params": "{}",
        }
    )
    with ws.transaction() as tx:
        tx.add("generations", gens)
    return ws


def test_second_run_embeds_nothing_and_loads_no_model(small_ws):
    first = embed(small_ws, shard_size=8)
    distinct = N_PAIRS * 2 + N_PAIRS + 1  # chosen, rejected, sample 0 per pair, one shared refusal
    assert (first.embedded, first.cached) == (distinct, 0)
    assert scalar(small_ws.root, "select count(*) from embeddings") == distinct
    assert scalar(small_ws.root, "select count(distinct text_hash) from embeddings") == distinct
    again = embed(small_ws)
    assert (again.embedded, again.cached, again.backend) == (0, distinct, None)


def test_a_new_model_embeds_again(small_ws, tmp_path):
    embed(small_ws, limit=3)
    folder = tmp_path / "my-model"
    shutil.copytree(resolve(None).folder, folder)
    other = embed(small_ws, str(folder))
    assert other.cached == 0 and other.embedded == other.distinct_texts
    ids = [r[0] for r in query(small_ws.root, "select model_id from embedding_models order by model_id")]
    assert len(ids) == 2 and ids[0].startswith("all-MiniLM-L6-v2-") and ids[1].startswith("my-model-")


def test_interrupted_run_resumes_where_it_stopped(small_ws):
    calls = []

    def progress(total):
        def advance(n):
            calls.append(n)  # once per batch; a shard of 5 texts is one batch here
            if len(calls) == 3:
                raise KeyboardInterrupt  # while the third shard is being encoded

        return advance

    with pytest.raises(KeyboardInterrupt):
        embed(small_ws, shard_size=5, progress=progress)
    assert scalar(small_ws.root, "select count(*) from embeddings") == 10  # two committed shards
    rest = embed(small_ws, shard_size=5)
    assert rest.cached == 10 and rest.embedded == rest.distinct_texts - 10
    assert scalar(small_ws.root, "select count(*) = count(distinct text_hash) from embeddings")


def test_auto_records_its_measured_choice(small_ws, cli):
    """`curate embed` with the packaged model measures the backends once, records them, then reuses the choice."""
    # --recalibrate: other tests of the session may have cached this machine's choice already
    r = cli("embed", "-w", small_ws.root, "--limit", "5", "-q", "--recalibrate")
    assert r.exit_code == 0, r.output
    r = cli("embed", "-w", small_ws.root, "--limit", "5")
    assert r.exit_code == 0, r.output
    manifests = small_ws.manifests("embed")
    assert sorted(m["backend_choice"]["source"] for m in manifests) == ["cached", "measured"]
    first = next(m for m in manifests if m["backend_choice"]["source"] == "measured")
    second = next(m for m in manifests if m["backend_choice"]["source"] == "cached")
    c = first["backend_choice"]
    assert c["gate_min_cosine"] == 0.999 and c["backend"] == first["backend"] and c["calibration_seconds"] > 0
    assert c["key"]["model_id"] == first["model_id"] and c["key"]["batch_size"] == 32
    assert c["key"]["candidates"] == ["torch", "onnx", "onnx-int8", "torch-bf16"]
    assert c["rule"].startswith("fastest candidate whose vectors agree with torch fp32") and c["decision"]
    tried = {b: m for b, m in c["candidates"].items() if m["error"] is None}
    assert {"torch", "onnx", "onnx-int8"} <= set(tried)  # onnxruntime and onnx are dependencies
    assert tried["torch"]["min_cosine"] == pytest.approx(1, abs=1e-5) and tried["onnx"]["min_cosine"] > 0.9999
    assert all(m["passed"] == (m["min_cosine"] >= 0.999) and m["round_seconds"] for m in tried.values())
    chosen, torch = tried[c["backend"]], tried["torch"]
    assert chosen["passed"]
    if c["backend"] == "torch":  # nothing through the gate was clearly (5%) faster than the incumbent
        assert all(m["texts_per_s"] < 1.05 * torch["texts_per_s"] for m in tried.values() if m["passed"])
    else:
        assert chosen["texts_per_s"] >= 1.05 * torch["texts_per_s"]
    # the second run skips the measurement and says so, with the same figures
    assert second["backend_choice"]["candidates"] == c["candidates"]
    assert f"{c['backend']}, calibrated before)" in r.stderr
    forced = embed(small_ws, backend="torch", limit=2)
    assert forced.backend_choice == {"backend": "torch", "source": "forced"}


def test_a_forced_int8_backend_writes_vectors_only_through_the_gate(small_ws):
    try:
        res = embed(small_ws, backend="onnx-int8", limit=2)
    except CurateError as e:  # on the CPUs measured so far (min cosine 0.90 to 0.975)
        assert "--backend onnx-int8: its vectors agree with torch fp32 only to cosine 0." in str(e)
        assert scalar(small_ws.root, "select count(*) from embeddings") == 0
    else:
        assert res.backend_choice["candidates"]["onnx-int8"]["min_cosine"] >= 0.999


def test_torch_bf16_agrees_with_fp32_within_the_gate(small_ws):
    texts = [r[0] for r in query(small_ws.root, "select chosen from pairs order by source_row")]
    ref = resolve(None)
    a = load_encoder(ref, "torch").encode(texts)
    b = load_encoder(ref, "torch-bf16").encode(texts)
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert float((a * b).sum(1).min()) >= 0.999


def test_onnx_and_torch_give_the_same_vectors(small_ws):
    texts = [r[0] for r in query(small_ws.root, "select chosen from pairs order by source_row")]
    ref = resolve(None)
    a = load_encoder(ref, "onnx").encode(texts)
    b = load_encoder(ref, "torch").encode(texts)
    assert a.shape == b.shape == (N_PAIRS, 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert float((a * b).sum(1).min()) > 0.99999


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_progress_moves_batch_by_batch(small_ws, backend):
    """`curate embed` showed 0/4580 for its whole first shard (issue 13): the encoders now report each batch."""
    texts = [r[0] for r in query(small_ws.root, "select chosen from pairs order by source_row")] * 3
    done: list[int] = []
    load_encoder(resolve(None), backend).encode(texts, batch_size=8, on_batch=done.append)
    assert sum(done) == len(texts) and len(done) > 1 and max(done) <= 32


def test_scores_match_a_hand_computed_cosine(small_ws):
    embed(small_ws, backend="torch")
    res = score(small_ws, 1)
    assert (res.pairs, res.samples) == (N_PAIRS, 2 * N_PAIRS)
    enc = load_encoder(resolve(None), "torch")
    rows = query(small_ws.root, """
        select p.chosen, p.rejected, g.text, s.pos_sim, s.neg_sim
        from sample_similarities s join pairs p using (pair_id)
        join generations g on g.pair_id = s.pair_id and g.sample = s.sample
        order by p.source_row, s.sample limit 4""")
    for chosen, rejected, gen, pos, neg in rows:
        c, r, g = enc.model.encode([chosen, rejected, gen])  # raw, unnormalised: cosine by hand
        cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
        assert pos == pytest.approx(cos(c, g), abs=1e-5)
        assert neg == pytest.approx(cos(r, g), abs=1e-5)


def test_multi_sample_aggregates_and_rescore_replaces(small_ws):
    embed(small_ws)
    score(small_ws, 1)
    score(small_ws, 1)  # rescoring replaces, never duplicates
    bad = query(small_ws.root, """
        with agg as (
            select pair_id, avg(pos_sim) m, max(pos_sim) x, avg(neg_sim) nm, max(neg_sim) nx, count(*) n
            from sample_similarities group by pair_id)
        select count(*) from similarities s join agg using (pair_id)
        where abs(s.pos_sim - m) > 1e-9 or abs(s.pos_sim_max - x) > 1e-9 or abs(s.neg_sim - nm) > 1e-9
           or abs(s.neg_sim_max - nx) > 1e-9 or s.n_samples <> n or n <> 2""")
    assert bad == [(0,)]
    assert scalar(small_ws.root, "select count(*) from similarities") == N_PAIRS


def test_bad_inputs_have_clear_messages(small_ws, monkeypatch):
    with pytest.raises(CurateError, match="Unknown embedding model 'nosuchmodel'"):
        embed(small_ws, "nosuchmodel")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CurateError,
                       match="Could not load embedding model 'nobody/no-such-model'.*Offline, use --model default"):
        embed(small_ws, "nobody/no-such-model")
    with pytest.raises(CurateError, match="No embeddings in the workspace yet: run `curate embed` first."):
        score(small_ws, 1)
    embed(small_ws, limit=5)
    with pytest.raises(CurateError, match="have no vector for model all-MiniLM-L6-v2-.*run `curate embed`"):
        score(small_ws, 1)
    with pytest.raises(CurateError, match="No generations for branch 'main', iteration 2"):
        score(small_ws, 2)


def test_dimension_mismatch_is_refused(small_ws):
    embed(small_ws, limit=2)
    files = small_ws.files("embedding_models")
    df = pl.read_parquet(files).with_columns(dim=pl.lit(768, dtype=pl.Int32))
    with small_ws.transaction() as tx:
        tx.replace("embedding_models")
        tx.add("embedding_models", df)
    with pytest.raises(CurateError, match="Dimension mismatch .* holds 768-d vectors, the model now gives 384-d"):
        embed(small_ws)


def test_cli_embed_and_score(small_ws, runner):
    from curate.cli import main

    r = runner.invoke(main, ["embed", "-w", str(small_ws.root), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["score", "-w", str(small_ws.root), "--iteration", "1"])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith(f"scored {N_PAIRS} pairs ({2 * N_PAIRS} samples) of branch main, iteration 1 "
                               "with all-MiniLM-L6-v2-")
    r = runner.invoke(main, ["sql", "-w", str(small_ws.root), "-f", "csv",
                             "select count(*) n, avg(pos_sim) > avg(neg_sim) from similarities where iteration = 1"])
    assert r.stdout.splitlines()[1].startswith(f"{N_PAIRS},")


def test_neighbours_of_a_known_query_with_the_real_model(small_ws):
    from curate.neighbors import neighbors

    embed(small_ws)
    # stored text: its own vector, so it comes first at cos 1; it is every pair's sample 1
    hits, index = neighbors(small_ws, text="I can't help with that.", k=3)
    assert index.size == N_PAIRS * 3 + 1
    top = hits.row(0, named=True)
    assert top["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert (top["roles"], top["n_pairs"]) == (["generation"], N_PAIRS)
    # a new text is embedded on the spot; a paraphrase of the refusal finds it first
    hits, again = neighbors(small_ws, text="Sorry, I cannot help you with that.", k=3)
    assert not again.built and hits["text"][0] == "I can't help with that."
    assert 0.6 < hits["similarity"][0] < 0.999
    assert hits["similarity"].to_list() == sorted(hits["similarity"].to_list(), reverse=True)
