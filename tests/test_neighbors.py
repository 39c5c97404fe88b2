"""`curate neighbors`: a FAISS index over hand-made vectors, so every expected answer is known."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest

from curate import neighbors as nb
from curate.errors import CurateError
from curate.workspace import Workspace

MODEL_ID = "hand-made-0000000000"
DIM = 4


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def unit(*xs: float) -> list[float]:
    v = np.asarray(xs, dtype=np.float64)
    return (v / np.linalg.norm(v)).tolist()


def add_vectors(ws: Workspace, vectors: dict[str, list[float]], register: bool = False, dim: int = DIM) -> None:
    with ws.transaction() as tx:
        tx.add("embeddings", pl.DataFrame({
            "text_hash": [md5(t) for t in vectors],
            "model_id": MODEL_ID,
            "vector": pl.Series(list(vectors.values()), dtype=pl.Array(pl.Float32, dim)),
        }), key=MODEL_ID)
        if register:
            tx.add("embedding_models", pl.DataFrame({
                "model_id": [MODEL_ID], "name": ["hand-made"], "revision": [None], "weights_sha256": ["0"],
                "pooling": ["mean"], "max_seq_length": [8], "dim": [DIM], "identity": ["{}"],
                "created_at": [None],
            }))


@pytest.fixture
def vec_ws(filled_ws) -> Workspace:
    """The six pairs of hh_file ('good answer i' / 'bad answer i'), vectors placed by hand:
    good answers near axis 0 (good answer 0 exactly on it, the others tilting away with i), bad
    answers near axis 1, and a generation of pair 0 on the diagonal."""
    ws = Workspace(filled_ws)
    vectors = {}
    for i in range(6):
        vectors[f" good answer {i}"] = unit(1.0, 0.0, 0.1 * i, 0.0)
        vectors[f" bad answer {i}"] = unit(0.0, 1.0, 0.0, 0.1 * i)
    pair0 = ws.connect().execute("select pair_id from pairs where chosen = ' good answer 0'").fetchall()[0][0]
    with ws.transaction() as tx:
        tx.add("generations", pl.DataFrame({
            "branch": ["main"], "iteration": [1], "pair_id": [pair0], "sample": [0], "text": ["half good, half bad"],
            "policy": ["p"], "params": ["{}"],
        }))
    vectors["half good, half bad"] = unit(1.0, 1.0, 0.0, 0.0)
    add_vectors(ws, vectors, register=True)
    ws.pair0 = pair0
    return ws


def test_pair_query_ranks_by_cosine_and_leaves_out_itself(vec_ws):
    hits, index = nb.neighbors(vec_ws, pair_id=vec_ws.pair0, k=3)
    assert index.kind == "flat" and index.size == 13 and index.built
    assert hits["text"].to_list() == [" good answer 1", " good answer 2", " good answer 3"]
    expected = [float(np.dot(unit(1, 0, 0, 0), unit(1, 0, 0.1 * i, 0))) for i in (1, 2, 3)]
    assert hits["similarity"].to_list() == pytest.approx(expected, abs=1e-4)
    assert hits["rank"].to_list() == [1, 2, 3]
    assert hits["roles"].to_list() == [["chosen"]] * 3


def test_text_query_uses_the_stored_vector_without_a_model(vec_ws, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("a stored text must not load a model")

    monkeypatch.setattr("curate.embedding.model.load_encoder", no_model)
    hits, _ = nb.neighbors(vec_ws, text="half good, half bad", k=3)
    # the stored text itself comes first (cos 1), then the two axes it sits between
    assert hits["similarity"][0] == pytest.approx(1.0, abs=1e-5)
    assert hits["roles"].to_list()[0] == ["generation"] and hits["pair_ids"].to_list()[0] == [vec_ws.pair0]
    assert set(hits["text"][1:]) == {" good answer 0", " bad answer 0"}


def test_rejected_and_generation_roles(vec_ws):
    hits, _ = nb.neighbors(vec_ws, pair_id=vec_ws.pair0[:8], role="rejected", k=1)
    assert hits["text"].to_list() == [" bad answer 1"]
    hits, _ = nb.neighbors(vec_ws, pair_id=vec_ws.pair0, role="generation", iteration=1, k=2)
    assert set(hits["text"]) == {" good answer 0", " bad answer 0"}


def test_index_is_persisted_and_rebuilt_when_vectors_change(vec_ws):
    _, first = nb.neighbors(vec_ws, pair_id=vec_ws.pair0, k=1)
    _, second = nb.neighbors(vec_ws, pair_id=vec_ws.pair0, k=1)
    assert first.built and not second.built
    folder = nb.index_dir(vec_ws, MODEL_ID)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n"] == 13 and meta["kind"] == "flat" and (folder / meta["index_file"]).exists()
    # a new text lands right on the query: the index must be rebuilt and find it
    with vec_ws.transaction() as tx:
        tx.add("generations", pl.DataFrame({
            "branch": ["main"], "iteration": [2], "pair_id": [vec_ws.pair0], "sample": [0], "text": ["twin"],
            "policy": ["p"], "params": ["{}"],
        }))
    add_vectors(vec_ws, {"twin": unit(1, 0, 0, 0)})
    hits, third = nb.neighbors(vec_ws, pair_id=vec_ws.pair0, k=1)
    assert third.built and third.size == 14
    assert hits["text"].to_list() == ["twin"] and hits["roles"].to_list()[0] == ["generation"]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        ["meta.json", *(json.loads((folder / "meta.json").read_text())[k] for k in ("index_file", "ids_file"))])


def test_ivf_index_finds_what_exact_search_finds(tmp_path):
    """Approximate search on 4,000 clustered vectors: recall@10 against the exact index."""
    ws = Workspace(tmp_path / "ws").init()
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(40, 32))
    x = centers[rng.integers(0, 40, 4000)] + 0.3 * rng.normal(size=(4000, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    add_vectors(ws, {f"text {i}": x[i].tolist() for i in range(4000)}, dim=32)
    flat = nb.load_index(ws, MODEL_ID, "flat")
    ivf = nb.load_index(ws, MODEL_ID, "ivf")
    assert (flat.kind, ivf.kind) == ("flat", "ivf") and ivf.built
    recalls = []
    for q in x[:50]:
        exact = set(nb.search(flat, q, 10)["text_hash"])
        approx = set(nb.search(ivf, q, 10)["text_hash"])
        recalls.append(len(exact & approx) / 10)
    assert np.mean(recalls) >= 0.9
    assert not nb.load_index(ws, MODEL_ID, "auto").built  # the saved ivf index serves `auto` too


def test_bad_queries(vec_ws):
    with pytest.raises(CurateError, match="one of them"):
        nb.neighbors(vec_ws, k=3)
    with pytest.raises(CurateError, match="No pair with id 'ffff"):
        nb.neighbors(vec_ws, pair_id="ffff", k=3)
    with pytest.raises(CurateError, match="-k must be at least 1"):
        nb.neighbors(vec_ws, pair_id=vec_ws.pair0, k=0)
    with pytest.raises(CurateError, match="has no generation"):
        nb.neighbors(vec_ws, pair_id=vec_ws.pair0, role="generation", iteration=7)
    ids = sorted(r[0] for r in vec_ws.connect().execute("select pair_id from pairs").fetchall())
    common = [next(i for i in range(32) if a[i] != b[i]) for a, b in zip(ids, ids[1:])]
    at = int(np.argmax(common))
    assert common[at] > 0  # the six fixed pair ids include two with a shared prefix
    with pytest.raises(CurateError, match="matches several pairs"):
        nb.neighbors(vec_ws, pair_id=ids[at][: common[at]], k=3)
    with pytest.raises(CurateError, match="pair id is empty"):
        nb.neighbors(vec_ws, pair_id=" ", k=3)


def test_no_vectors_yet(filled_ws):
    with pytest.raises(CurateError, match="run `curate embed` first"):
        nb.neighbors(Workspace(filled_ws), text="hello", k=3)


def test_cli_json_and_table(cli, vec_ws):
    r = cli("neighbors", "-w", vec_ws.root, "--pair-id", vec_ws.pair0, "-k", "2", "-f", "json", "-q")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["text"] for row in rows] == [" good answer 1", " good answer 2"]
    assert set(rows[0]) == {"rank", "similarity", "roles", "n_pairs", "pair_ids", "text", "text_hash"}
    r = cli("neighbors", "-w", vec_ws.root, "--pair-id", vec_ws.pair0, "-k", "2")
    assert r.exit_code == 0 and "good answer 1" in r.stdout and "flat index over 13 vectors" in r.stderr
    r = cli("neighbors", "-w", vec_ws.root, "--pair-id", "nope")
    assert r.exit_code != 0 and "No pair with id 'nope'" in r.stderr
