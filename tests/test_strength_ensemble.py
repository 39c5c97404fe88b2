"""`curate strength --method ensemble` (issue 16; Secrets of RLHF II, section 2.2): M reward models per fold,
trained by curate's own trainer on tiny real models, out of fold, resumable model by model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.strength import StrengthSettings
from curate.strength.ensemble import ensemble_scores, model_seed, pair_inputs
from curate.strength.probe import fold_of
from curate.workspace import Workspace

from .conftest import query, write_jsonl
from .test_rm import CORPUS, good_bad_rows, tiny_lm

N = 10  # pref pairs: folds of 5 and 5 with K = 2


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """test_rm's one-layer Llama with a word-level tokenizer (the tiniest base the RM tests train)."""
    return tiny_lm(tmp_path_factory.mktemp("ens-base") / "lm", CORPUS)


@pytest.fixture
def ens_ws(tmp_path) -> Workspace:
    from curate.ingest import ingest

    src = write_jsonl(tmp_path / "data" / "harmless-base" / "train.jsonl", good_bad_rows(N))
    ws = Workspace(tmp_path / "ws")
    ingest(ws, [str(src)])
    return ws


def settings(base, **kw) -> StrengthSettings:
    return StrengthSettings(**({"method": "ensemble", "base": str(base), "models": 2, "folds": 2, "lr": 1e-3,
                                "batch_size": 4} | kw))


@pytest.fixture
def trainings(monkeypatch):
    """Every train_rm call of the run: (output folder name, the training rows it was given as pair_id ->
    (chosen, rejected)), read from its --data file before the real trainer runs."""
    import curate.train.rm as rm

    calls, real = [], rm.train_rm

    def recording(config, callbacks=None):
        rows = pl.read_parquet(config.data)
        calls.append((Path(config.output).name, {p: (c, r) for p, c, r in rows.select("pair_id", "chosen",
                                                                                      "rejected").iter_rows()},
                      config))
        return real(config, callbacks)

    monkeypatch.setattr(rm, "train_rm", recording)
    return calls


def model_d(folder: Path, pairs: pl.DataFrame) -> np.ndarray:
    """r(chosen) - r(rejected) of every pair by a kept checkpoint, as labelled in the workspace."""
    from curate.train.evaluate import score_pairs

    rc, rr = score_pairs(str(folder), {c: pairs[c].to_list() for c in ("prompt", "chosen", "rejected")}, 4)
    return np.asarray(rc) - np.asarray(rr)


def test_out_of_fold_scores_and_resume_model_by_model(base, ens_ws, tmp_path, trainings):
    s = settings(base)
    pairs, ids, features_id, counts = pair_inputs(ens_ws, s)
    assert pairs.columns == ["pair_id", "prompt", "chosen", "rejected"] and ids == sorted(ids) and len(ids) == N
    assert features_id.startswith("lm-") and counts["pairs"] == N
    bars = []

    def progress(label, total):
        bars.append([label, total, 0])
        return lambda n: bars[-1].__setitem__(2, bars[-1][2] + n)

    cache = tmp_path / "cache"
    d = ensemble_scores(pairs, s, progress, cache=cache, keep=True)

    assert d.shape == (2, N) and np.isfinite(d).all()
    assert bars == [[bars[0][0], 4, 4]] and "resume" in bars[0][0]
    fold = fold_of(N, 2, s.seed)
    assert sorted(np.bincount(fold)) == [5, 5]
    assert [name for name, _, _ in trainings] == ["fold0-model0", "fold0-model1", "fold1-model0", "fold1-model1"]
    for name, rows, config in trainings:
        k, m = int(name[4]), int(name[-1])
        # each model trained on exactly the other fold's pairs, at the seed derived for it
        assert set(rows) == {ids[i] for i in np.flatnonzero(fold != k)}
        assert config.seed == model_seed(s.seed, k, m) and (config.lr, config.batch_size) == (1e-3, 4)
        # and the scores of fold k are that model's: none of them is a pair it trained on
        held = np.flatnonzero(fold == k)
        assert not {ids[i] for i in held} & set(rows)
        np.testing.assert_allclose(d[m, held], model_d(cache / name, pairs)[held], rtol=1e-5, atol=1e-6)
    assert len({c.seed for _, _, c in trainings}) == 4
    assert not np.allclose(d[0], d[1])  # the M models differ (head init and batch order)

    # resume: one model's scores gone (its kept checkpoint stands for one a kill left): only it is trained again
    (cache / "fold1-model0.npy").unlink()
    again = ensemble_scores(pairs, s, None, cache=cache)
    assert [name for name, _, _ in trainings[4:]] == ["fold1-model0"]
    np.testing.assert_allclose(again, d, rtol=1e-5, atol=1e-6)  # the same seed trains the same model
    assert not (cache / "fold1-model0").exists() and not (cache / "fold1-train.parquet").exists()
    assert (cache / "fold0-model0").is_dir()  # kept by the first run; the rerun read its .npy and left it
    ensemble_scores(pairs, s, None, cache=cache)
    assert len(trainings) == 5  # everything finished: nothing trained


