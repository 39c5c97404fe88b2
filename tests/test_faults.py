"""Storage that refuses writes (full disk, quota, read-only, no permission): every write command says so in one
line naming the path and the step, exits 1 with no traceback, and leaves the workspace as it was.

The faults are injected (we may not mount a small filesystem): os.replace, the rename every staged write ends with,
and the writers underneath (polars, pyarrow), in the shapes each of them really raises (checked against /dev/full).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from curate.faults import StorageError, guard, storage_errno

from .conftest import hand_scored_ws, hh_row, query, write_jsonl

ERRNOS = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota", errno.EROFS: "read-only",
          errno.EACCES: "permission denied"}


def snapshot(root: Path) -> tuple:
    """What a reader sees: state.json's bytes, every table's rows, and the files under tables/."""
    counts = query(root, "select (select count(*) from pairs), (select count(*) from similarities), "
                         "(select count(*) from subsets), (select count(*) from generations)")
    files = sorted(p.relative_to(root).as_posix() for p in (root / "tables").rglob("*") if p.is_file())
    return (root / "state.json").read_bytes(), counts, files


def leftovers(*folders: Path) -> list[str]:
    """Temporary files (a staged write's `.tmp`) under folders."""
    return [str(p) for f in folders if f.exists() for p in f.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def fws(cli, tmp_path):
    """Ten hand-scored pairs, one subset made by filter."""
    w = hand_scored_ws(cli, tmp_path)
    r = cli("filter", "-w", w.root, "-s", "positive", "--eps", "0.2", "-i", "1", "--name", "kept", "-q")
    assert r.exit_code == 0, r.output
    return w


def refuse_renames(monkeypatch, under: Path, code: int) -> list[str]:
    """Every os.replace/os.rename into `under` fails with `code`, as a full or read-only filesystem makes it."""
    real_replace, real_rename, hit = os.replace, os.rename, []

    def fail(real):
        def call(src, dst, *a, **k):
            if str(dst).startswith(str(under)):
                hit.append(str(dst))
                raise OSError(code, os.strerror(code), str(src))
            return real(src, dst, *a, **k)
        return call

    monkeypatch.setattr(os, "replace", fail(real_replace))
    monkeypatch.setattr(os, "rename", fail(real_rename))
    return hit


def commands(w, tmp_path: Path) -> dict[str, list]:
    more = write_jsonl(tmp_path / "more" / "harmless-base" / "train.jsonl",
                       [hh_row("new?", "yes", "no")])
    prompts = [p for (p,) in query(w.root, "select distinct prompt from pairs")]
    gens = write_jsonl(tmp_path / "gens.jsonl", [{"prompt": p, "generation": "an answer"} for p in prompts])
    return {
        "ingest": ["ingest", more],
        "generations import": ["generations", "import", gens, "-i", "3", "--policy", "p"],
        "filter": ["filter", "-s", "negative", "--eps", "0.2", "-i", "1", "--name", "another"],
        "export": ["export", "kept", "--output", tmp_path / "out" / "kept.parquet", "--format", "parquet"],
        "sql --output": ["sql", "select * from pairs", "--format", "csv", "--output", tmp_path / "out" / "p.csv"],
    }


@pytest.mark.parametrize("code", list(ERRNOS), ids=[errno.errorcode[c] for c in ERRNOS])
def test_each_errno_on_each_write_command_is_one_line_and_changes_nothing(fws, cli, tmp_path, monkeypatch, code):
    for name, args in commands(fws, tmp_path).items():
        before = snapshot(fws.root)
        with monkeypatch.context() as m:
            hit = refuse_renames(m, tmp_path, code)
            r = cli(*args, "-w", fws.root)
        assert hit, name
        assert r.exit_code == 1, (name, r.output)
        err = r.stderr.strip()
        assert "Traceback" not in r.output and "\n" not in err, (name, r.output)
        assert err.startswith(f"Error: curate {name.split(' --')[0]} could not write "), (name, err)
        assert ERRNOS[code] in err.lower(), (name, err)
        assert "keeps its last committed state" in err, err
        assert snapshot(fws.root) == before, name
        assert leftovers(fws.root, tmp_path / "out") == [], name
        assert not (tmp_path / "out" / "kept.parquet").exists()


def test_a_full_disk_under_the_parquet_writer_names_the_file_the_need_and_what_is_free(fws, cli, tmp_path,
                                                                                       monkeypatch):
    """polars says "(os error 28)" in a ComputeError; pyarrow an OSError with errno 28 and no path."""
    import polars as pl
    import pyarrow.parquet as pq
    from polars.exceptions import ComputeError

    def polars_full(self, *a, **k):
        raise ComputeError("parquet: File out of specification: underlying IO error: No space left on device "
                           "(os error 28)")

    def arrow_full(*a, **k):
        raise OSError(28, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    before = snapshot(fws.root)
    with monkeypatch.context() as m:
        m.setattr(pl.DataFrame, "write_parquet", polars_full)
        r = cli("ingest", commands(fws, tmp_path)["ingest"][1], "-w", fws.root)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"curate ingest could not write {fws.root / 'tables' / 'pairs'}" in r.stderr
    assert "no space left on the device (" in r.stderr and " is free there)" in r.stderr
    assert snapshot(fws.root) == before and leftovers(fws.root) == []

    with monkeypatch.context() as m:
        m.setattr(pq, "write_table", arrow_full)
        r = cli("export", "kept", "-w", fws.root, "--output", tmp_path / "out" / "k.parquet", "--format", "parquet")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"curate export could not write {tmp_path / 'out' / 'k.parquet'}: no space left" in r.stderr
    assert "the step needed about " in r.stderr  # the Arrow table's size, known before the write
    assert leftovers(tmp_path / "out") == [] and not (tmp_path / "out" / "k.parquet").exists()


def test_a_full_disk_at_the_commit_point_keeps_the_previous_state(fws, cli, tmp_path, monkeypatch):
    """The data files are written; state.json cannot be: the staged files go, the old state stays."""
    real, state = os.replace, fws.root / "state.json"

    def replace(src, dst, *a, **k):
        if Path(dst) == state:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *a, **k)

    before = snapshot(fws.root)
    monkeypatch.setattr(os, "replace", replace)
    r = cli("filter", "-w", fws.root, "-s", "negative", "--eps", "0.2", "-i", "1", "--name", "x")
    assert r.exit_code == 1 and f"curate filter could not write {state}: no space left" in r.stderr
    assert snapshot(fws.root) == before and leftovers(fws.root) == []


def test_a_write_no_choke_point_wraps_still_gives_one_line(cli, tmp_path, monkeypatch):
    """A library's own save (a trainer's checkpoint) raising EROFS: the CLI's net names the step and the path."""
    def summary(ws):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/models/out/model.safetensors")

    monkeypatch.setattr("curate.info.summary", summary)
    r = cli("info", "-w", tmp_path)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.startswith("Error: curate info could not write /models/out/model.safetensors: the filesystem is "
                               "read-only.")


def test_storage_errno_reads_every_writers_wording():
    import duckdb

    assert storage_errno(OSError(errno.EDQUOT, "Disk quota exceeded")) == errno.EDQUOT
    assert storage_errno(duckdb.IOException('IO Error: Could not write file "x": No space left on device')) == 28
    assert storage_errno(RuntimeError("underlying IO error: Read-only file system (os error 30)")) == errno.EROFS
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = PermissionError(errno.EACCES, "Permission denied")
    assert storage_errno(wrapped) == errno.EACCES
    assert storage_errno(OSError(errno.ENOENT, "No such file")) is None
    assert storage_errno(ValueError("a value of 28")) is None
    with pytest.raises(StorageError) as e, guard("/x/y", needed=2_500_000, step="curate demo"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (e.value.errno, e.value.path, e.value.step) == (errno.ENOSPC, "/x/y", "curate demo")
    assert "the step needed about 2.5 MB" in str(e.value)
    with pytest.raises(KeyError), guard("/x/y"):
        raise KeyError("not a storage error: passes unchanged")


def test_the_lock_and_state_say_full_on_a_fresh_workspace(cli, tmp_path, monkeypatch, hh_file):
    """The first write of a new workspace (state.json) failing: one line, and no empty skeleton left behind."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).startswith(str(tmp_path / "new")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    r = cli("ingest", hh_file, "-w", tmp_path / "new")
    assert r.exit_code == 1 and "Traceback" not in r.output and r.stderr.count("\n") == 1
    assert "curate ingest could not write" in r.stderr
    assert not (tmp_path / "new").exists()


@pytest.fixture
def embedded_ws(fws, tmp_path):
    """fws with generations of iteration 3 and hand-made unit vectors of model m-1 for every text score reads."""
    import hashlib

    import numpy as np
    import polars as pl

    from curate.workspace import Workspace

    w = Workspace(fws.root)
    pairs = query(w.root, "select pair_id, chosen, rejected from pairs")
    gens = pl.DataFrame({"branch": "main", "iteration": 3, "pair_id": [p for p, _, _ in pairs], "sample": 0,
                         "text": [f"a sample for {c}" for _, c, _ in pairs], "policy": "p", "params": "{}"})
    texts = sorted({t for _, c, r in pairs for t in (c, r)} | set(gens["text"]))
    vecs = np.random.default_rng(0).normal(size=(len(texts), 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with w.transaction() as tx:
        tx.add("generations", gens)
        tx.add("embeddings", pl.DataFrame({"text_hash": [hashlib.md5(t.encode()).hexdigest() for t in texts],
                                           "model_id": "m-1", "vector": pl.Series(vecs.tolist(),
                                                                                  dtype=pl.Array(pl.Float32, 4))}),
               key="m-1")
        tx.add("embedding_models", pl.DataFrame({"model_id": ["m-1"], "name": ["m"], "revision": [None],
                                                 "weights_sha256": ["x"], "pooling": ["mean"], "max_seq_length": [8],
                                                 "dim": [4], "identity": ["{}"], "created_at": [None]}))
    return w


@pytest.mark.parametrize("code", list(ERRNOS), ids=[errno.errorcode[c] for c in ERRNOS])
def test_each_errno_on_score(embedded_ws, cli, tmp_path, monkeypatch, code):
    r = cli("score", "-i", "3", "-w", embedded_ws.root, "-q")
    assert r.exit_code == 0, r.output  # it can score
    before = snapshot(embedded_ws.root)
    with monkeypatch.context() as m:
        refuse_renames(m, tmp_path, code)
        r = cli("score", "-i", "3", "-w", embedded_ws.root)
    err = r.stderr.strip()
    assert r.exit_code == 1 and "Traceback" not in r.output and "\n" not in err, r.output
    assert err.startswith(f"Error: curate score could not write {embedded_ws.root / 'tables'}"), err
    assert ERRNOS[code] in err.lower()
    assert snapshot(embedded_ws.root) == before and leftovers(embedded_ws.root) == []


def test_a_reader_of_a_stale_catalog_on_a_full_disk_still_reads(fws, cli, monkeypatch):
    """A stale catalog is refreshed under the lock when the disk allows; a full one leaves the views in memory."""
    import builtins
    import json

    state = json.loads((fws.root / "state.json").read_text())
    state["generation"] += 1  # as after a commit whose catalog refresh did not happen
    (fws.root / "state.json").write_text(json.dumps(state))

    class Full:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._fh, name)

    def full_open(path, *a, **k):
        fh = builtins.open(path, *a, **k)
        return Full(fh) if str(path).endswith(".lock") else fh

    monkeypatch.setattr("curate.workspace.open", full_open, raising=False)
    r = cli("sql", "select count(*) as n from pairs", "-w", fws.root, "--format", "csv")
    assert r.exit_code == 0 and r.stdout == "n\n10\n", r.output
    r = cli("filter", "-s", "negative", "--eps", "0.2", "-i", "1", "-w", fws.root)  # a writer is told
    assert r.exit_code == 1 and f"curate filter could not write {fws.root / '.lock'}: no space left" in r.stderr


def test_the_next_writer_clears_what_a_killed_write_left_and_puts_an_old_version_back(tmp_path):
    """A killed writer's temporaries (named with its pid) go; a live writer's stay; an `.old` copy of a target that
    is gone (killed between move_into_place's two renames) is the previous version, so it is put back."""
    import subprocess
    import sys

    from curate.atomic import clear_stale, staged_file, stale_temps, write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    target = tmp_path / "out" / "model"
    target.parent.mkdir()
    (target.parent / f".model.{dead}-0123abcd.tmp").mkdir()  # a staging folder of a killed trainer
    old = target.parent / f".model.{dead}-4567cdef.old"
    old.mkdir()
    (old / "weights").write_text("the previous model")
    mine = target.parent / f".model.{os.getpid()}-89abcdef.tmp"  # this process is alive: not stale
    mine.mkdir()
    assert sorted(p.name for p in stale_temps(target.parent)) == sorted([f".model.{dead}-0123abcd.tmp", old.name])

    note = tmp_path / "out" / "note.txt"
    with staged_file(note) as tmp:  # any write beside them clears only its own target's leftovers
        tmp.write_text("x")
    assert len(stale_temps(target.parent)) == 2
    clear_stale(target)  # what staged_dir(target) and export do first
    assert (target / "weights").read_text() == "the previous model" and mine.exists()
    assert stale_temps(target.parent) == []
    write_text(tmp_path / "state.json", "{}")  # and a plain write of a file works beside it all
    assert (tmp_path / "state.json").read_text() == "{}"
