"""`curate generations import|list` (issue 3): matching by pair_id or prompt, rejects with reasons,
sample numbering, policy guard and --overwrite, idempotent re-import, Parquet, provenance, messages."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.cli import main
from curate.commands.generations import generations
from curate.errors import CurateError
from curate.generations import import_generations
from curate.workspace import Workspace

from .conftest import SHARED_HH, query, scalar, transcript, write_jsonl

SHARED_GENS = SHARED_HH.parent / "test.generations.smollm2-135m.jsonl"


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """The command group as cli.py registers it (a no-op once cli.py does)."""
    if "generations" not in main.commands:
        main.add_command(generations)
    yield


def prompt(i: int) -> str:
    """pairs.prompt of the i-th pair of the hh_file fixture."""
    return transcript(f"question {i}?") + "\n\nAssistant:"


def pair_id(ws, i: int) -> str:
    return scalar(ws, "select pair_id from pairs where prompt = $p", {"p": prompt(i)})


def gens(ws, where: str = "true") -> list[tuple]:
    """(iteration, source_row of the pair, sample, text, policy) for the stored generations."""
    return query(ws, f"""select g.iteration, p.source_row, g.sample, g.text, g.policy
                         from generations g join pairs p using (pair_id) where {where}
                         order by g.branch, g.iteration, p.source_row, g.sample""")


def rejects(ws) -> list[tuple]:
    return query(ws, "select line, reason from rejects order by line, reason")


# -- the shared HH-RLHF generations --------------------------------------------------------------
@pytest.fixture(scope="module")
def real_gens(real_ws):
    if not SHARED_GENS.is_file():
        pytest.skip(f"the shared generations file is not at {SHARED_GENS} (clone the repo with ../shared beside it)")
    return SHARED_GENS


def test_real_generations_import_by_prompt(tmp_path, real_ws, real_gens):
    """The shared file has 2,312 rows (fields row, prompt, generation), one per pair of the test split.

    - 4 rows match no pair: rows 1254, 1688, 1952 and 2036 are `diverged_early` pairs whose prompt in the
      generations file runs to the chosen transcript's last '\\n\\nAssistant:', while pairs.prompt stops at
      the last turn chosen and rejected share. The fifth diverged_early pair (row 1950) diverges only in
      the rejected transcript's later turns, so both split at the same point and it matches.
    - 2 prompts are each shared by 2 pairs (rows 250/1262 and 1452/1483), and the file has a generation
      for each of the 4 rows; matched by prompt, each of those 4 pairs gets both generations of its prompt
      as samples 0 and 1: 2,308 matched rows + 4 extra = 2,312 generations for 2,308 pairs.
    """
    ws = tmp_path / "ws"
    # a copy of the session's read-only workspace, so this test can write
    import shutil

    shutil.copytree(real_ws, ws)
    res = import_generations(Workspace(ws), real_gens, iteration=1, policy="smollm2-135m")
    assert res.match == "prompt"
    assert (res.read, res.imported, res.pairs) == (2312, 2312, 2308)
    assert dict(res.rejected) == {"unmatched_generation": 4}
    assert (res.shared_prompts, res.shared_rows, res.shared_extra) == (2, 4, 4)

    unmatched = query(ws, "select line, reason, json_extract(raw, '$.row')::int from rejects "
                          "where ingest_id = $id order by line", {"id": res.import_id})
    assert unmatched == [(line + 1, "unmatched_generation", line) for line in (1254, 1688, 1952, 2036)]
    assert query(ws, """select list(source_row order by source_row) from pairs
                        where list_contains(flags, 'diverged_early')""")[0][0] == [1254, 1688, 1950, 1952, 2036]
    # every other pair has its own row's generation as sample 0 (`row` of the file = pairs.source_row)
    file = pl.read_ndjson(real_gens)
    stored = pl.DataFrame(gens(ws), schema=["iteration", "row", "sample", "generation", "policy"], orient="row")
    own = stored.join(file.select("row", "generation"), on=["row", "generation"], how="semi")
    assert own.height == 2308
    assert sorted(stored.filter(pl.col("sample") == 1)["row"].to_list()) == [250, 1262, 1452, 1483]
    assert scalar(ws, "select count(*) from generations where params = '{}'") == 2312


def test_real_generations_cli_summary(cli, tmp_path, shared_hh, real_gens):
    ws = tmp_path / "ws"
    assert cli("ingest", shared_hh, "-w", ws, "-q").exit_code == 0
    r = cli("generations", "import", real_gens, "--iteration", "1", "--policy", "smollm2-135m", "-w", ws)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[:3] == [
        "imported 2,312 generations for 2,308 pairs (branch main, iteration 1, policy smollm2-135m, "
        "matched by prompt); 4 rows unmatched -> rejects",
        "  2 prompts are shared by several pairs: their 4 generations went to each of those pairs (+4 rows)",
        f"  rejects: unmatched_generation 4  (see: curate sql \"select * from rejects where source = '{real_gens}'\")",
    ]
    assert lines[3].startswith(f"  workspace: {ws.resolve()}  manifest: generations-")
    assert len(lines) == 4


# -- matching -----------------------------------------------------------------------------------
def test_import_by_pair_id_is_detected(filled_ws, tmp_path):
    rows = [{"pair_id": pair_id(filled_ws, i), "text": f"sampled {i}"} for i in (0, 2, 4)]
    res = import_generations(Workspace(filled_ws), write_jsonl(tmp_path / "g.jsonl", rows), iteration=1, policy="p")
    assert res.match == "pair_id"
    assert (res.read, res.imported, res.pairs, dict(res.rejected)) == (3, 3, 3, {})
    assert gens(filled_ws) == [(1, i, 0, f"sampled {i}", "p") for i in (0, 2, 4)]
    assert scalar(filled_ws, "select count(*) from rejects") == 0


def test_match_prompt_forced_on_rows_with_both_keys(filled_ws, tmp_path):
    rows = [{"pair_id": "not-a-pair", "prompt": prompt(1), "generation": "g"}]
    path = write_jsonl(tmp_path / "g.jsonl", rows)
    with pytest.raises(CurateError, match="none of the 1 rows matches a pair"):
        import_generations(Workspace(filled_ws), path, iteration=1, policy="p")
    res = import_generations(Workspace(filled_ws), path, iteration=1, policy="p", match="prompt")
    assert (res.match, res.imported) == ("prompt", 1)


def test_prompt_shared_by_several_pairs_gives_each_the_generation(cli, ws, tmp_path):
    from .conftest import hh_row

    data = write_jsonl(tmp_path / "d" / "s" / "train.jsonl",
                       [hh_row("same?", "yes", "no"), hh_row("same?", "sure", "never"), hh_row("other?", "a", "b")])
    assert cli("ingest", data, "-w", ws, "-q").exit_code == 0
    p = transcript("same?") + "\n\nAssistant:"
    res = import_generations(Workspace(ws), write_jsonl(tmp_path / "g.jsonl", [{"prompt": p, "generation": "hmm"}]),
                             iteration=1, policy="p")
    assert (res.imported, res.pairs, res.shared_prompts, res.shared_rows, res.shared_extra) == (2, 2, 1, 1, 1)
    assert gens(ws) == [(1, 0, 0, "hmm", "p"), (1, 1, 0, "hmm", "p")]


# -- samples --------------------------------------------------------------------------------------
def test_samples_numbered_per_pair_in_file_order_and_list_rows(filled_ws, tmp_path):
    rows = [
        {"prompt": prompt(0), "generation": "a0"},
        {"prompt": prompt(1), "generation": ["b0", "b1", "b2"]},  # one row, three samples (vLLM n=3)
        {"prompt": prompt(0), "generation": "a1"},
        {"prompt": prompt(1), "generation": "b3"},
        {"prompt": prompt(2), "generation": "c5", "sample": 5},  # given samples are kept
        {"prompt": prompt(2), "generation": "c5 again", "sample": 5},
        {"prompt": prompt(3), "generation": "d", "sample": -1},
        {"prompt": prompt(3), "generation": ["d0", "d1"], "sample": 0},
    ]
    res = import_generations(Workspace(filled_ws), write_jsonl(tmp_path / "g.jsonl", rows), iteration=1, policy="p")
    assert gens(filled_ws) == [
        (1, 0, 0, "a0", "p"), (1, 0, 1, "a1", "p"),
        (1, 1, 0, "b0", "p"), (1, 1, 1, "b1", "p"), (1, 1, 2, "b2", "p"), (1, 1, 3, "b3", "p"),
        (1, 2, 5, "c5", "p"),
    ]
    assert dict(res.rejected) == {"duplicate_generation": 1, "invalid_field:sample": 2}
    assert rejects(filled_ws) == [(6, "duplicate_generation"), (7, "invalid_field:sample"), (8, "invalid_field:sample")]
    assert query(filled_ws, "select raw from rejects where line = 7") == [(json.dumps(rows[6]),)]


# -- rejects --------------------------------------------------------------------------------------
def test_bad_rows_go_to_rejects_with_reasons(filled_ws, tmp_path):
    rows = [
        {"prompt": prompt(0), "generation": "fine"},
        {"prompt": prompt(1), "generation": "  \n "},
        '{"prompt": "broken',
        {"generation": "no key"},
        {"prompt": prompt(2)},
        {"prompt": 7, "generation": "x"},
        {"prompt": prompt(3), "generation": 12},
        {"prompt": prompt(4), "generation": ["ok", ""]},
        {"prompt": "\n\nHuman: nobody asked this\n\nAssistant:", "generation": "x"},
        [1, 2],
    ]
    res = import_generations(Workspace(filled_ws), write_jsonl(tmp_path / "g.jsonl", rows), iteration=1, policy="p")
    assert (res.read, res.imported) == (10, 2)
    assert gens(filled_ws) == [(1, 0, 0, "fine", "p"), (1, 4, 0, "ok", "p")]
    assert query(filled_ws, "select line, reason, detail, ingest_id = $id from rejects order by line",
                 {"id": res.import_id}) == [
        (2, "empty_text", "the generation is empty or whitespace", True),
        (3, "invalid_json", query(filled_ws, "select detail from rejects where line = 3")[0][0], True),
        (4, "missing_field:prompt", "the row has no 'prompt' field to match it to a pair (keys: ['generation'])", True),
        (5, "missing_field:generation",
         "the row has no 'generation' or 'text' field (keys: ['prompt']); name the field with --text-field", True),
        (6, "non_str_field:prompt", "'prompt' is a int, not a string", True),
        (7, "non_str_field:generation", "'generation' must be a string or a non-empty list of strings, found int",
         True),
        (8, "empty_text", "generation 2 of 2 is empty or whitespace", True),
        (9, "unmatched_generation", "no pair in the workspace has this prompt (it must equal pairs.prompt exactly)",
         True),
        (10, "not_an_object", "a row must be an object, found list", True),
    ]
    assert query(filled_ws, "select raw from rejects where line in (2, 3) order by line") == [
        (json.dumps(rows[1]),), ('{"prompt": "broken',)]
    assert dict(res.rejected) == {"empty_text": 2, "invalid_json": 1, "missing_field:prompt": 1,
                                  "missing_field:generation": 1, "non_str_field:prompt": 1,
                                  "non_str_field:generation": 1, "unmatched_generation": 1, "not_an_object": 1}


def test_an_empty_file_lands_nothing_and_says_so_as_ingest_does(filled_ws, tmp_path, cli):
    """One behaviour for an empty file (issue 13): nothing lands, the step is recorded, and the CLI warns."""
    path = write_jsonl(tmp_path / "g.jsonl", ["", ""])
    for match in ("auto", "prompt"):
        res = import_generations(Workspace(filled_ws), path, iteration=1, policy="p", match=match)
        assert (res.read, res.imported) == (0, 0) and Path(res.manifest).is_file()
    r = cli("generations", "import", path, "-i", "1", "--policy", "p", "-w", filled_ws)
    assert r.exit_code == 0 and "warning: nothing was imported: g.jsonl has no rows" in r.stderr
    empty = write_jsonl(tmp_path / "data" / "helpful-base" / "empty.jsonl", ["", ""])
    r = cli("ingest", empty, "-w", filled_ws)
    assert r.exit_code == 0 and "warning: nothing was ingested: empty.jsonl has no rows" in r.stderr


def test_text_field_option(filled_ws, tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": prompt(0), "output": "o", "generation": "ignored"}])
    res = import_generations(Workspace(filled_ws), path, iteration=1, policy="p", text_field="output")
    assert res.imported == 1
    assert gens(filled_ws) == [(1, 0, 0, "o", "p")]


def test_a_file_matching_nothing_is_an_error_and_writes_nothing(cli, filled_ws, tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "\n\nHuman: elsewhere?\n\nAssistant:", "generation": "x"},
                                              {"prompt": prompt(0), "generation": " "}])
    before = Workspace(filled_ws).state()
    r = cli("generations", "import", path, "-i", "1", "--policy", "p", "-w", filled_ws)
    assert r.exit_code == 1
    assert r.stderr == (
        f"Error: {path}: none of the 2 rows matches a pair of workspace {filled_ws.resolve()} (matched by prompt "
        "against 6 pairs; empty_text 1, unmatched_generation 1).\n"
        "Check that --workspace is the workspace these prompts were ingested into (`curate info` shows its "
        "sources), and that the rows are matched on the right key: --match pair_id for rows carrying curate's "
        "pair_id, --match prompt for rows carrying the prompt text exactly as in pairs.prompt (the transcript "
        "up to and including the final '\\n\\nAssistant:'). Nothing was written.\n"
    )
    assert Workspace(filled_ws).state() == before


def test_a_file_of_only_bad_rows_is_an_error(cli, filled_ws, tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": prompt(0), "generation": ""}, "{nope"])
    r = cli("generations", "import", path, "-i", "1", "--policy", "p", "-w", filled_ws)
    assert r.exit_code == 1
    assert r.stderr == (f"Error: {path}: no generation could be imported from the 2 rows (empty_text 1, "
                        "invalid_json 1). Fix the rows (see the reasons), or name the text field with --text-field. "
                        "Nothing was written.\n")


def test_usage_errors(cli, filled_ws, tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": prompt(0), "generation": "x"}])
    r = cli("generations", "import", path, "-i", "0", "--policy", "p", "-w", filled_ws)
    assert (r.exit_code, r.stderr) == (1, "Error: --iteration 0: iterations are numbered from 1.\n")
    r = cli("generations", "import", tmp_path / "missing.jsonl", "-i", "1", "--policy", "p", "-w", filled_ws)
    assert (r.exit_code, r.stderr) == (1, f"Error: {tmp_path / 'missing.jsonl'}: no such file.\n")
    r = cli("generations", "import", path, "-i", "1", "--policy", "p", "-w", filled_ws, "--param", "temperature")
    assert r.exit_code == 2 and "Option '--param' requires 2 arguments" in r.stderr  # -p NAME VALUE, as in sql
    keyless = write_jsonl(tmp_path / "k.jsonl", [{"question": "q", "generation": "x"}])
    r = cli("generations", "import", keyless, "-i", "1", "--policy", "p", "-w", filled_ws)
    assert (r.exit_code, r.stderr) == (
        1, f"Error: {keyless}: cannot tell how to match the rows to pairs: no row in the first 1 has a pair_id "
           "or a prompt field (first row's keys: ['generation', 'question']). Rename the key field to pair_id "
           "or prompt.\n")
    nowhere = tmp_path / "nowhere"
    r = cli("generations", "import", path, "-i", "1", "--policy", "p", "-w", nowhere)
    assert not nowhere.exists()
    assert (r.exit_code, r.stderr) == (
        1, f"Error: No curate workspace at {nowhere.resolve()}. Create one with `curate ingest FILE` (or point "
           "--workspace / CURATE_WORKSPACE at an existing one).\n")


# -- policies, overwrite, idempotence -----------------------------------------------------------------
def test_another_policy_is_refused_then_overwrite_replaces_that_iteration(cli, filled_ws, tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [{"prompt": prompt(i), "generation": f"a{i}"} for i in range(3)])
    second = write_jsonl(tmp_path / "b.jsonl", [{"prompt": prompt(i), "generation": f"b{i}"} for i in (1, 2)])
    for it in (1, 2):
        assert cli("generations", "import", first, "-i", it, "--policy", "old", "-w", filled_ws, "-q").exit_code == 0
    r = cli("generations", "import", second, "-i", "1", "--policy", "new", "-w", filled_ws)
    assert (r.exit_code, r.stderr) == (
        1, "Error: branch 'main', iteration 1 already has 3 generations from policy old, not new. Import it under "
           "another --iteration or --branch, or pass --overwrite to replace that iteration's generations.\n")
    r = cli("generations", "import", second, "-i", "1", "--policy", "new", "--overwrite", "-w", filled_ws)
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[:2] == [
        "imported 2 generations for 2 pairs (branch main, iteration 1, policy new, matched by prompt)",
        "  replaced 3 earlier generations (policy old)",
    ]
    assert gens(filled_ws) == [(1, 1, 0, "b1", "new"), (1, 2, 0, "b2", "new")] + [
        (2, i, 0, f"a{i}", "old") for i in range(3)]
    # another branch is independent of main
    r = cli("generations", "import", first, "-i", "1", "--branch", "rm2", "--policy", "x", "-w", filled_ws, "-q")
    assert r.exit_code == 0
    assert scalar(filled_ws, "select count(*) from generations where branch = 'rm2'") == 3


def test_overwrite_rewrites_a_file_that_mixes_iterations(filled_ws, tmp_path):
    """A file written by another step may hold several iterations; only the replaced one goes."""
    w = Workspace(filled_ws)
    mixed = pl.DataFrame({"branch": ["main"] * 2, "iteration": [1, 2], "pair_id": [pair_id(filled_ws, 0)] * 2,
                          "sample": [0, 0], "text": ["it1", "it2"], "policy": ["gen", "gen"], "params": ["{}"] * 2})
    with w.transaction() as tx:
        tx.add("generations", mixed)
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": prompt(0), "generation": "new"}])
    res = import_generations(w, path, iteration=1, policy="p", overwrite=True)
    assert (res.replaced, res.imported) == (1, 1)
    assert gens(filled_ws) == [(1, 0, 0, "new", "p"), (2, 0, 0, "it2", "gen")]


def test_reimport_is_idempotent(cli, filled_ws, tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": prompt(i), "generation": f"g{i}"} for i in range(4)]
                       + [{"prompt": "\n\nHuman: ?\n\nAssistant:", "generation": "x"}])
    r1 = cli("generations", "import", path, "-i", "1", "--policy", "p", "-w", filled_ws)
    r2 = cli("generations", "import", path, "-i", "1", "--policy", "p", "-w", filled_ws)
    assert r1.exit_code == r2.exit_code == 0
    assert r2.stderr.splitlines()[:3] == [
        "imported 0 generations for 0 pairs (branch main, iteration 1, policy p, matched by prompt); "
        "1 row unmatched -> rejects",
        "  4 already in the workspace (not imported again)",
        f"  rejects: unmatched_generation 1  (see: curate sql \"select * from rejects where source = '{path}'\")",
    ]
    assert scalar(filled_ws, "select count(*) from generations") == 4
    assert scalar(filled_ws, "select count(*) from (select distinct branch, iteration, pair_id, sample "
                             "from generations)") == 4
    assert rejects(filled_ws) == [(5, "unmatched_generation")]
    assert len(Workspace(filled_ws).manifests("generations")) == 2


def test_same_policy_different_text_is_a_conflict_not_an_overwrite(filled_ws, tmp_path):
    w = Workspace(filled_ws)
    import_generations(w, write_jsonl(tmp_path / "a.jsonl", [{"prompt": prompt(0), "generation": "first"}]),
                       iteration=1, policy="p")
    res = import_generations(w, write_jsonl(tmp_path / "b.jsonl", [{"prompt": prompt(0), "generation": "second"},
                                                                  {"prompt": prompt(1), "generation": "b"}]),
                             iteration=1, policy="p")
    assert (res.imported, dict(res.rejected)) == (1, {"conflicting_generation": 1})
    assert gens(filled_ws) == [(1, 0, 0, "first", "p"), (1, 1, 0, "b", "p")]
    assert query(filled_ws, "select line, detail from rejects") == [
        (1, "(branch main, iteration 1) already holds a different text for this pair and sample; give the rows "
            "distinct `sample` values or pass --overwrite")]


# -- formats, params, provenance -------------------------------------------------------------------
def test_parquet_input_and_params(filled_ws, tmp_path):
    path = tmp_path / "g.parquet"
    pl.DataFrame({
        "pair_id": [pair_id(filled_ws, 0), pair_id(filled_ws, 1), "nope"],
        "text": [["p0a", "p0b"], ["p1"], ["x"]],
        "temperature": [0.7, None, 0.7],
    }).write_parquet(path)
    res = import_generations(Workspace(filled_ws), path, iteration=2, policy="p",
                             params={"top_k": 50, "temperature": 1.0})
    assert (res.match, res.imported, res.pairs, dict(res.rejected)) == ("pair_id", 3, 2, {"unmatched_generation": 1})
    assert query(filled_ws, """select p.source_row, g.sample, g.text, g.params from generations g join pairs p
                               using (pair_id) order by 1, 2""") == [
        (0, 0, "p0a", '{"temperature": 0.7, "top_k": 50}'),
        (0, 1, "p0b", '{"temperature": 0.7, "top_k": 50}'),
        (1, 0, "p1", '{"temperature": 1.0, "top_k": 50}'),
    ]
    raw = scalar(filled_ws, "select raw from rejects")
    assert json.loads(raw) == {"pair_id": "nope", "text": ["x"], "temperature": 0.7}


def test_gzip_jsonl_and_manifest(filled_ws, tmp_path):
    import hashlib

    path = write_jsonl(tmp_path / "g.jsonl.gz", [{"prompt": prompt(0), "generation": "z", "top_p": 0.9}])
    res = import_generations(Workspace(filled_ws), path, iteration=1, policy="p", params={"seed": 3})
    m = json.loads(open(res.manifest).read())
    assert m["step"] == "generations import" and m["import_id"] == res.import_id
    assert m["input"] == {"source": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                          "size": path.stat().st_size}
    assert m["options"] == {"branch": "main", "iteration": 1, "policy": "p", "match": "auto", "match_used": "prompt",
                            "text_field": None, "params": {"seed": 3}, "overwrite": False}
    assert m["counts"]["imported"] == 1 and m["counts"]["rejected"] == {}
    assert {"curate", "python", "polars", "duckdb"} <= set(m["versions"])
    assert scalar(filled_ws, "select params from generations") == '{"seed": 3, "top_p": 0.9}'


# -- list -----------------------------------------------------------------------------------------
def test_generations_list(cli, filled_ws, tmp_path):
    r = cli("generations", "list", "-w", filled_ws, "--format", "csv")
    assert (r.exit_code, r.stdout) == (0, "branch,iteration,policy,generations,pairs,max_samples\n")
    path = write_jsonl(tmp_path / "g.jsonl", [{"prompt": prompt(i), "generation": [f"{i}a", f"{i}b"]} for i in range(3)])
    assert cli("generations", "import", path, "-i", "1", "--policy", "p1", "-w", filled_ws, "-q").exit_code == 0
    assert cli("generations", "import", path, "-i", "2", "--policy", "p2", "--branch", "rm1",
               "-w", filled_ws, "-q").stderr == ""
    r = cli("generations", "list", "-w", filled_ws, "--format", "csv")
    assert (r.exit_code, r.stdout) == (0, "branch,iteration,policy,generations,pairs,max_samples\n"
                                          "main,1,p1,6,3,2\nrm1,2,p2,6,3,2\n")
    r = cli("generations", "list", "-w", filled_ws)
    assert r.exit_code == 0 and "p2" in r.stdout and r.stderr == ""
