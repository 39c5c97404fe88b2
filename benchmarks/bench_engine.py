"""`curate embed --engine ray` against the local engine on the shared HH-RLHF pairs (issue 18), each in a fresh process.

    OMP_NUM_THREADS=1 python benchmarks/bench_engine.py            # 1,500 texts; ray with 1 and with 2 actors
    OMP_NUM_THREADS=1 python benchmarks/bench_engine.py --texts 4000 --actors 1,2 --repeat 2

(a) local: `curate embed --backend torch --limit N` on a fresh workspace of the shared pairs
(b) ray:   the same with `--engine ray --actors A --cpus-per-actor 1`, Ray started by the step on this machine
    (Ray's start-up, actor creation and model loading on every actor counted in its time)
The sides alternate --repeat times. With OMP_NUM_THREADS=1 (the project's rule on its shared 2-core machine; Ray
gives each 1-CPU actor one thread too) the local side and a 1-actor pool do the same compute: their ratio is the
engine's overhead at this scale; 2 actors show what a second core buys. From each ray run's manifest: the rate
inside an actor (a shard's texts / its seconds, model loaded), the number a cluster projection starts from. Both
sides use --backend torch so the same network runs (the local `auto` would calibrate first). Writes
benchmarks/results/engine.json with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402
from _measure import measure, write_result  # noqa: E402


def workspace(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "curate.cli", "ingest", str(synth.REAL_PAIRS), "-w", str(path), "-q"],
                   check=True)
    return path


def per_actor(ws: Path) -> dict:
    """From the ray run's manifest: texts per second inside each actor (model loaded), per shard and per node."""
    from curate.workspace import Workspace

    eng = Workspace(ws).manifests("embed")[-1]["engine"]
    rates = [s["rows"] / s["seconds"] for s in eng["shards"] if s.get("seconds")]
    return {"shards": len(eng["shards"]), "nodes_used": len(eng.get("nodes_used", [])), "actors": eng["actors"],
            "per_actor_texts_per_s_median": round(statistics.median(rates), 1) if rates else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1500)
    ap.add_argument("--actors", default="1,2", help="pool sizes to run, comma-separated")
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "engine.json"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    common = ["--backend", "torch", "--limit", str(a.texts), "--shard-size", str(a.shard_size), "-q"]
    pools = [int(x) for x in a.actors.split(",")]
    runs = []
    try:
        for rep in range(a.repeat):
            ws = workspace(tmp / f"local{rep}")
            print(f"(a) local [{rep + 1}/{a.repeat}] ...", file=sys.stderr)
            local = measure("embed_tasks:curate_cli", "embed", "-w", str(ws), *common)["seconds"]
            shutil.rmtree(ws)
            for n in pools:
                ws = workspace(tmp / f"ray{n}-{rep}")
                print(f"(b) --engine ray --actors {n} [{rep + 1}/{a.repeat}] ...", file=sys.stderr)
                ray = measure("embed_tasks:curate_cli", "embed", "-w", str(ws), *common, "--engine", "ray",
                              "--actors", str(n), "--cpus-per-actor", "1", "--gpus-per-actor", "0")["seconds"]
                runs.append({"repeat": rep, "local_s": round(local, 2), "ray_s": round(ray, 2),
                             "ratio": round(ray / local, 2), **per_actor(ws)})
                print(json.dumps(runs[-1]), file=sys.stderr)
                shutil.rmtree(ws)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for n in pools:
        mine = [r for r in runs if r["actors"] == n]
        summary[str(n)] = {"ratio_median": statistics.median(r["ratio"] for r in mine),
                           "ray_s_min": min(r["ray_s"] for r in mine),
                           "per_actor_texts_per_s": statistics.median(r["per_actor_texts_per_s_median"] for r in mine)}
    local_s = min(r["local_s"] for r in runs)
    print(f"{a.texts:,} texts, --backend torch, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}: local "
          f"{local_s} s ({a.texts / local_s:,.0f} texts/s)")
    for n, s in summary.items():
        print(f"  ray, {n} actor(s): {s['ray_s_min']} s ({a.texts / s['ray_s_min']:,.0f} texts/s), ray/local "
              f"{s['ratio_median']:.2f}x (median of {a.repeat}); inside an actor {s['per_actor_texts_per_s']} texts/s")
    write_result("engine", {"texts": a.texts, "shard_size": a.shard_size, "backend": "torch",
                            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                            "model": "all-MiniLM-L6-v2 (packaged)", "local_s_min": local_s, "by_actors": summary,
                            "runs": runs}, a.out)

if __name__ == "__main__":
    main()
