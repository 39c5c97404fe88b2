"""`curate check` on a sound workspace and on one with a truncated, a missing, a rewritten and a wrongly-shaped file;
`--repair` for a derived table and the advice for `pairs`; readers that meet a damaged file."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate.integrity import file_record
from curate.workspace import Workspace

from .conftest import hand_scored_ws, query


@pytest.fixture
def cws(cli, tmp_path) -> Workspace:
    """Ten hand-scored pairs, a subset, one model's embeddings (model_id m-1, named tiny-embedder) and a `runs` row of
    a done score step."""
    w = hand_scored_ws(cli, tmp_path)
    r = cli("filter", "-w", w.root, "-s", "positive", "--eps", "0.2", "-i", "1", "--name", "kept", "-q")
    assert r.exit_code == 0, r.output
    now = datetime.now(timezone.utc)
    with w.transaction() as tx:
        vectors = pl.Series([[1.0, 0.0], [0.0, 1.0]], dtype=pl.Array(pl.Float32, 2))
        tx.add("embeddings", pl.DataFrame({"text_hash": ["a", "b"], "model_id": "m-1", "vector": vectors}), key="m-1")
        tx.add("embedding_models", pl.DataFrame({"model_id": ["m-1"], "name": ["tiny-embedder"], "revision": [None],
                                                 "weights_sha256": ["x"], "pooling": ["mean"], "max_seq_length": [8],
                                                 "dim": [2], "identity": ["{}"], "created_at": [now]}))
        tx.add("runs", pl.DataFrame({"run_id": ["r1"], "step": ["score"], "branch": ["main"], "iteration": [1],
                                     "status": ["done"], "inputs": ["{}"], "outputs": ["{}"], "config_sha256": ["x"],
                                     "started_at": [now], "finished_at": [now], "seconds": [1.0], "error": [None]}))
    return w


def checked(cli, w, *extra):
    r = cli("check", "-w", w.root, "--json", *extra)
    return r.exit_code, json.loads(r.stdout)


def problems(report):
    return {(p["table"], p["problem"]) for t in report["tables"].values() for p in t["problems"]}


def test_a_sound_workspace_checks_clean_with_every_file_recorded(cws, cli):
    code, report = checked(cli, cws)
    assert code == 0 and report["ok"] and report["damaged"] == 0 and report["unverified"] == 0
    state = cws.state()
    live = [r for rels in state["tables"].values() for r in rels]
    assert report["files"] == len(live) and sorted(state["files"]) == sorted(live)
    rel = live[0]
    assert state["files"][rel] == file_record(cws.tables_dir / rel)
    r = cli("check", "-w", cws.root)
    assert r.exit_code == 0 and "sound: every live file is what its commit recorded." in r.stdout


def test_truncated_missing_rewritten_and_wrong_schema_files_are_each_named(cws, cli):
    sims, emb, subsets, pairs = (cws.files(t)[0] for t in ("similarities", "embeddings", "subsets", "pairs"))
    sims.write_bytes(sims.read_bytes()[:100])  # a bad copy: truncated
    emb.unlink()  # missing
    data = bytearray(subsets.read_bytes())
    data[40] ^= 0xFF  # same size, one flipped bit
    subsets.write_bytes(bytes(data))
    # a file of another table where pairs should be, recorded as committed: only the schema gives it away
    pl.DataFrame({"source": ["x"], "line": [1]}).write_parquet(pairs)
    state = cws.state()
    state["files"][pairs.relative_to(cws.tables_dir).as_posix()] = file_record(pairs)
    cws.state_path.write_text(json.dumps(state))

    code, report = checked(cli, cws)
    assert code == 1 and not report["ok"] and report["damaged"] == 4
    assert problems(report) == {("similarities", "size"), ("embeddings", "missing"), ("subsets", "checksum"),
                                ("pairs", "schema")}
    assert "no column pair_id" in report["tables"]["pairs"]["problems"][0]["detail"]
    emb_affects = report["tables"]["embeddings"]["affects"]
    assert "similarities main-it2-m-1 (scored with model m-1)" in emb_affects  # it1 is damaged itself
    assert "run r1: step score main/it1 (done)" in emb_affects
    assert report["tables"]["similarities"]["advice"] == "`curate score -i 1 --branch main --model tiny-embedder`"
    assert report["tables"]["embeddings"]["advice"].startswith("`curate embed --model tiny-embedder` embeds the "
                                                               "dropped texts again")

    r = cli("check", "-w", cws.root)
    assert r.exit_code == 1 and "4 damaged or missing file(s)." in r.stdout
    assert "`curate check --repair` sets the damaged files aside; then `curate score -i 1" in r.stdout
    # --quick skips the SHA-256: the flipped bit inside a readable file goes unseen, the rest is still found
    code, quick = checked(cli, cws, "--quick")
    assert code == 1 and ("subsets", "checksum") not in problems(quick) and len(problems(quick)) == 3


def test_readers_meeting_a_damaged_file_name_the_table_and_point_to_check(cws, cli):
    sims = cws.files("similarities")[0]
    sims.write_bytes(sims.read_bytes()[:100])
    for args in (["sql", "select count(*) from similarities"], ["info"]):
        r = cli(*args, "-w", cws.root)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert r.stderr.startswith(f"Error: table similarities is damaged: reading {sims} failed (Invalid Input "
                                   "Error: No magic bytes found at end of file)."), r.stderr
        assert f"Run `curate check -w {cws.root}`" in r.stderr and r.stderr.count("\n") == 1
    sims.unlink()
    r = cli("sql", "select count(*) from similarities", "-w", cws.root)
    assert r.exit_code == 1 and "table similarities is damaged" in r.stderr and "(it is missing)" in r.stderr


def test_repair_sets_a_derived_tables_damaged_file_aside_and_says_what_recomputes_it(cws, cli):
    bad = cws.files("similarities", key="main-it1-m-1")[0]
    torn = bad.read_bytes()[:100]
    bad.write_bytes(torn)
    other = cws.files("similarities", key="main-it2-m-1")

    r = cli("check", "-w", cws.root, "--repair")
    assert r.exit_code == 0, r.output
    assert "similarities: to rebuild, `curate score -i 1 --branch main --model tiny-embedder`" in r.stdout
    assert f"repaired: dropped {bad.relative_to(cws.tables_dir)} from the live state (moved to " in r.stdout
    moved = list((cws.root / "quarantine").rglob(bad.name))
    assert len(moved) == 1 and moved[0].read_bytes() == torn and not bad.exists()  # set aside, never deleted
    assert cws.files("similarities") == other
    assert query(cws.root, "select count(*) from similarities") == [(1,)]  # readers work again
    code, report = checked(cli, cws)
    assert code == 0 and report["ok"]
    # the next writer keeps the quarantine: it is outside tables/, where stray files are collected
    assert cli("filter", "-w", cws.root, "-s", "positive", "--eps", "0.2", "-i", "2", "-q").exit_code == 0
    assert moved[0].exists()


def test_pairs_advice_names_the_sources_to_ingest_again_and_that_restores_them(cws, cli):
    before = query(cws.root, "select pair_id, role from pairs order by pair_id")
    pairs = cws.files("pairs")[0]
    pairs.write_bytes(pairs.read_bytes()[:-30])
    code, report = checked(cli, cws)
    advice = report["tables"]["pairs"]["advice"]
    assert code == 1 and advice.startswith(f"`curate ingest {cws.src} --sft-fraction 0.0 --seed 0`"), advice
    assert "table similarities" in report["tables"]["pairs"]["affects"]

    r = cli("check", "-w", cws.root, "--repair", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["tables"]["pairs"]["advice"] == advice
    assert query(cws.root, "select count(*) from pairs") == [(0,)]
    assert cli("ingest", cws.src, "--sft-fraction", "0.0", "--seed", "0", "-w", cws.root, "-q").exit_code == 0
    assert query(cws.root, "select pair_id, role from pairs order by pair_id") == before
    assert checked(cli, cws)[0] == 0


def test_an_older_workspace_without_checksums_opens_and_repair_records_them(cws, cli):
    state = cws.state()
    del state["files"]
    cws.state_path.write_text(json.dumps(state))
    code, report = checked(cli, cws)
    n = report["files"]
    assert code == 0 and report["ok"] and report["unverified"] == n
    r = cli("check", "-w", cws.root)
    assert f"{n} file(s) are unverified" in r.stdout
    assert query(cws.root, "select count(*) from pairs") == [(10,)]
    r = cli("check", "-w", cws.root, "--repair")
    assert r.exit_code == 0 and f"recorded the size and SHA-256 of {n} unverified file(s)" in r.stdout
    code, report = checked(cli, cws)
    assert code == 0 and report["unverified"] == 0
    assert not (cws.root / "quarantine").exists()  # nothing was damaged: nothing set aside


def test_a_truncated_unrecorded_file_is_still_found_by_opening_it(cws, cli):
    state = cws.state()
    del state["files"]
    cws.state_path.write_text(json.dumps(state))
    sims = cws.files("similarities")[0]
    sims.write_bytes(sims.read_bytes()[:-10])
    code, report = checked(cli, cws)
    assert code == 1 and problems(report) == {("similarities", "unreadable")}
