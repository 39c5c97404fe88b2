"""The staging folder workers write shards to, and the driver commits from.

    <workspace>/staging/<step>/<job>/<shard>.parquet    the shard's rows (written to a temporary name, renamed)
    <workspace>/staging/<step>/<job>/<shard>.done       then this marker: {"node", "pid", "rows", "seconds", ...}
    <workspace>/staging/<step>/<job>/todo/<shard>.pkl   the shard's to-do list, written by the driver

<job> names the work's identity (the embedding model; the policy, iteration and sampling settings), so a shard
found there is the same work whichever run wrote it. A shard counts only once its marker exists: a worker killed
between the rename and the marker leaves a .parquet that is simply written again. A task Ray retries writes the
same name with equivalent rows (os.replace: the last write wins, whole). Workers touch nothing else in the
workspace: no catalog, no state.json, no lock, so the staging folder is the only thing they need to reach, on a
path every node sees (shared storage).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

from ..atomic import staged_file, write_text

STAGING = "staging"


class Staging:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @classmethod
    def of(cls, ws, step: str, job: str) -> "Staging":
        from ..workspace import file_key

        return cls(ws.root / STAGING / step / file_key(job))

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.folder / f"{name}.parquet", self.folder / f"{name}.done"

    def write(self, name: str, rows, info: dict[str, Any]) -> None:
        """Worker side: the rows (a polars DataFrame), then the marker that says they are whole."""
        data, done = self._paths(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        with staged_file(data) as tmp:
            rows.write_parquet(tmp, compression="zstd")
        write_text(done, json.dumps({**info, "rows": rows.height}, sort_keys=True))

    def write_todo(self, name: str, payload) -> str:
        """Driver side: a shard's to-do list (its keys and inputs, pickled), read by the actor that takes the shard;
        the tasks carry only this path, so the driver's object store holds no texts however large the job."""
        path = self.folder / "todo" / f"{name}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with staged_file(path) as tmp:
            with open(tmp, "wb") as fh:
                pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return str(path)

    @staticmethod
    def read_todo(path: str):
        with open(path, "rb") as fh:
            return pickle.load(fh)

    def is_done(self, name: str) -> bool:
        data, done = self._paths(name)
        return done.is_file() and data.is_file()

    def done(self) -> list[str]:
        """Names of the shards whose rows and marker are both there, sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name[:-5] for p in self.folder.glob("*.done") if (self.folder / (p.name[:-5] + ".parquet"))
                      .is_file())

    def read(self, name: str):
        """(rows, info) of a done shard."""
        import polars as pl

        data, done = self._paths(name)
        return pl.read_parquet(data), json.loads(done.read_text(encoding="utf-8"))

    def remove(self, name: str) -> None:
        """After the driver committed the shard: marker first, so a half-removed shard is never taken as done."""
        data, done = self._paths(name)
        done.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
        (self.folder / "todo" / f"{name}.pkl").unlink(missing_ok=True)

    def clear(self) -> None:
        """Everything staged for this job (--overwrite starts again)."""
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
