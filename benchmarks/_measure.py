"""Run one benchmark task in a fresh process and report its wall time and peak RSS.

Usage: python benchmarks/_measure.py MODULE:FUNCTION ARG...  -> prints one JSON line.
Each task runs in its own process so peak memory is its own, start-up included.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time

if __name__ == "__main__":
    t0 = time.perf_counter()
    target, *args = sys.argv[1:]
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    mod, fn = target.split(":")
    out = getattr(importlib.import_module(mod), fn)(*args)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": rss, "result": out}))
