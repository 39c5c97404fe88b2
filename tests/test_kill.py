"""Kill-and-rerun over every write command: a real `curate` process killed with SIGKILL at seeded random points of
its write phase, then the same command run again to the end. The final tables equal those of a clean run, no
temporary file remains beside the workspace or the output, and `curate check` finds the workspace sound.

A kill point is "the command has begun writing" (its workspace lock taken, or a staging folder beside its output)
plus a seeded random delay, so it lands among the writes rather than in the imports; a step that commits once, in
a few tens of milliseconds at its end, is killed at a seeded point of the second half of its measured run time
instead, on a fresh copy each time. `curate run` has its own
SIGKILL test in tests/test_run.py (the whole loop is too slow to run twice here); it checks the same things.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.atomic import _TEMP
from curate.workspace import Workspace

from .conftest import hh_row, query, write_jsonl
from .test_generate import tiny  # noqa: F401 - the tiny byte-level BPE policy, a session fixture

pytest.importorskip("torch")

SEED = 19
ROOT = Path(__file__).resolve().parents[1]
# columns that differ between any two runs (ids and clocks), left out of the comparison
VOLATILE = {"ingest_id", "subset_id", "created_at", "started_at", "finished_at", "seconds", "counts"}


def rows(n: int, start: int = 0) -> list[dict]:
    return [hh_row(f"question {i} about topic {i % 7} ?", f"answer {i % 5} is good and kind",
                   f"answer {i % 5} is bad") for i in range(start, start + n)]


def tables(root: Path) -> dict[str, list]:
    """Every table's rows without the volatile columns, sorted, floats rounded (a resumed embed batches texts
    differently, which moves float32 vectors in their last bits)."""
    from curate.tables import TABLES

    def norm(v):
        if isinstance(v, float):
            return round(v, 5)
        if isinstance(v, (list, tuple)):
            return tuple(norm(x) for x in v)
        return v

    out = {}
    for name, spec in TABLES.items():
        cols = [c for c in spec.column_names if c not in VOLATILE]
        got = query(root, f"select {', '.join(repr(c).replace(chr(39), chr(34)) for c in cols)} from {name}")
        out[name] = sorted((tuple(norm(v) for v in r) for r in got), key=repr)
    return out


def temporaries(*folders: Path) -> list[str]:
    """Staged files and folders a write leaves if it never finishes: `.tmp` table files, curate.atomic's temps."""
    found = []
    for folder in folders:
        for p in folder.rglob("*") if folder.exists() else []:
            if p.name.endswith(".tmp") or _TEMP.match(p.name):
                found.append(str(p))
    return found


def unreferenced(root: Path) -> list[str]:
    """Files under tables/ that state.json neither holds live nor keeps in its trash."""
    state = Workspace(root).state()
    known = {r for rels in state["tables"].values() for r in rels} | {t["path"] for t in state.get("trash", [])}
    return [p.as_posix() for p in (root / "tables").rglob("*") if p.is_file()
            and p.relative_to(root / "tables").as_posix() not in known]


def writing(ws: Path, out: Path | None):
    """Whether the command has begun writing since this was called: it took the workspace lock (which writes the
    lock file), or a staging folder of its output is there."""
    lock = ws / ".lock"
    before = lock.stat().st_mtime_ns if lock.exists() else None

    def started() -> bool:
        if lock.exists() and lock.stat().st_mtime_ns != before:
            return True
        return out is not None and any(_TEMP.match(p.name) for p in out.parent.glob(f".{out.name}.*"))
    return started


def lifetime(args: list, base: Path, scratch: Path) -> float:
    """Seconds `curate ARGS` takes from start to end on a copy of `base`. A step that commits once writes for a
    few tens of milliseconds at the end of its life, too briefly to be caught by watching for it: its kill points are
    drawn from the second half of this (imports and reading come first, the writes last)."""
    shutil.copytree(base, scratch)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    assert subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args), "-w", scratch, "-q"], env=env,
                          capture_output=True).returncode == 0
    return time.monotonic() - t0


