"""Run one benchmark task in a fresh process and report its wall time and peak RSS.

Usage: python benchmarks/_measure.py MODULE:FUNCTION ARG...  -> prints one JSON line.
Each task runs in its own process so peak memory is its own, start-up included.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def write_result(name: str, payload: dict, out: str | os.PathLike) -> Path:
    """Write a benchmark's JSON result (with the CPU, its vector flags, the GPU when there is one, and the package
    versions it ran on, plus any the payload names under "versions") atomically, and print where it went and on
    which machine."""
    from curate.atomic import write_text
    from curate.hardware import cpu_summary, gpu_summary
    from curate.provenance import versions

    cpu, gpu = cpu_summary(), gpu_summary()  # gpu_summary reads nvidia-smi: no torch import for the CPU benchmarks
    record = {"benchmark": name, **payload, "cpu": cpu, "cpu_count": cpu["cores"]}
    if gpu:
        record["gpu"] = gpu
    path = write_text(out, json.dumps({**record, "versions": {**versions(), **payload.get("versions", {})}},
                                        indent=2))
    on = f"{cpu['model']} ({cpu['cores']} cores; {', '.join(cpu['flags']) or 'no AVX2'})"
    if gpu:
        on += f" and {len(gpu['devices'])}x {gpu['devices'][0]['name']} (driver {gpu['driver']})"
    print(f"ran on {on}; wrote {path}")
    return path


def measure(task: str, *args: str, env: dict | None = None) -> dict:
    """Run MODULE:FUNCTION(*args) in a fresh interpreter; its {seconds, peak_rss_bytes, result}."""
    out = subprocess.run([sys.executable, str(Path(__file__)), task, *args], check=True, capture_output=True,
                         text=True, env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    t0 = time.perf_counter()
    target, *args = sys.argv[1:]
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    mod, fn = target.split(":")
    out = getattr(importlib.import_module(mod), fn)(*args)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": rss, "result": out}))
