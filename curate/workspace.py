"""The workspace: Parquet files as the source of truth, a DuckDB catalog of views over them.

Layout (documented in the README):

    <workspace>/
      state.json          which Parquet files are live, per table (the atomic commit point), with each
                          file's size and SHA-256 (`files`, checked by `curate check`)
      curate.duckdb       DuckDB catalog: one view per table over its live files
      tables/<table>/*.parquet
      manifests/*.json    provenance of every step (inputs, hashes, options, versions)
      .lock               held by the process that is writing

A write stages new Parquet files (temporary name, then renamed), then replaces state.json in one
rename, then refreshes the catalog. A killed step leaves the previous state readable; its staged
files are unreferenced and are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .atomic import remove, stale_temps, write_text
from .errors import CurateError, WorkspaceBusy, WorkspaceNotWritable
from .faults import StorageError, folder_bytes, guard, storage_errno
from .integrity import file_record
from .tablefiles import TableWriter, conform
from .tables import TABLES, empty_select

if TYPE_CHECKING:
    import duckdb
    import polars as pl

STATE_VERSION = 1
TRASH_GRACE_S = 600  # removed files stay on disk this long for readers that loaded the old state
DEFAULT_WORKSPACE = "workspace"


def resolve_root(path: str | os.PathLike | None) -> Path:
    if path is None:
        path = os.environ.get("CURATE_WORKSPACE") or DEFAULT_WORKSPACE
    return Path(path).expanduser().resolve()


def _tables_stamp() -> str:
    """The table contract's names and columns, so a catalog written by another version is refreshed."""
    return ";".join(f"{t.name}:{','.join(t.column_names)}" for t in TABLES.values())


