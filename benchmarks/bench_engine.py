"""`curate embed --engine ray` against the local engine on the shared HH-RLHF pairs (issue 18), each in a fresh process.

    python benchmarks/bench_engine.py                  # 1,500 texts, 2 actors of 1 CPU, --backend torch both sides
    python benchmarks/bench_engine.py --texts 4000 --actors 2 --repeat 2

(a) local: `curate embed --backend torch --limit N` on a fresh workspace of the shared pairs
(b) ray:   the same with `--engine ray --actors A --cpus-per-actor 1`, Ray started by the step on this machine
    (start-up, actor creation and model loading on every actor counted in its time)
(a) and (b) alternate --repeat times. Reported: each side's seconds and texts/s, the ratio b/a (the engine's
overhead at this scale), and from (b)'s manifest the per-actor rate (a shard's texts / its seconds inside the
actor), the number a cluster projection starts from. Both sides use --backend torch so the same network runs
(the local `auto` would calibrate first). Writes benchmarks/results/engine.json with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "engine.json"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    common = ["--backend", "torch", "--limit", str(a.texts), "--shard-size", str(a.shard_size), "-q"]
    runs = []
    try:
        for rep in range(a.repeat):
            ws_a, ws_b = workspace(tmp / f"a{rep}"), workspace(tmp / f"b{rep}")
            print(f"(a) local [{rep + 1}/{a.repeat}] ...", file=sys.stderr)
            local = measure("embed_tasks:curate_cli", "embed", "-w", str(ws_a), *common)
            print(f"(b) --engine ray --actors {a.actors} [{rep + 1}/{a.repeat}] ...", file=sys.stderr)
            ray = measure("embed_tasks:curate_cli", "embed", "-w", str(ws_b), *common, "--engine", "ray",
                          "--actors", str(a.actors), "--cpus-per-actor", "1", "--gpus-per-actor", "0")
            runs.append({"local_s": round(local["seconds"], 2), "ray_s": round(ray["seconds"], 2),
                         "ratio": round(ray["seconds"] / local["seconds"], 2), **per_actor(ws_b)})
            print(json.dumps(runs[-1]), file=sys.stderr)
            shutil.rmtree(ws_a)
            shutil.rmtree(ws_b)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = statistics.median(r["ratio"] for r in runs)
    best = min(runs, key=lambda r: r["ratio"])
    print(f"{a.texts:,} texts: local {best['local_s']} s ({a.texts / best['local_s']:,.0f} texts/s), ray "
          f"{best['ray_s']} s ({a.texts / best['ray_s']:,.0f} texts/s) with {a.actors} actors; ray/local "
          f"{ratio:.2f}x (median of {len(runs)}); per actor {best['per_actor_texts_per_s_median']} texts/s")
    write_result("engine", {"texts": a.texts, "actors": a.actors, "shard_size": a.shard_size, "backend": "torch",
                            "model": "all-MiniLM-L6-v2 (packaged)", "runs": runs, "ratio_median": ratio}, a.out)


if __name__ == "__main__":
    main()
