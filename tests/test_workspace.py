"""The workspace: the write lock, atomic commits, the catalog of views."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest

from curate.errors import CurateError, WorkspaceBusy
from curate.tables import TABLES
from curate.workspace import Workspace

from .conftest import query, scalar


def busy_message(root: Path) -> str:
    """The message a second writer gets, built from what the holder wrote into .lock."""
    holder = json.loads((root / ".lock").read_text())
    return (
        f"Workspace {root.resolve()} is in use by another curate process (pid {holder['pid']}: "
        f"`{holder['command']}` since {holder['since']}). Wait for it to finish, or use another --workspace."
    )


# -- the lock -------------------------------------------------------------------------------
def test_lock_records_its_holder_and_clears_on_release(ws):
    with Workspace(ws).lock("curate test holder"):
        holder = json.loads((ws / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        assert holder["command"] == "curate test holder"
    assert (ws / ".lock").read_text() == ""


def test_ingest_while_another_process_writes(cli, filled_ws, hh_file):
    with Workspace(filled_ws).lock("curate test holder"):
        r = cli("ingest", hh_file, "-w", filled_ws, "-q", "--sft-fraction", "1")
        assert r.exit_code == 1
        assert r.stderr == f"Error: {busy_message(filled_ws)}\n"
    assert query(filled_ws, "select distinct role from pairs") == [("pref",)]
    # once released, writing works again
    assert cli("ingest", hh_file, "-w", filled_ws, "-q").exit_code == 0


def test_sql_write_from_a_second_process_is_refused(filled_ws):
    with Workspace(filled_ws).lock("curate test holder"):
        p = subprocess.run(
            [sys.executable, "-m", "curate.cli", "sql", "--write", "create table mine as select 1 as a",
             "-w", str(filled_ws)],
            capture_output=True, text=True, timeout=60,
        )
        assert p.returncode == 1
        assert p.stdout == ""
        assert p.stderr == f"Error: {busy_message(filled_ws)}\n"
    assert scalar(filled_ws, "select count(*) from information_schema.tables where table_name = 'mine'") == 0


def test_a_second_workspace_object_in_a_thread_is_refused(ws):
    outcome = []

    def second_writer():
        try:
            with Workspace(ws).lock("second"):
                outcome.append("locked")
        except WorkspaceBusy as e:
            outcome.append(str(e))

    with Workspace(ws).lock("first"):
        t = threading.Thread(target=second_writer)
        t.start()
        t.join(10)
        assert outcome == [busy_message(ws)]
    t = threading.Thread(target=second_writer)
    t.start()
    t.join(10)
    assert outcome[1:] == ["locked"]


def test_the_lock_is_reentrant_for_the_same_workspace_object(ws):
    w = Workspace(ws)
    with w.lock("outer"):
        with w.lock("inner"):
            assert json.loads((ws / ".lock").read_text())["command"] == "outer"


def test_readers_do_not_need_the_lock(cli, filled_ws):
    with Workspace(filled_ws).lock("curate test holder"):
        r = cli("sql", "select count(*) as n from pairs", "-w", filled_ws, "-f", "csv")
        assert (r.exit_code, r.stdout) == (0, "n\n6\n")
        r = cli("info", "-w", filled_ws, "--json")
        assert r.exit_code == 0
        assert json.loads(r.stdout)["tables"]["pairs"] == 6


# -- state and commits ----------------------------------------------------------------------
def test_a_missing_workspace_is_named_and_not_created(cli, tmp_path):
    root = tmp_path / "nowhere"
    for args in (("sql", "select 1"), ("sql", "--write", "create table t as select 1"), ("info",)):
        r = cli(*args, "-w", root)
        assert r.exit_code == 1
        assert r.stderr == (
            f"Error: No curate workspace at {root}. Create one with `curate ingest FILE` "
            "(or point --workspace / CURATE_WORKSPACE at an existing one).\n"
        )
    assert not root.exists()


def test_workspace_from_the_environment(cli, filled_ws, monkeypatch):
    monkeypatch.setenv("CURATE_WORKSPACE", str(filled_ws))
    r = cli("sql", "select count(*) as n from pairs", "-f", "csv")
    assert (r.exit_code, r.stdout) == (0, "n\n6\n")


def test_a_fresh_workspace_has_every_table_typed_and_empty(tmp_path):
    w = Workspace(tmp_path / "fresh").init()
    con = w.connect()
    try:
        for t in TABLES.values():
            rel = con.execute(f'select * from "{t.name}"')
            assert [d[0] for d in rel.description] == t.column_names
            assert rel.fetchall() == []
    finally:
        con.close()


def test_each_commit_bumps_the_generation(filled_ws, tmp_path):
    w = Workspace(filled_ws)
    before = w.state()
    with w.transaction("test") as tx:
        tx.add("runs", pl.DataFrame({"run_id": ["r1"], "step": ["s"], "branch": ["main"], "iteration": [1],
                                     "status": ["done"], "inputs": ["{}"], "outputs": ["{}"],
                                     "config_sha256": ["x"], "started_at": [None], "finished_at": [None],
                                     "seconds": [1.0], "error": [None]}))
    after = w.state()
    assert after["generation"] == before["generation"] + 1
    assert len(after["tables"]["runs"]) == 1
    assert scalar(filled_ws, "select run_id from runs") == "r1"


def test_a_failed_transaction_leaves_nothing_behind(filled_ws):
    w = Workspace(filled_ws)
    before = (w.state_path.read_bytes(), sorted((filled_ws / "tables").rglob("*")))
    with pytest.raises(RuntimeError, match="boom"):
        with w.transaction("test") as tx:
            tx.add("pairs", pl.DataFrame({c: [None] for c in TABLES["pairs"].column_names}))
            raise RuntimeError("boom")
    assert (w.state_path.read_bytes(), sorted((filled_ws / "tables").rglob("*"))) == before
    assert scalar(filled_ws, "select count(*) from pairs") == 6


def test_the_next_writer_removes_files_a_killed_step_left(filled_ws):
    stray = filled_ws / "tables" / "pairs" / "killed-step.parquet.tmp"
    stray.write_bytes(b"half a file")
    live = Workspace(filled_ws).files("pairs")
    with Workspace(filled_ws).lock("next writer"):
        pass
    assert not stray.exists()
    assert all(p.exists() for p in live)
    assert scalar(filled_ws, "select count(*) from pairs") == 6


def test_replaced_files_stay_readable_for_a_grace_period(filled_ws):
    w = Workspace(filled_ws)
    old = w.files("pairs")
    with w.transaction("test") as tx:
        tx.replace("pairs")
    state = w.state()
    assert state["tables"]["pairs"] == []
    assert [t["path"] for t in state["trash"]] == [p.relative_to(w.tables_dir).as_posix() for p in old]
    with w.lock("next writer"):  # garbage collection keeps trash younger than the grace period
        pass
    assert all(p.exists() for p in old)
    assert scalar(filled_ws, "select count(*) from pairs") == 0


def test_queries_work_without_the_catalog_file(cli, filled_ws):
    (filled_ws / "curate.duckdb").unlink()
    r = cli("sql", "select count(*) as n from pairs", "-w", filled_ws, "-f", "csv")
    assert (r.exit_code, r.stdout) == (0, "n\n6\n")


def test_queries_work_while_another_program_holds_the_catalog(cli, filled_ws):
    con = duckdb.connect(str(filled_ws / "curate.duckdb"))
    try:
        r = cli("sql", "select count(*) as n from pairs", "-w", filled_ws, "-f", "csv")
        assert (r.exit_code, r.stdout) == (0, "n\n6\n")
    finally:
        con.close()


def test_a_catalog_from_an_older_curate_gains_the_new_views(cli, filled_ws):
    """An upgrade adds tables: a catalog written before them (same generation) is rewritten."""
    con = duckdb.connect(str(filled_ws / "curate.duckdb"))
    con.execute("DROP VIEW embedding_models")
    con.execute("UPDATE _curate_meta SET value = 'pairs:pair_id' WHERE key = 'tables'")
    con.close()
    r = cli("sql", "select count(*) as n from embedding_models", "-w", filled_ws, "-f", "csv")
    assert (r.exit_code, r.stdout) == (0, "n\n0\n")


def test_a_damaged_state_file_is_reported(cli, filled_ws):
    (filled_ws / "state.json").write_text("{not json")
    r = cli("sql", "select 1", "-w", filled_ws)
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: {filled_ws / 'state.json'} is not valid JSON (")
    assert r.stderr.endswith("); the workspace is damaged.\n")


def test_require_raises_a_curate_error(tmp_path):
    with pytest.raises(CurateError, match="No curate workspace at"):
        Workspace(tmp_path / "none").require()
