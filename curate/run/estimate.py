"""What a run will cost before it starts: the work per iteration (prompts, tokens, texts, RM and PPO steps) and
the expected time, from the throughput this workspace's finished runs measured (or curate's CPU benchmark).
`curate run --dry-run` prints it; it loads no model.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..runs import measured_throughput
from ..workspace import Workspace
from .config import RunConfig

# Throughputs measured by curate's benchmarks on a 2-core CPU (benchmarks/results/*.json) with the offline
# defaults: all-MiniLM-L6-v2 on ONNX Runtime, SmolLM2-135M in bfloat16. A workspace's own finished runs
# replace them with what its steps measured.
DEFAULT_THROUGHPUT = {
    "embed_texts_per_s": 241.0,  # bench_embed (b): 6,871 texts in 28.5 s
    "generate_tokens_per_s": 186.6,  # bench_generate: batch 32, bfloat16
    "sft_rows_per_s": 1.5,  # the RM's rate: both are one forward and backward pass per transcript
    "rm_pairs_per_s": 1.31,  # a full epoch over a 2,000-pair subset, max_length 512
    "ppo_prompts_per_s": 0.13,  # bench_train: 4 prompts x 32 new tokens per step
}


def throughput(ws: Workspace) -> dict[str, tuple[float, str]]:
    """{measure: (value, where from)}: the latest value a finished run step measured, else the default."""
    out = {k: (v, "curate's CPU benchmark") for k, v in DEFAULT_THROUGHPUT.items()}
    out.update({k: v for k, v in measured_throughput(ws).items() if k in out})
    return out


def estimate(cfg: RunConfig) -> dict:
    """Work per iteration and the expected time: what `curate run --dry-run` prints. Loads no model."""
    ws = Workspace(cfg.run.workspace)
    n_pref = n_sft = n_texts = 0
    n_prompts = None
    if ws.exists:
        # [data] where is the user's own SQL predicate; the split is a bound parameter
        extra = f" and ({cfg.data.where})" if cfg.data.where else ""
        split = {"split": cfg.data.split}
        with ws.connect() as con:
            n_pref, n_sft, n_prompts = con.execute(
                "select count(*) filter (role = 'pref'), count(*) filter (role = 'sft'), count(distinct prompt) "
                f"filter (role = 'pref') from pairs where split = $split{extra}", split).fetchone()
            pref = f"from pairs where role = 'pref' and split = $split{extra}"
            n_texts = con.execute(f"select count(distinct t) from (select chosen as t {pref} "
                                  f"union all select rejected {pref})", split).fetchone()[0]
    known = bool(n_prompts)
    counts_from = "the workspace"
    if not known:  # not ingested yet: count the sources' lines (cheap) for an order of magnitude
        n_lines, unknown = _count_source_lines(cfg)
        if unknown:  # hf:IDs and folders: unknown until ingested
            counts_from = (f"unknown until {', '.join(dict.fromkeys(unknown))} is ingested: run the config once, or "
                           "`curate ingest` it into the workspace first")
            n_pref = n_sft = n_prompts = n_texts = None
        else:
            counts_from = "the source files' lines"
            n_pref, n_sft = int(n_lines * (1 - cfg.data.sft_fraction)), int(n_lines * cfg.data.sft_fraction)
            n_prompts, n_texts = n_pref, 2 * n_pref
    g, p = cfg.generate, cfg.ppo
    if n_prompts is None:
        prompts = g.limit or None
    else:
        prompts = min(n_prompts, g.limit) if g.limit else int(n_prompts * g.sample_fraction)
    subset = cfg.filter.size if n_pref is None else min(cfg.filter.size, n_pref)
    branches = len(cfg.run.strategies)
    rate = throughput(ws)
    iterations = []
    for k in range(1, cfg.run.alpha + 1):
        samplers = 1 if k == 1 else branches
        # tokens are an upper bound: responses may stop earlier
        tokens = None if prompts is None else prompts * g.samples * g.max_new_tokens * samplers
        texts = None if prompts is None or n_texts is None else \
            (n_texts if k == 1 else 0) + prompts * g.samples * samplers
        seconds = {
            "generate": None if tokens is None else tokens / rate["generate_tokens_per_s"][0],
            "embed": None if texts is None else texts / rate["embed_texts_per_s"][0],
            "rm": subset * cfg.rm.epochs * branches / rate["rm_pairs_per_s"][0],
            "ppo": p.steps * p.batch_size * branches / rate["ppo_prompts_per_s"][0],
        }
        iterations.append({"iteration": k, "policies_sampled": samplers, "prompts": prompts,
                           "tokens_to_generate": tokens, "texts_to_embed": texts,
                           "rm_steps": math.ceil(subset / cfg.rm.batch_size * cfg.rm.epochs) * branches,
                           "ppo_steps": p.steps * branches, "seconds": seconds})
    if cfg.sft.checkpoint:
        sft_rows = 0
    elif cfg.sft.max_steps > 0:
        sft_rows = cfg.sft.max_steps * cfg.sft.batch_size
    else:
        sft_rows = None if n_sft is None else int(n_sft * cfg.sft.epochs)
    sft_seconds = None if sft_rows is None else sft_rows / rate["sft_rows_per_s"][0]
    total = (sft_seconds or 0) + sum(v or 0 for it in iterations for v in it["seconds"].values())
    complete = sft_seconds is not None and all(v is not None for it in iterations for v in it["seconds"].values())
    return {"run": cfg.run.name, "workspace": str(ws.root), "counts_from": counts_from, "complete": complete,
            "pref_pairs": n_pref, "sft_pairs": n_sft, "sft_rows": sft_rows, "sft_seconds": sft_seconds,
            "iterations": iterations, "total_seconds": total,
            "throughput": {k: {"value": v, "from": src} for k, (v, src) in rate.items()}}


def _count_source_lines(cfg: RunConfig) -> tuple[int, list[str]]:
    """(lines of the .jsonl[.gz] sources, the sources that cannot be counted without ingesting them)."""
    import gzip

    from ..demo_data import demo_sources

    n, unknown = 0, []
    for src in cfg.data.sources:
        paths = [str(p) for p in demo_sources()] if src == "demo" else [src["path"] if isinstance(src, dict) else src]
        for p in paths:
            path = Path(p)
            if not path.is_file() or not path.name.endswith((".jsonl", ".jsonl.gz")):
                unknown.append(p)
                continue
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as fh:
                n += sum(1 for _ in fh)
    return n, unknown