def file_key(key: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._=-]+", "_", key)


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    """Sortable, unique id for steps and files: UTC time plus randomness."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


class Workspace:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_root(root)
        self.state_path = self.root / "state.json"
        self.catalog_path = self.root / "curate.duckdb"
        self.tables_dir = self.root / "tables"
        self.manifests_dir = self.root / "manifests"
        self.lock_path = self.root / ".lock"
        self._lock_fh = None

    # -- state ---------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.state_path.exists()

    def init(self) -> "Workspace":
        for d in (self.root, self.tables_dir, self.manifests_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not self.state_path.exists():
            write_text(self.state_path, json.dumps(self._empty_state(), indent=1))
        return self

    def require(self) -> "Workspace":
        if not self.exists:
            raise CurateError(
                f"No curate workspace at {self.root}. Create one with `curate ingest FILE` "
                "(or point --workspace / CURATE_WORKSPACE at an existing one)."
            )
        return self

    @staticmethod
    def _empty_state() -> dict:
        return {"version": STATE_VERSION, "generation": 0, "tables": {}, "trash": []}

    def state(self) -> dict:
        if not self.state_path.exists():
            return self._empty_state()
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CurateError(f"{self.state_path} is not valid JSON ({e}); the workspace is damaged.") from e

    def files(self, table: str, state: dict | None = None, key: str | None = None) -> list[Path]:
        """Live files of `table`; with key, only those written with that key (see Transaction.add)."""
        state = state if state is not None else self.state()
        rels = state["tables"].get(table, [])
        if key is not None:
            prefix = f"{table}/{file_key(key)}--"
            rels = [r for r in rels if r.startswith(prefix)]
        return [self.tables_dir / rel for rel in rels]

    # -- locking -------------------------------------------------------------------------
    def not_writable(self, e: OSError) -> WorkspaceNotWritable:
        """The one message every write path gives when the workspace's storage refuses to be written."""
        blocker = next((p for p in (self.root, *self.root.parents) if p.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None and not blocker.is_dir() else \
            (e.strerror or str(e))
        return WorkspaceNotWritable(
            f"workspace {self.root} is not writable ({why}). Commands that only read it (sql, info, subsets, explain, "
            "export, and report with --output elsewhere) still work; to write, copy it to writable storage or point "
            "--workspace at another folder.")

    def check_writable(self, folder: Path | None = None) -> "Workspace":
        """Raise WorkspaceNotWritable unless the workspace's lock file (and a file in `folder`) can be written. No
        lock is taken: a reader must not wait for a writer, nor clean up after one, to learn whether it may write."""
        try:
            with open(self.lock_path, "a", encoding="utf-8"):  # what every writer opens first (not locked here)
                pass
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".probe-{uuid.uuid4().hex[:8]}"
                probe.touch()
                probe.unlink()
        except OSError as e:
            raise self.not_writable(e) from None
        return self

    def reports_dir(self) -> Path:
        """<workspace>/reports, where figures and pages go by default; refused where the workspace is read-only."""
        self.check_writable(self.root / "reports")
        return self.root / "reports"

    @contextlib.contextmanager
    def lock(self, command: str | None = None) -> Iterator["Workspace"]:
        """Hold the workspace's write lock; a second writer gets a clear message, not corruption."""
        if self._lock_fh is not None:  # re-entrant within one process
            yield self
            return
        try:
            self.init()
            fh = open(self.lock_path, "a+", encoding="utf-8")
        except OSError as e:  # read-only storage, no permission, a file where a folder should be
            raise self.not_writable(e) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "{}"
            fh.close()
            try:
                info = json.loads(holder)
            except json.JSONDecodeError:
                info = {}
            who = f"pid {info.get('pid', '?')}: `{info.get('command', '?')}` since {info.get('since', '?')}"
            raise WorkspaceBusy(
                f"Workspace {self.root} is in use by another curate process ({who}). "
                "Wait for it to finish, or use another --workspace."
            ) from None
        try:
            with guard(self.lock_path):
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps({"pid": os.getpid(), "command": command or " ".join(sys.argv), "since": utcnow()}))
                fh.flush()
        except BaseException:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
            raise
        self._lock_fh = fh
        try:
            self._collect_garbage()
            yield self
        finally:
            self._lock_fh = None
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def _collect_garbage(self) -> None:
        """Remove files no state references: staged files of a killed step, expired trash."""
        state = self.state()
        live = {rel for files in state["tables"].values() for rel in files}
        now = time.time()
        keep_trash = [t for t in state.get("trash", []) if now - t["removed_at"] < TRASH_GRACE_S]
        protected = live | {t["path"] for t in keep_trash}
        if self.tables_dir.exists():
            for path in self.tables_dir.rglob("*"):
                if path.is_file() and path.relative_to(self.tables_dir).as_posix() not in protected:
                    path.unlink(missing_ok=True)
        for folder in (self.root, self.manifests_dir):  # a killed write of state.json or of a manifest
            for path in stale_temps(folder):
                remove(path)
        if len(keep_trash) != len(state.get("trash", [])):
            state["trash"] = keep_trash
            try:
                write_text(self.state_path, json.dumps(state, indent=1))
            except CurateError:  # storage refusing this small write: the trash list is pruned by a later writer
                pass

    # -- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, command: str | None = None) -> Iterator["Transaction"]:
        """Stage files, then commit them all at once; on any exception nothing becomes visible."""
        with self.lock(command):
            tx = Transaction(self, command)
            try:
                yield tx
            except BaseException:
                tx.abort()
                raise
            tx.commit()

    @contextlib.contextmanager
    def created_or_not(self) -> Iterator["Workspace"]:
        """Around a step that may create the workspace: if it fails, a folder it created is removed again, so a
        mistyped path or a bad first input leaves no empty skeleton behind."""
        fresh = not self.root.exists()
        try:
            yield self
        except WorkspaceBusy:  # another process created it first and is writing it: not ours to remove
            raise
        except BaseException:
            if fresh:
                import shutil

                shutil.rmtree(self.root, ignore_errors=True)
            raise

    def write_manifest(self, kind: str, step_id: str, payload: dict) -> Path:
        self.manifests_dir.mkdir(parents=True, exist_ok=True)
        path = self.manifests_dir / f"{kind}-{step_id}.json"
        write_text(path, json.dumps(payload, indent=2, default=str))
        return path

    def manifests(self, kind: str) -> list[dict]:
        out = []
        for path in sorted(self.manifests_dir.glob(f"{kind}-*.json")):
            out.append(json.loads(path.read_text(encoding="utf-8")))
        return out

    # -- reading -------------------------------------------------------------------------
    def view_sql(self, table: str, state: dict) -> str:
        files = self.files(table, state)
        if not files:
            return empty_select(TABLES[table]) if table in TABLES else "SELECT NULL WHERE false"
        quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        read = f"SELECT * FROM read_parquet([{quoted}], union_by_name = true)"
        # a column the contract gained after these files were written reads as NULL, not as an error
        return f"{read} UNION ALL BY NAME {empty_select(TABLES[table])}" if table in TABLES else read

    def _table_names(self, state: dict) -> list[str]:
        return list(TABLES) + [t for t in state["tables"] if t not in TABLES]

    def _create_views(self, con: "duckdb.DuckDBPyConnection", state: dict) -> None:
        for table in self._table_names(state):
            con.execute(f'CREATE OR REPLACE VIEW "{table}" AS {self.view_sql(table, state)}')

    def refresh_catalog(self, state: dict | None = None) -> bool:
        """Rewrite the catalog's views; False (and the data stays readable) if the file is busy."""
        import duckdb

        state = state if state is not None else self.state()
        try:
            con = duckdb.connect(str(self.catalog_path))
        except duckdb.Error:
            return False
        try:
            con.execute("BEGIN")  # one commit for all the views and the stamp: one WAL sync, no half-refreshed catalog
            self._create_views(con, state)
            con.execute("CREATE TABLE IF NOT EXISTS _curate_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.execute(
                "INSERT OR REPLACE INTO _curate_meta VALUES ('generation', ?), ('root', ?), ('tables', ?)",
                [str(state["generation"]), str(self.root), _tables_stamp()],
            )
            con.execute("COMMIT")
        except (duckdb.Error, OSError) as e:
            # a full or read-only disk under the catalog after state.json committed: the catalog is only a cache
            # of views, and a stale one is rebuilt in memory by every reader (connect)
            if storage_errno(e) is None:
                raise
            return False
        finally:
            con.close()
        return True

    def _catalog_fresh(self, con: "duckdb.DuckDBPyConnection", state: dict) -> bool:
        try:
            meta = dict(con.execute("SELECT key, value FROM _curate_meta").fetchall())
        except Exception:
            return False
        return (meta.get("generation") == str(state["generation"]) and meta.get("root") == str(self.root)
                and meta.get("tables") == _tables_stamp())  # a catalog from an older curate lacks new views

    def connect(self, write: bool = False) -> "duckdb.DuckDBPyConnection":
        """A DuckDB connection whose views show the current state.

        Read-only by default: the catalog file opened read-only (so users' own tables made with
        `curate sql --write` are visible), or, when that file is stale or busy, an in-memory
        database with the same views. With write=True the caller must hold the lock.
        """
        import duckdb

        self.require()
        state = self.state()
        if write:
            self.refresh_catalog(state)
            try:
                return duckdb.connect(str(self.catalog_path))
            except duckdb.Error as e:
                raise CurateError(
                    f"The catalog {self.catalog_path} is open in another program ({e}). "
                    "Close it there and try again."
                ) from None
        if self.catalog_path.exists():
            try:
                con = duckdb.connect(str(self.catalog_path), read_only=True)
            except duckdb.Error:
                con = None
            if con is not None:
                if self._catalog_fresh(con, state):
                    return con
                con.close()
                # a stale catalog is refreshed when the workspace can be written; a reader of a busy or
                # read-only (copied, mounted) workspace gets the same views in memory instead
                with contextlib.suppress(WorkspaceBusy, WorkspaceNotWritable, StorageError):  # a full disk too
                    with self.lock("catalog refresh"):
                        if self.refresh_catalog(state):
                            with contextlib.suppress(duckdb.Error):
                                return duckdb.connect(str(self.catalog_path), read_only=True)
        con = duckdb.connect()
        self._create_views(con, state)
        return con

    def count(self, table: str) -> int:
        import duckdb

        files = self.files(table)
        if not files:
            return 0
        return duckdb.sql(f"SELECT count(*) FROM ({self.view_sql(table, self.state())})").fetchall()[0][0]


@dataclass
class Transaction:
    ws: Workspace
    command: str | None = None
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    staged: list[Path] = field(default_factory=list)
    committed: bool = False

    def new_path(self, table: str, key: str | None = None) -> tuple[Path, Path]:
        """(temporary path to write, final path) for a new file of `table`."""
        folder = self.ws.tables_dir / table
        with guard(folder, step=self.command):
            folder.mkdir(parents=True, exist_ok=True)
        final = folder / (f"{file_key(key)}--{new_id()}.parquet" if key else f"{new_id()}.parquet")
        tmp = final.with_name(final.name + ".tmp")
        self.staged += [tmp, final]
        return tmp, final

    def stage(self, table: str, final: Path) -> None:
        self.added.setdefault(table, []).append(final.relative_to(self.ws.tables_dir).as_posix())

    def add(self, table: str, df: "pl.DataFrame", key: str | None = None) -> Path | None:
        """Write a DataFrame as a new Parquet file of `table`, conformed to the contract.

        A key (e.g. 'main-it1-<model_id>') goes into the file name, so a later step can replace
        exactly the files of that key: tx.remove(table, ws.files(table, key=key)).
        """
        if df.height == 0:
            return None
        df = conform(df, table)
        tmp, final = self.new_path(table, key)
        with guard(final, needed=df.estimated_size, written=lambda: folder_bytes(tmp), step=self.command):
            df.write_parquet(tmp, compression="zstd", statistics=True)
            os.replace(tmp, final)
        self.stage(table, final)
        return final

    def copy(self, table: str, con: "duckdb.DuckDBPyConnection", sql: str, params: dict | None = None,
             key: str | None = None) -> Path:
        """Write the rows of a DuckDB query as a new Parquet file of `table`, cast to the contract.

        For steps that stay in DuckDB (filters): no polars or pyarrow import on their path.
        """
        spec = TABLES[table]
        cols = ", ".join(f'CAST("{c.name}" AS {c.type}) AS "{c.name}"' for c in spec.columns)
        tmp, final = self.new_path(table, key)
        target = str(tmp).replace("'", "''")
        with guard(final, written=lambda: folder_bytes(tmp), step=self.command):
            con.execute(f"COPY (SELECT {cols} FROM ({sql})) TO '{target}' (FORMAT parquet, COMPRESSION zstd)",
                        params or {})
            os.replace(tmp, final)
        self.stage(table, final)
        return final

    @contextlib.contextmanager
    def writer(self, table: str) -> Iterator["TableWriter"]:
        """Stream DataFrames into one new Parquet file of `table` (row group by row group)."""
        tmp, final = self.new_path(table)
        w = TableWriter(table, tmp, step=self.command)
        try:
            yield w
        finally:
            w.close()
        if w.rows:
            with guard(final, written=lambda: folder_bytes(tmp), step=self.command):
                os.replace(tmp, final)
            self.stage(table, final)
        else:
            tmp.unlink(missing_ok=True)

    def remove(self, table: str, files: list[Path]) -> None:
        self.removed.setdefault(table, []).extend(f.relative_to(self.ws.tables_dir).as_posix() for f in files)

    def replace(self, table: str) -> None:
        """Drop every current file of `table` in this commit (the new ones take their place)."""
        self.remove(table, self.ws.files(table))

    def commit(self) -> None:
        if not (self.added or self.removed):
            self.committed = True
            return
        state = self.ws.state()
        now = time.time()
        records = state.setdefault("files", {})
        for table, rels in self.removed.items():
            current = state["tables"].get(table, [])
            state["tables"][table] = [r for r in current if r not in set(rels)]
            state.setdefault("trash", []).extend({"path": r, "removed_at": now} for r in rels)
            for r in rels:
                records.pop(r, None)
        for table, rels in self.added.items():
            state["tables"].setdefault(table, []).extend(rels)
            for r in rels:  # read back from the page cache just written: what `curate check` verifies later
                records[r] = file_record(self.ws.tables_dir / r)
        state["generation"] = int(state["generation"]) + 1
        try:
            write_text(self.ws.state_path, json.dumps(state, indent=1))
        except BaseException:  # the commit point not reached: the staged files are this step's to remove
            self.abort()
            raise
        self.committed = True
        self.ws.refresh_catalog(state)

    def abort(self) -> None:
        for path in self.staged:
            path.unlink(missing_ok=True)


def query_frame(con: "duckdb.DuckDBPyConnection", sql: str, params: dict | None = None) -> "pl.DataFrame":
    """Run sql on con and return the result as a polars DataFrame (through Arrow, no copies per row)."""
    import polars as pl

    return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())
