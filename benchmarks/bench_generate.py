"""Generation benchmark (issue 5): SmolLM2-135M on 256 real prompts, 64 new tokens, chat template, top-k 50.

    python benchmarks/bench_generate.py                    # 256 prompts, batch 32
    python benchmarks/bench_generate.py --n 64 --batch-size 16

Naive: `model.generate` one prompt at a time, as a user would write it. curate: `generate()` (what
`curate generate` runs) with length-bucketed, left-padded batches and the KV cache. Both in fresh
processes on the same prompts; tokens/s counts new tokens up to EOS over the time spent generating
(model load excluded on both sides; the JSON has the wall times too). Target: at least 5x the
baseline's tokens/s on a 2-core CPU.

Where vLLM is found (--vllm-python, $CURATE_VLLM_PYTHON, or .venv-vllm from `make vllm-env`), the same prompts
also go through `curate generate --backend vllm` (its server, one request per batch of the plan, per-batch
seeds) and through raw vLLM (the offline `LLM` class on the same token ids, compiled and eager), each timed
inside generation with start-up reported apart. Target: curate's best backend within 10% of raw vLLM's
tokens/s. Writes benchmarks/results/generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402
from _measure import measure, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="first N rows of the shared file")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--vllm-python", default=os.environ.get("CURATE_VLLM_PYTHON")
                    or str(HERE.parent / ".venv-vllm" / "bin" / "python"), help="python with vLLM ('' to skip)")
    ap.add_argument("--only-vllm", action="store_true", help="skip the naive and transformers sides")
    ap.add_argument("--out", default=str(HERE / "results" / "generate.json"))
    args = ap.parse_args()
    vllm_py = args.vllm_python if args.vllm_python and Path(args.vllm_python).exists() else None
    if not synth.REAL_PAIRS.exists():
        sys.exit(f"missing {synth.REAL_PAIRS}: the benchmark needs the shared HH-RLHF file")
    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-gen-"))
    try:
        ws = tmp / "ws"
        subprocess.run([sys.executable, "-m", "curate.cli", "ingest", str(synth.REAL_PAIRS), "-w", str(ws), "-q"],
                       check=True)
        measure("generate_tasks:curate_generate", str(ws), "2", "4", "2", "99")  # converts/caches the model once
        vllm = run_vllm(ws, tmp, args, vllm_py) if vllm_py else {"skipped": "no python with vLLM (make vllm-env)"}
        if args.only_vllm:
            write_result("generate", {"vllm": vllm}, args.out)
            return
        print(f"naive: {args.n} prompts one at a time ...", file=sys.stderr)
        base = measure("generate_tasks:naive", str(ws), str(args.n), str(args.max_new_tokens))
        print(f"curate: batch {args.batch_size} ...", file=sys.stderr)
        ours = measure("generate_tasks:curate_generate", str(ws), str(args.n), str(args.max_new_tokens),
                       str(args.batch_size), "1")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    b, o = base["result"], ours["result"]
    row = {
        "prompts": o["prompts"], "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "naive_new_tokens": b["new_tokens"], "curate_new_tokens": o["new_tokens"],
        "naive_generate_seconds": round(b["generate_seconds"], 2), "curate_generate_seconds": round(o["generate_seconds"], 2),
        "naive_tokens_per_s": round(b["new_tokens"] / b["generate_seconds"], 1),
        "curate_tokens_per_s": round(o["new_tokens"] / o["generate_seconds"], 1),
        "naive_wall_seconds": round(base["seconds"], 2), "curate_wall_seconds": round(ours["seconds"], 2),
        "naive_peak_rss_mib": round(base["peak_rss_bytes"] / 2**20),
        "curate_peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20),
    }
    row["speedup_tokens_per_s"] = round(row["curate_tokens_per_s"] / row["naive_tokens_per_s"], 2)
    print(f"{row['prompts']} prompts, {args.max_new_tokens} new tokens: curate {row['curate_tokens_per_s']} tokens/s "
          f"({row['curate_generate_seconds']} s, wall {row['curate_wall_seconds']} s) vs naive "
          f"{row['naive_tokens_per_s']} tokens/s ({row['naive_generate_seconds']} s, wall {row['naive_wall_seconds']} s): "
          f"ratio {row['speedup_tokens_per_s']}x")
    if "curate_tokens_per_s" in vllm:
        best = max(row["curate_tokens_per_s"], vllm["curate_tokens_per_s"])
        vllm["curate_best_tokens_per_s"] = best
        vllm["best_vs_raw"] = round(best / vllm["raw_best_tokens_per_s"], 3)
        print(f"curate's best backend {best} tokens/s = {vllm['best_vs_raw']}x raw vLLM's best "
              f"({vllm['raw_best_tokens_per_s']} tokens/s)")
    write_result("generate", {"result": row, "vllm": vllm}, args.out)


def run_vllm(ws: Path, tmp: Path, args, vllm_py: str) -> dict:
    """curate --backend vllm, then raw vLLM compiled and eager, on the same token ids; tokens/s inside generation."""
    ids = tmp / "ids.json"
    info = measure("generate_tasks:prompt_ids", str(ws), str(args.n), str(ids))["result"]
    print(f"curate --backend vllm: batch {args.batch_size} ...", file=sys.stderr)
    ours = measure("generate_tasks:curate_generate", str(ws), str(args.n), str(args.max_new_tokens),
                   str(args.batch_size), "2", "vllm", vllm_py)
    o = ours["result"]
    out = {"python": vllm_py, "prompts": o["prompts"], "curate_new_tokens": o["new_tokens"],
           "curate_generate_seconds": round(o["generate_seconds"], 2), "curate_start_seconds": o["start_seconds"],
           "curate_wall_seconds": round(ours["seconds"], 2), "curate_server_args": o["server_args"],
           "curate_tokens_per_s": round(o["new_tokens"] / o["generate_seconds"], 1), "dtype": o["dtype"]}
    for label, eager in (("raw_compiled", "0"), ("raw_eager", "1")):
        print(f"raw vLLM ({label}) ...", file=sys.stderr)
        p = subprocess.run([vllm_py, str(HERE / "vllm_raw.py"), info["folder"], str(ids), str(args.max_new_tokens),
                            o["dtype"], eager], capture_output=True, text=True,
                           env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "4")})
        if p.returncode:
            out[label] = {"error": p.stderr[-2000:]}
            continue
        r = json.loads(next(x for x in reversed(p.stdout.splitlines()) if x.startswith('{"prompts"')))  # vLLM logs too
        out[label] = {**r, "tokens_per_s": round(r["new_tokens"] / r["generate_seconds"], 1)}
    raws = [out[k]["tokens_per_s"] for k in ("raw_compiled", "raw_eager") if "tokens_per_s" in out[k]]
    if raws:
        out["raw_best_tokens_per_s"] = max(raws)
        out["curate_vs_raw"] = round(out["curate_tokens_per_s"] / max(raws), 3)
        print(f"curate --backend vllm {out['curate_tokens_per_s']} tokens/s vs raw vLLM "
              + ", ".join(f"{k} {out[k].get('tokens_per_s')} tokens/s (start {out[k].get('start_seconds', 0):.0f} s)"
                          for k in ("raw_compiled", "raw_eager")) + f": {out['curate_vs_raw']}x the best")
    return out


if __name__ == "__main__":
    main()