def kill_at_random_points(args: list, ws: Path, out: Path | None, rng: random.Random, points: int,
                          spread: float, life: float | None = None) -> list[str]:
    """Run `curate ARGS` `points` times, each killed with SIGKILL a random 0..spread s after it began writing (or
    when it ends first); with `life`, 0.5..0.95 of it after it started instead (and an attempt that ended first
    shortens `life` to what it took). Returns, per attempt, 'killed' or how it ended."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    how = []
    for _ in range(points):
        delay, started, t0 = rng.uniform(0, spread), writing(ws, out), time.monotonic()
        if life is not None:
            delay, started = rng.uniform(0.5, 0.95) * life, (lambda: True)
        proc = subprocess.Popen([sys.executable, "-m", "curate.cli", *map(str, args)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and not started() and time.monotonic() < deadline:
            time.sleep(0.002)
        end = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            how.append("killed")
        else:
            how.append(f"ended {proc.returncode}: {proc.stderr.read().decode()[-300:]}")
            life = life and time.monotonic() - t0
        proc.wait()
        proc.stderr.close()
        assert how[-1] == "killed" or how[-1].startswith("ended 0"), how[-1]
    return how


@pytest.fixture(scope="module")
def stages(tmp_path_factory, tiny):  # noqa: F811 - the imported fixture
    """Clean runs, one command after another, each stage's workspace kept: the reference of the killed runs."""
    from click.testing import CliRunner

    from curate.cli import main

    tmp = tmp_path_factory.mktemp("kill")
    os.environ.setdefault("CURATE_CACHE", str(tmp / "cache"))
    src = write_jsonl(tmp / "data" / "toy" / "train.jsonl", rows(24))
    runner = CliRunner()

    def cli(*a):
        r = runner.invoke(main, [str(x) for x in a], catch_exceptions=False, prog_name="curate")
        assert r.exit_code == 0, r.output
        return r

    ws = tmp / "ws"
    cli("ingest", src, "-w", ws, "--sft-fraction", "0.25", "-q")
    prompts = [p for (p,) in query(ws, "select distinct prompt from pairs where role = 'pref' order by 1")]
    gens = write_jsonl(tmp / "gens.jsonl", [{"prompt": p, "generation": f"answer {i % 5} is fine"}
                                            for i, p in enumerate(prompts)])
    steps = {
        "generations import": ["generations", "import", gens, "-i", "1", "--policy", "p"],
        "embed": ["embed", "--backend", "torch", "--shard-size", "8", "--batch-size", "4"],
        "score": ["score", "-i", "1"],
        "filter": ["filter", "-s", "positive", "--eps", "2", "-i", "1", "--size", "8", "--name", "kept"],
    }
    out = {"ingest": ws, "src": src, "tmp": tmp, "steps": steps, "tiny": tiny[0], "cli": cli}
    before = ws
    for name, args in steps.items():
        here = tmp / name.replace(" ", "-")
        shutil.copytree(before, here)
        cli(*args, "-w", here, "-q")
        out[name], out[f"before {name}"], before = here, before, here
    return out


def rerun_equals_clean(stages, name: str, args: list, base: Path, clean: Path, points: int, spread: float,
                       tmp_path: Path, out: Path | None = None, life: float | None = None) -> list[str]:
    ws = tmp_path / "ws"
    shutil.copytree(base, ws)
    how = kill_at_random_points([*args, "-w", ws, "-q"], ws, out, random.Random(f"{SEED}-{name}"), points, spread,
                                life)
    stages["cli"](*args, "-w", ws, "-q")
    assert tables(ws) == tables(clean), (name, how)
    assert temporaries(ws, *([out.parent] if out else [])) == [] and unreferenced(ws) == [], (name, how)
    return how


@pytest.mark.parametrize("name", ["generations import", "embed", "score", "filter"])
def test_a_killed_workspace_step_reruns_to_the_clean_result(stages, name, tmp_path, cli):
    args, base = stages["steps"][name], stages[f"before {name}"]
    if name == "embed":  # it writes shard after shard for seconds: killed twice while it writes, then rerun
        how = rerun_equals_clean(stages, name, args, base, stages[name], 2, 3.0, tmp_path)
    else:  # the others commit once, in a fraction of a second at the end: each point killed and rerun on its own
        life, how = lifetime(args, base, tmp_path / "scratch"), []
        for point in range(3):
            how += rerun_equals_clean(stages, f"{name}-{point}", args, base, stages[name], 1, 0.0,
                                      tmp_path / f"point{point}", life=life)
    assert "killed" in how, how
    assert cli("check", "-w", tmp_path / ("ws" if name == "embed" else "point0/ws"), "-q").exit_code == 0


