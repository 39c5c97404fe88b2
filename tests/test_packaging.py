"""The wheel carries what an installed `curate` needs: the package, the SQL filters, the entry point."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import curate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contents(tmp_path):
    pytest.importorskip("build", reason="building the wheel needs the `build` package (pip install build)")
    pytest.importorskip("hatchling", reason="building the wheel needs the `hatchling` build backend")
    p = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = tmp_path.glob("curate-*.whl")
    assert wheel.name.startswith(f"curate-{curate.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    # the filters ship inside the package (pyproject force-include), where curate.resources looks
    assert "curate/sql/README.md" in names
    assert {"curate/cli.py", "curate/ingest/__init__.py", "curate/ingest/hh.py", "curate/train/rm.py"} <= names
    # one import package: a user's own train.py or train/ cannot shadow the trainers (issue 12)
    assert not any(n.startswith(("tests/", "benchmarks/", "train/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "curate = curate.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_sql_folder_is_found_from_the_checkout():
    from curate.resources import sql_dir

    assert (sql_dir() / "README.md").is_file()