def test_flipped_pairs_train_and_score_swapped(base, ens_ws, tmp_path, trainings):
    s = settings(base, in_sample=True)
    pairs, ids, _, _ = pair_inputs(ens_ws, s)
    flipped = np.zeros(N, dtype=bool)
    flipped[[1, 6]] = True
    cache = tmp_path / "cache"
    d = ensemble_scores(pairs, s, None, flipped=flipped, cache=cache, keep=True)

    assert d.shape == (2, N) and [name for name, _, _ in trainings] == ["fold0-model0", "fold0-model1"]
    original = {p: (c, r) for p, c, r in pairs.select("pair_id", "chosen", "rejected").iter_rows()}
    for _, rows, _ in trainings:
        assert set(rows) == set(ids)  # in sample: every model trains on every pair
        for i, p in enumerate(ids):
            assert rows[p] == (original[p][::-1] if flipped[i] else original[p])
    for m in range(2):  # d in the scratch copy's orientation: a flipped pair's is minus its labelled one
        labelled = model_d(cache / f"fold0-model{m}", pairs)
        np.testing.assert_allclose(d[m], np.where(flipped, -labelled, labelled), rtol=1e-5, atol=1e-6)
    stored = pl.read_parquet(cache / "fold0-train.parquet")  # kept with keep
    assert stored.columns == ["pair_id", "prompt", "chosen", "rejected"]


def test_cli_stores_ensemble_rows_and_reuses_them(cli, base, ens_ws, trainings):
    r = cli("strength", "-w", ens_ws.root, "--method", "ensemble", "--base", base, "--models", 2, "--folds", 2,
            "--json", "-q")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["method"] == "ensemble" and out["pairs"] == N and not out["reused"]
    assert out["identity"].startswith("ensemble-lm-") and "-M2-K2-" in out["identity"]
    rows = query(ens_ws.root, "select method, identity, n_models, folds, features, count(*) from strength "
                              "group by all")
    assert rows == [("ensemble", out["identity"], 2, 2, out["features"], N)]
    # the paper's training settings reached the trainer (section 2.2 / appendix: lr 5e-6, batch 32, one epoch)
    assert {(c.lr, c.batch_size, c.epochs) for _, _, c in trainings} == {(5e-6, 32, 1.0)}
    # the cache keeps each model's scores and nothing as large as a model
    cache = ens_ws.root / "strength" / out["identity"]
    assert sorted(p.name for p in cache.iterdir()) == [f"fold{k}-model{m}.npy" for k in (0, 1) for m in (0, 1)]

    r = cli("strength", "-w", ens_ws.root, "--method", "ensemble", "--base", base, "--models", 2, "--folds", 2,
            "--json", "-q")
    assert r.exit_code == 0 and json.loads(r.stdout)["reused"] and len(trainings) == 4


def test_cli_inject_flips_with_the_ensemble(cli, base, ens_ws, trainings):
    r = cli("strength", "-w", ens_ws.root, "--method", "ensemble", "--base", base, "--models", 2, "--in-sample",
            "--inject-flips", 0.2, "--json", "-q")
    assert r.exit_code == 0, r.output
    inj = json.loads(r.stdout)["injected"]
    assert (inj["flipped"], inj["pairs"], inj["k"]) == (2, N, 2) and 0 <= inj["auroc"] <= 1
    assert query(ens_ws.root, "select count(*) from strength") == [(0,)]  # nothing stored
    # the planted flips are in the training labels: two pairs arrive swapped
    original = dict(query(ens_ws.root, "select pair_id, chosen from pairs"))
    assert all(sum(rows[p][0] != original[p] for p in rows) == 2 for _, rows, _ in trainings)


def test_bad_inputs(cli, base, ens_ws, tmp_path, trainings):
    def err(*args):
        r = cli("strength", "-w", ens_ws.root, "--method", "ensemble", *args)
        assert r.exit_code == 1, r.output
        return r.stderr

    assert "--method ensemble trains reward models: name the model they start from with --base" in err()
    assert "--models 1: the standard deviation needs at least 2 models" in err("--base", base, "--models", 1)
    assert "--folds 1: out-of-fold scoring needs at least 2 folds" in err("--base", base, "--folds", 1)
    assert "10 pref pairs are too few for 6 folds" in err("--base", base, "--folds", 6)
    assert "Base model path ./nowhere does not exist" in err("--base", "./nowhere")
    # a workspace whose pairs all went to SFT has nothing to measure
    from curate.ingest import ingest

    src = write_jsonl(tmp_path / "sft" / "harmless-base" / "train.jsonl", good_bad_rows(4))
    sft_only = Workspace(tmp_path / "sft-ws")
    ingest(sft_only, [str(src)], sft_fraction=1.0)
    r = cli("strength", "-w", sft_only.root, "--method", "ensemble", "--base", base)
    assert r.exit_code == 1 and "no preference pairs (role 'pref')" in r.stderr and "`curate ingest`" in r.stderr
    assert trainings == []