def test_a_killed_ingest_of_the_shared_file_reruns_to_the_clean_result(stages, shared_hh, tmp_path, cli):
    clean = tmp_path / "clean"
    assert cli("ingest", shared_hh, "-w", clean, "--sft-fraction", "0.5", "-q").exit_code == 0
    ws = tmp_path / "ws"
    how = kill_at_random_points(["ingest", shared_hh, "-w", ws, "--sft-fraction", "0.5", "-q"], ws, None,
                                random.Random(f"{SEED}-ingest"), 3, 1.0)
    assert "killed" in how
    assert cli("ingest", shared_hh, "-w", ws, "--sft-fraction", "0.5", "-q").exit_code == 0
    assert tables(ws) == tables(clean) and query(ws, "select count(*) from pairs")[0][0] == 2312
    assert temporaries(ws) == [] and unreferenced(ws) == []


def test_a_killed_export_leaves_no_staging_and_the_rerun_writes_the_same_rows(stages, tmp_path, cli):
    import polars as pl

    ws = stages["filter"]
    clean = tmp_path / "clean" / "kept.parquet"
    assert cli("export", "kept", "-w", ws, "-o", clean, "--format", "parquet", "-q").exit_code == 0
    target = tmp_path / "out" / "kept.parquet"
    how = kill_at_random_points(["export", "kept", "-w", ws, "-o", target, "--format", "parquet", "--force", "-q"], ws,
                                target, random.Random(f"{SEED}-export"), 3, 0.1)
    assert cli("export", "kept", "-w", ws, "-o", target, "--format", "parquet", "--force", "-q").exit_code == 0, how
    assert pl.read_parquet(target).equals(pl.read_parquet(clean))
    assert temporaries(target.parent, ws) == []


def test_a_killed_generate_resumes_to_the_clean_generations(stages, tmp_path, cli):
    args = ["generate", "--model", stages["tiny"], "-i", "2", "--max-new-tokens", "4", "--limit", "8",
            "--batch-size", "2", "--shard-size", "2"]
    clean = tmp_path / "clean"
    shutil.copytree(stages["ingest"], clean)
    assert cli(*args, "-w", clean, "-q").exit_code == 0
    how = rerun_equals_clean(stages, "generate", args, stages["ingest"], clean, 1, 3.0, tmp_path)
    assert "killed" in how and query(tmp_path / "ws", "select count(*) from generations where iteration = 2") == [(8,)]


def test_killed_trainers_rerun_to_a_model_that_loads_and_leave_the_workspace_as_it_was(stages, tmp_path):
    """sft, rm, then ppo against that reward model: each killed once while it writes, then run again."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    ws, base = stages["filter"], stages["tiny"]
    before = tables(ws)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"question {i} about topic 1 ?"} for i in range(2)])
    jobs = {
        "sft": (["train", "sft", "--model", base, "-w", ws, "--max-steps", "2", "--max-length", "64"],
                AutoModelForCausalLM),
        "rm": (["train", "rm", "--base", base, "--subset", "kept", "-w", ws, "--epochs", "1", "--max-length", "64"],
               AutoModelForSequenceClassification),
        "ppo": (["train", "ppo", "--policy", base, "--reward", tmp_path / "rm", "--prompts", prompts, "--steps", "2",
                 "--save-every", "1", "--batch-size", "2", "--mini-batch-size", "1", "--max-new-tokens", "3"],
                AutoModelForCausalLM),
    }
    killed = {}
    for name, (args, auto) in jobs.items():
        out = tmp_path / name
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        rng = random.Random(f"{SEED}-{name}")
        proc = subprocess.Popen([sys.executable, "-m", "curate.cli", *map(str, args), "-o", out, "-q"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        staging, t0 = writing(ws, out), time.monotonic()
        # sft and rm stage their output at the end; ppo saves into it after every step (--save-every 1): kill one
        # while it saves, or a random time into its run
        wait, delay = rng.choice(["training", "saving"]), rng.uniform(3, 8)
        while proc.poll() is None and time.monotonic() - t0 < 180:
            if (staging() or out.exists()) if wait == "saving" else time.monotonic() - t0 > delay:
                break
            time.sleep(0.01)
        killed[name] = f"{wait}: " + ("killed" if proc.poll() is None else "it ended first")
        proc.kill()
        proc.wait()
        # run again in a process of its own too: a trainer run in this one leaves global state behind (accelerate's)
        # that changed later tests' numbers
        r = subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args), "-o", out, "-q",
                            *(["--force"] if name != "ppo" else [])], env=env, capture_output=True, text=True)
        assert r.returncode == 0, (name, killed, r.stderr[-2000:])  # ppo resumes from its output; the others start
        # over
        assert auto.from_pretrained(out) is not None
        assert temporaries(out.parent) == [], name
    assert tables(ws) == before
    assert "killed" in " ".join(killed.values()), killed
