"""End to end on real rows: the shared HH-RLHF pairs and their real SmolLM2 generations, through the
CLI as a user runs it: ingest -> generations import -> embed -> score -> filter -> explain -> report ->
export -> load_dataset."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from .conftest import SHARED_HH, query

SHARED_GENS = SHARED_HH.parent / "test.generations.smollm2-135m.jsonl"
N = 80


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    if not (SHARED_HH.is_file() and SHARED_GENS.is_file()):
        pytest.skip(f"needs the shared HH-RLHF files at {SHARED_HH.parent} (clone with ../shared beside it)")
    d = tmp_path_factory.mktemp("real") / "harmless-base"
    d.mkdir()
    with gzip.open(SHARED_HH, "rt", encoding="utf-8") as fh:
        (d / "test.jsonl").write_text("".join(next(fh) for _ in range(N)), encoding="utf-8")
    with open(SHARED_GENS, encoding="utf-8") as fh:
        (d / "gens.jsonl").write_text("".join(next(fh) for _ in range(N)), encoding="utf-8")
    return d


def test_the_frft_selection_end_to_end(cli, real_files, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    ok = lambda r: r.exit_code == 0 or pytest.fail(r.output)  # noqa: E731
    ok(cli("ingest", real_files / "test.jsonl", "-w", ws, "-q"))
    ok(cli("generations", "import", real_files / "gens.jsonl", "-w", ws, "-i", "1", "--policy", "smollm2-135m", "-q"))
    n_gens = query(ws, "select count(*) from generations")[0][0]
    assert n_gens >= N - 2  # the diverged_early rows cannot match by prompt; they go to rejects
    ok(cli("embed", "-w", ws, "-q"))
    ok(cli("score", "-w", ws, "-i", "1", "-q"))
    scored = query(ws, "select count(*), avg(pos_sim), avg(neg_sim) from similarities")[0]
    assert scored[0] >= N - 4 and -1 < scored[1] < 1 and -1 < scored[2] < 1

    r = cli("filter", "-w", ws, "--all-strategies", "--eps", "0.6", "--size", "20", "--json", "-q")
    ok(r)
    made = {x["name"]: x for x in json.loads(r.stdout)}
    assert set(made) == {f"frft-{s}-it1" for s in ("overall", "split-even", "negative", "positive")}
    # positive = top 20 by pos_sim above 0.4: check it against the similarities table directly
    expect = [p for p, in query(ws, "select pair_id from similarities where pos_sim > 0.4 "
                                    "order by pos_sim desc, pair_id limit 20")]
    got = [p for p, in query(ws, "select pair_id from subset_pairs join subsets using (subset_id) "
                                 "where name = 'frft-positive-it1' order by rank")]
    assert got == expect and len(got) > 0

    first = got[0]
    r = cli("explain", first, "--subset", "frft-positive-it1", "-w", ws, "--json")
    ok(r)
    assert json.loads(r.stdout)["reason"].startswith("picked by pos at rank 1 of")

    ok(cli("report", "cdf", "-w", ws, "-i", "1", "--eps", "0.6"))
    assert (ws / "reports" / "cdf-it1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ok(cli("report", "html", "-w", ws, "--eps", "0.6"))
    assert "frft-split-even-it1" in (ws / "reports" / "report.html").read_text(encoding="utf-8")

    ok(cli("export", "frft-positive-it1", "-w", ws, "-q"))
    from datasets import load_dataset

    # a cache of its own: datasets' shared cache served a stale copy of an earlier export of this path
    ds = load_dataset(str(tmp_path / "datasets_out" / "frft-positive-it1"), cache_dir=str(tmp_path / "hf"))["train"]
    assert ds["pair_id"] == expect
    row = ds[0]
    full = query(ws, "select chosen_full from pairs where pair_id = $p", {"p": row["pair_id"]})[0][0]
    assert row["prompt"] + row["chosen"] == full
    assert np.isclose(row["pos_sim"], query(ws, "select pos_sim from similarities where pair_id = $p",
                                            {"p": row["pair_id"]})[0][0])
