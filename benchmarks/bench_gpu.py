"""GPU benchmark (issue 15): one command, under 8 minutes on one H100/H200, and what one FRFT iteration over all of
HH-RLHF would take there.

    python benchmarks/bench_gpu.py                       # the GPU run: writes benchmarks/results/gpu.json
    python benchmarks/bench_gpu.py --smoke               # tiny sizes, CPU allowed, no vLLM needed (minutes)
    python benchmarks/bench_gpu.py --gpt2-medium models/gpt2-medium --budget 900 --out gpu-long.json
    python benchmarks/bench_gpu.py --sections gen,embed  # some sections only

Sections, each side in its own process with a time budget of its own:
  gen    SmolLM2-135M (chat template) and GPT-2-medium (the HH transcript), 1,024 real prompts of the shared
         harmless-base file, the config's max_new_tokens and top-k 50: a raw `vllm.LLM` given every prompt at once,
         `curate generate --backend vllm`, and `curate generate` with the transformers backend; tokens/s side by side
  embed  100,000 texts (the shared responses and SmolLM2 generations, resampled and tagged so each is distinct:
         3 per pair, as FRFT embeds them): SentenceTransformer.encode as a user writes it vs `curate embed`
  rm     one epoch of `curate train rm` from GPT-2-medium on 2,000 real pairs, the config's [rm] knobs
  ppo    10 steps of `curate train ppo` on GPT-2-medium with the config's [ppo] knobs
  scale  (not in the default run: --sections scale) issue 18's paths past one process: `curate embed --engine ray`
         (a Ray the side starts, one actor per GPU), `curate generate --engine ray --backend vllm` (ray.data.llm's
         vLLM replicas) and one epoch of the reward model under `accelerate launch` with
         configs/accelerate/multi_gpu.yaml on every GPU (--smoke: cpu_2proc.yaml, 2 CPU processes)
and then a projection, from those rates, of one FRFT iteration over 160,800 pairs (gpu_projection.py states the
formula; the JSON and the console repeat it).

The budget (--budget, default 470 s) is shared out in proportion to each side's weight, what a side leaves unused
going to the ones after it. A side that reaches its budget stops between batches or steps (or is killed) and is
recorded as partial, with the rates of the work it finished. Offline machines: pass model folders with
--smollm2 / --gpt2-medium (or CURATE_BENCH_SMOLLM2 / CURATE_BENCH_GPT2_MEDIUM); README.md, "GPU benchmark", says
how to prepare the wheels and model folders beforehand.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import gpu_projection  # noqa: E402
import synth  # noqa: E402
from _measure import write_result  # noqa: E402

# the sizes of the issue (GPU) and of --smoke (a 2-core CPU, a few minutes)
FULL = dict(budget=470, prompts=1024, embed_texts=100_000, rm_pairs=2000, ppo_steps=10, gen_batch_size=64,
            vllm_batch_size=256)
SMOKE = dict(budget=600, prompts=4, embed_texts=60, rm_pairs=16, ppo_steps=2, gen_batch_size=2, vllm_batch_size=2)
# what --smoke changes in the config's knobs so that each side takes seconds on a CPU
SMOKE_KNOBS = {"max_new_tokens": 8, "where": "len(prompt) < 200", "rm": {"max_length": 256, "batch_size": 8},
               "ppo": {"batch_size": 4, "mini_batch_size": 2, "max_new_tokens": 8, "ppo_epochs": 1}}
# curate embed's default, and one that fills a GPU (on a CPU, long batches mostly add padding: --smoke uses 64)
EMBED_BATCHES = {"full": (32, 256), "smoke": (32, 64)}
# how each side shares the budget: about the seconds it should take on an H200, start-up included. vLLM's start
# (torch.compile, CUDA graphs) is most of its time and yields no figure if cut, while the transformers backend gives
# a rate from whatever batches it finished, so the vLLM sides get the larger shares
WEIGHTS = {"vllm_raw": 50, "vllm_curate": 50, "transformers": 25, "embed_naive": 25, "embed_curate": 20, "rm": 70,
           "ppo": 70, "embed_ray": 25, "gen_ray_vllm": 60, "rm_launch": 70}
RESERVE_S = 5.0  # kept back at the end for the JSON
AFTER_DONE_S = 15.0  # how long a side that has written its result may take to exit (vLLM's shutdown) before a kill


@dataclass
class Side:
    section: str  # gen, embed, rm, ppo
    name: str  # e.g. gen/gpt2-medium/vllm_curate
    task: str  # a function of gpu_tasks.py
    args: dict
    weight: float
    skip: str | None = None  # why it does not run
    result: dict = field(default_factory=dict)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and models, CPU allowed, vLLM not needed")
    ap.add_argument("--out", default=None, help="the JSON (default benchmarks/results/gpu.json, gpu-smoke.json "
                    "with --smoke)")
    ap.add_argument("--budget", type=float, help=f"seconds for everything (default {FULL['budget']}; "
                    f"--smoke {SMOKE['budget']})")
    ap.add_argument("--device", default="auto", help="auto (cuda when torch sees one), cuda or cpu")
    ap.add_argument("--sections", default="gen,embed,rm,ppo",
                    help="gen,embed,rm,ppo (issue 15's run, the default) and scale (issue 18: embed and generate "
                    "--engine ray, the reward model under accelerate launch)")
    ap.add_argument("--vllm", choices=("auto", "on", "off"), default="auto",
                    help="the vLLM sides: auto (when vLLM is installed and the device is a GPU), on (also on a CPU, "
                    "with vLLM's CPU build), off")
    ap.add_argument("--config", default=str(ROOT / "configs" / "frft-hh.toml"),
                    help="the FRFT config whose knobs the sides use and the projection assumes")
    ap.add_argument("--smollm2", default=os.environ.get("CURATE_BENCH_SMOLLM2", "smollm2-135m"),
                    help="SmolLM2-135M: curate's packaged default or a model folder")
    ap.add_argument("--gpt2-medium", default=os.environ.get("CURATE_BENCH_GPT2_MEDIUM", "gpt2-medium"),
                    help="GPT-2-medium: a model folder, or the Hub id (its cache works offline with HF_HUB_OFFLINE=1)")
    ap.add_argument("--embed-model", default="default", help="curate embed's model (default: packaged MiniLM)")
    for k in ("prompts", "embed_texts", "rm_pairs", "ppo_steps", "gen_batch_size", "vllm_batch_size"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, help=f"default {FULL[k]} (--smoke {SMOKE[k]})")
    ap.add_argument("--pairs", type=int, default=synth.HH_TRAIN_SIZE, help="pairs the projection is for")
    ap.add_argument("--logs", help="keep each side's output in this folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    args.embed_batches = EMBED_BATCHES["smoke" if args.smoke else "full"]
    sizes = SMOKE if args.smoke else FULL
    for k, v in sizes.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.out is None:
        args.out = str(HERE / "results" / ("gpu-smoke.json" if args.smoke else "gpu.json"))
    return args


# ---------------------------------------------------------------------------------------------- one side


def run_side(side: Side, budget: float, tmp: Path, logs: Path, env: dict | None = None) -> dict:
    """Run side.task in a fresh process for at most `budget` seconds; its record, with status and budget."""
    record = tmp / f"{side.name.replace('/', '-')}.json"
    log = logs / f"{side.name.replace('/', '-')}.log"
    deadline = time.time() + budget
    spec = {"record": str(record), "deadline": deadline, "args": side.args}
    cmd = [sys.executable, str(HERE / "gpu_tasks.py"), side.task, json.dumps(spec)]
    killed, done_at, started = None, None, time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        # a session of its own: a kill reaches what the side started too (vLLM's engine process)
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                                     **(env or {})})
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.time()
            if done_at is None and _read(record).get("complete"):
                done_at = now
            if now > deadline or (done_at is not None and now - done_at > AFTER_DONE_S):
                killed = "after its result, in shutdown" if done_at else f"at its budget of {budget:.0f} s"
                _kill(proc.pid)
                proc.wait()
                break
        _kill(proc.pid)  # whatever the side left running in its session (vLLM's engine process)
    rec = _read(record)
    # the side's whole life as the parent saw it (start-up, shutdown and a kill included)
    out = {"budget_s": round(budget, 1), **{k: v for k, v in rec.items() if k != "complete"},
           "wall_s": round(time.perf_counter() - started, 1)}
    if rec.get("complete"):
        out["status"] = "partial" if rec.get("cut") else "complete"
        if rec.get("cut"):
            out["reason"] = f"stopped itself near its budget of {budget:.0f} s"
        if killed:
            out["note"] = f"killed {killed}"
    elif rec.get("error"):
        out.update(status="failed", reason=rec["error"], log_tail=_tail(log))
    elif killed:
        out.update(status="partial", reason=f"killed {killed} while {rec.get('stage', 'starting')}",
                   log_tail=_tail(log))
    else:
        out.update(status="failed", reason=f"exited with code {proc.returncode} while {rec.get('stage', 'starting')}",
                   log_tail=_tail(log))
    return out


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _kill(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])[-2000:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------- set-up


def curate_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "curate.cli", *args, "-q"], check=True, cwd=ROOT)


def gpu_info() -> dict:
    """What torch sees (in a short process of its own: the parent never holds a CUDA context while vLLM sizes its
    memory), plus the driver from nvidia-smi."""
    from curate.hardware import gpu_summary

    code = ("import json, torch\n"
            "d = {'torch': torch.__version__, 'cuda': torch.cuda.is_available(), 'cuda_runtime': torch.version.cuda}\n"
            "if d['cuda']:\n"
            "    p = torch.cuda.get_device_properties(0)\n"
            "    d.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1),\n"
            "             capability=f'{p.major}.{p.minor}', multiprocessors=p.multi_processor_count,\n"
            "             devices=torch.cuda.device_count(),\n"
            "             cuda_driver_api=getattr(torch._C, '_cuda_getDriverVersion', lambda: None)())\n"
            "print(json.dumps(d))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    smi = gpu_summary()
    if smi:
        info["driver"] = smi["driver"]
    return info


def tiny_gpt2(folder: Path, tokenizer_from: Path) -> Path:
    """--smoke's stand-in for GPT-2-medium: the GPT-2 architecture (2 layers, 64 wide, its 1,024-token window) with
    SmolLM2's tokenizer, random weights: GPT-2's code paths without the 1.4 GB download."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(tokenizer_from))
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=1024, vocab_size=len(tok),
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def resolve(spec: str) -> tuple[Path | None, str | None]:
    """(model folder, None) or (None, why not): a missing model skips its sides instead of failing the run."""
    from curate.errors import CurateError
    from curate.models import resolve_policy

    try:
        return resolve_policy(spec).folder, None
    except CurateError as e:
        return None, f"skipped: model {spec!r} not found ({' '.join(str(e).split())[:300]})"


def generation_workspace(ws: Path) -> float:
    """The shared harmless-base pairs, all `pref`; returns distinct prompts per pair (for the projection)."""
    from curate.workspace import Workspace

    curate_cli("ingest", str(synth.REAL_PAIRS), "-w", str(ws))
    with Workspace(ws).connect() as con:
        n, prompts = con.execute("select count(*), count(distinct prompt) from pairs").fetchone()
    return prompts / n


def embedding_workspace(ws: Path, texts: int, texts_file: Path) -> int:
    """ceil(texts / 3) synthetic pairs (the shared rows resampled, each text tagged so it is distinct), one
    generation each (a shared SmolLM2 generation, tagged): 3 texts per pair as in FRFT. Writes every text curate
    will embed to texts_file (a JSON list) for the naive side; returns how many."""
    from curate.workspace import Workspace

    pairs = math.ceil(texts / 3)
    src = ws.parent / "embed-pairs.jsonl"
    synth.write_jsonl(synth.synth_hh_rows(pairs, seed=1), src)
    curate_cli("ingest", str(src), "-w", str(ws))
    with Workspace(ws).connect() as con:
        ids = [r[0] for r in con.execute("select pair_id from pairs order by pair_id").fetchall()]
    with open(synth.REAL_GENERATIONS, encoding="utf-8") as fh:
        real = [json.loads(line)["generation"] for line in fh]
    rng = random.Random(2)
    gens = ws.parent / "embed-generations.jsonl"
    synth.write_jsonl([{"pair_id": pid, "generation": synth._perturb(real[i % len(real)], rng, f"g{i}")}
                       for i, pid in enumerate(ids)], gens)
    curate_cli("generations", "import", str(gens), "-w", str(ws), "-i", "1", "--policy", "bench")
    with Workspace(ws).connect() as con:  # the texts `curate embed` selects (embedding/__init__.py's NEEDED_SQL)
        rows = con.execute("select chosen from pairs where role = 'pref' union all select rejected from pairs "
                           "where role = 'pref' union all select text from generations").fetchall()
    all_texts = [r[0] for r in rows if r[0].strip()]
    texts_file.write_text(json.dumps(all_texts), encoding="utf-8")
    return len(all_texts)


def training_files(tmp: Path, rm_pairs: int) -> tuple[Path, Path, int]:
    """The first rm_pairs real pairs as explicit rows (RM) and every real prompt (PPO)."""
    rows = list(synth.explicit_rows(synth.load_real()))
    data, prompts = tmp / "rm-pairs.jsonl", tmp / "ppo-prompts.jsonl"
    synth.write_jsonl(rows[:rm_pairs], data)
    synth.write_jsonl([{"prompt": r["prompt"]} for r in rows], prompts)
    return data, prompts, min(rm_pairs, len(rows))


# ---------------------------------------------------------------------------------------------- the plan


def plan(args, cfg, device: str, models: dict, paths: dict) -> list[Side]:
    """Every side in the order it runs, with its arguments, weight, and why it is skipped if it is."""
    sections = set(args.sections.split(","))
    sides: list[Side] = []
    max_new = SMOKE_KNOBS["max_new_tokens"] if args.smoke else cfg.generate.max_new_tokens
    if args.vllm == "off":
        no_vllm = "skipped: --vllm off"
    elif importlib.util.find_spec("vllm") is None:
        no_vllm = "skipped: vllm not installed"
    elif args.vllm == "auto" and not device.startswith("cuda"):
        no_vllm = f"skipped: vllm runs on a GPU here (device {device}; --vllm on tries its CPU build)"
    else:
        no_vllm = None
    if "gen" in sections:
        for key, (folder, why) in models.items():
            # SmolLM2 is an instruct model (its chat template); the paper's GPT-2 policy reads the HH transcript
            common = dict(workspace=str(paths["gen_ws"]), model=str(folder), prompts=args.prompts,
                          max_new_tokens=max_new, chat_template=key == "smollm2-135m",
                          where=SMOKE_KNOBS["where"] if args.smoke else None)  # smoke: short prompts, a CPU's pace
            sides += [
                Side("gen", f"gen/{key}/vllm_raw", "gen_vllm_raw", common, WEIGHTS["vllm_raw"], why or no_vllm),
                Side("gen", f"gen/{key}/vllm_curate", "gen_curate",
                     {**common, "backend": "vllm", "batch_size": args.vllm_batch_size, "device": device,
                      "branch": f"{key}-vllm"}, WEIGHTS["vllm_curate"], why or no_vllm),
                Side("gen", f"gen/{key}/transformers", "gen_curate",
                     {**common, "backend": "transformers", "batch_size": args.gen_batch_size, "device": device,
                      "branch": f"{key}-transformers"}, WEIGHTS["transformers"], why),
            ]
    if "embed" in sections:
        sides.append(Side("embed", "embed/naive", "embed_naive",
                          dict(texts_file=str(paths["texts"]), model=args.embed_model, device=device, batch_size=32,
                               chunk=10_000), WEIGHTS["embed_naive"]))
        for b in args.embed_batches:
            sides.append(Side("embed", f"embed/curate_b{b}", "embed_curate",
                              dict(workspace=str(paths["embed_ws"]) + f"-b{b}", model=args.embed_model,
                                   device=device, batch_size=b), WEIGHTS["embed_curate"]))
    gpt2, why = models["gpt2-medium"]
    if "scale" in sections:  # issue 18's paths past one process: Ray actors per GPU, ray.data.llm, accelerate launch
        sides += scale_sides(args, device, paths, gpt2, why, no_vllm, max_new)
    rm_knobs = {k: getattr(cfg.rm, k) for k in ("lr", "epochs", "batch_size", "max_length", "long_rows",
                                                "label_smoothing", "bf16", "activation_checkpointing")}
    ppo_knobs = {k: getattr(cfg.ppo, k) for k in ("batch_size", "mini_batch_size", "max_prompt_length",
                                                  "max_new_tokens", "top_k", "kl_coef", "ppo_epochs", "actor_lr",
                                                  "critic_lr", "dtype")}
    if args.smoke:
        rm_knobs.update(SMOKE_KNOBS["rm"])
        ppo_knobs.update(SMOKE_KNOBS["ppo"])
    ppo_knobs["steps"] = args.ppo_steps
    if "rm" in sections:
        sides.append(Side("rm", "rm", "rm", dict(base=str(gpt2), data=str(paths["rm_data"]),
                                                 output=str(paths["tmp"] / "rm"), knobs=rm_knobs), WEIGHTS["rm"], why))
    if "ppo" in sections:
        sides.append(Side("ppo", "ppo", "ppo", dict(policy=str(gpt2), prompts_file=str(paths["ppo_prompts"]),
                                                    workdir=str(paths["tmp"] / "ppo"), knobs=ppo_knobs),
                          WEIGHTS["ppo"], why))
    return sides


def scale_sides(args, device: str, paths: dict, gpt2, why: str | None, no_vllm: str | None, max_new: int) -> list:
    """`--sections scale`: curate embed --engine ray (one actor per GPU, a Ray this side starts), curate generate
    --engine ray --backend vllm (ray.data.llm's vLLM replicas), and the reward model under `accelerate launch`
    with configs/accelerate/multi_gpu.yaml on every GPU (--smoke on a CPU: cpu_2proc.yaml, 2 processes)."""
    no_ray = "skipped: ray not installed (pip install 'curate[ray]')" if importlib.util.find_spec("ray") is None \
        else None
    try:
        no_llm = None if importlib.util.find_spec("ray.data.llm") else "skipped: ray.data.llm not importable"
    except ImportError as e:
        no_llm = f"skipped: ray.data.llm not importable ({e})"
    gpus = int(args.gpu.get("devices") or 0) if device.startswith("cuda") else 0
    b = args.embed_batches[-1]
    sides = [Side("scale", "scale/embed_ray", "embed_curate",
                  dict(workspace=str(paths["embed_ws"]) + "-ray", model=args.embed_model, device=device,
                       batch_size=b, engine="ray"), WEIGHTS["embed_ray"], no_ray),
             Side("scale", "scale/gen_ray_vllm", "gen_curate",
                  dict(workspace=str(paths["gen_ws"]), model=str(gpt2), prompts=args.prompts, max_new_tokens=max_new,
                       chat_template=False, backend="vllm", batch_size=args.vllm_batch_size, device=device,
                       branch="gpt2-medium-ray-vllm", engine="ray",
                       where=SMOKE_KNOBS["where"] if args.smoke else None),
                  WEIGHTS["gen_ray_vllm"], why or no_ray or no_vllm or no_llm
                  or (None if gpus else "skipped: ray.data.llm's vLLM replicas need GPUs"))]
    config, processes = ("multi_gpu.yaml", gpus) if gpus else ("cpu_2proc.yaml", 2)
    knobs = {"epochs": 1, "batch_size": SMOKE_KNOBS["rm"]["batch_size"] if args.smoke else 8,
             "max_length": SMOKE_KNOBS["rm"]["max_length"] if args.smoke else 512}
    sides.append(Side("scale", "scale/rm_launch", "rm_launch",
                      dict(base=str(gpt2), data=str(paths["rm_data"]), output=str(paths["tmp"] / "rm-launch"),
                           knobs=knobs, config=str(ROOT / "configs" / "accelerate" / config), processes=processes),
                      WEIGHTS["rm_launch"], why or (None if gpus or args.smoke else
                                                   "skipped: accelerate launch on GPUs needs a GPU (--smoke: 2 CPU "
                                                   "processes)")))
    return sides


# ---------------------------------------------------------------------------------------------- the figures


def rates(side: Side) -> dict:
    """The side's rates from its raw counts (None where it measured nothing)."""
    r, out = side.result, {}

    def per(n, s):
        return round(n / s, 3) if n and s else None

    if side.section == "gen":
        out = {"tokens_per_s": per(r.get("new_tokens"), r.get("generate_s")),
               "prompts_per_s": per(r.get("prompts"), r.get("generate_s"))}
    elif side.section == "embed":
        out = {"texts_per_s": per(r.get("texts"), r.get("encode_s"))}
    elif side.section == "scale":
        out = {"texts_per_s": per(r.get("texts"), r.get("encode_s"))} if "embed" in side.name else \
            {"prompts_per_s": per(r.get("prompts"), r.get("generate_s")),
             "tokens_per_s": per(r.get("new_tokens"), r.get("generate_s"))} if "gen" in side.name else \
            {"pairs_per_s": per(r.get("pairs"), r.get("train_s"))}
    elif side.section == "rm":
        out = {"pairs_per_s": per(r.get("pairs"), r.get("train_s"))}
    elif side.section == "ppo" and r.get("step_s"):
        steps = r["step_s"][1:] if len(r["step_s"]) >= 3 else r["step_s"]  # the first step warms the GPU up
        median = statistics.median(steps)
        out = {"seconds_per_step": round(median, 3), "prompts_per_s": per(side.args["knobs"]["batch_size"], median)}
    return out


def summarise(sides: list[Side]) -> dict:
    """The sections of the JSON: each side's record and rates, generation's ratios per model."""
    res: dict = {}
    for s in sides:
        entry = {"status": "skipped", "reason": s.skip} if s.skip else {**s.result, **rates(s)}
        parts = s.name.split("/")  # gen/gpt2-medium/vllm_raw -> res["gen"]["gpt2-medium"]["vllm_raw"]
        node = res
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = entry
    for model in res.get("gen", {}).values():
        tps = {k: v.get("tokens_per_s") for k, v in model.items() if isinstance(v, dict)}
        for a, b in (("vllm_curate", "transformers"), ("vllm_raw", "transformers"), ("vllm_curate", "vllm_raw")):
            if tps.get(a) and tps.get(b):
                model.setdefault("ratios", {})[f"{a}_vs_{b}"] = round(tps[a] / tps[b], 2)
    return res


def projection(res: dict, cfg, args, prompts_per_pair: float, smoke: bool) -> dict:
    """One FRFT iteration over args.pairs pairs from the rates measured (gpu_projection.py has the formula)."""
    gen = res.get("gen", {}).get("gpt2-medium", {})  # the config's policy
    gen_rates = {k: v.get("prompts_per_s") for k, v in gen.items() if k != "ratios" and v.get("prompts_per_s")}
    best_gen = next((k for k in ("vllm_curate", "transformers") if gen_rates.get(k)), None)
    emb = {k: v.get("texts_per_s") for k, v in res.get("embed", {}).items() if k.startswith("curate") and
           v.get("texts_per_s")}
    best_emb = max(emb, key=emb.get) if emb else None
    ppo_knobs = SMOKE_KNOBS["ppo"] if smoke else {}
    measured = {"generate_prompts_per_s": gen_rates.get(best_gen), "embed_texts_per_s": emb.get(best_emb),
                "rm_pairs_per_s": res.get("rm", {}).get("pairs_per_s"),
                "ppo_prompts_per_s": res.get("ppo", {}).get("prompts_per_s")}
    branches = len(cfg.run.strategies) + (1 if cfg.run.baseline and cfg.run.baseline not in cfg.run.strategies else 0)
    kw = dict(pairs=args.pairs, prompts_per_pair=round(prompts_per_pair, 4), texts_per_pair=3, subset=cfg.filter.size,
              rm_epochs=cfg.rm.epochs, ppo_steps=cfg.ppo.steps, ppo_batch=cfg.ppo.batch_size, branches=branches)
    p = gpu_projection.project_iteration(measured, **kw)
    p["from"] = {"generate": f"gen/gpt2-medium/{best_gen}" if best_gen else None,
                 "embed": f"embed/{best_emb} ({args.embed_model})" if best_emb else None,
                 "rm": "rm", "ppo": "ppo", "config": str(Path(args.config).name),
                 "branches": f"{len(cfg.run.strategies)} strategies + baseline {cfg.run.baseline!r}"}
    p["generate_seconds_by_side"] = {k: round(p["inputs"]["prompts"] / v, 1) for k, v in gen_rates.items()}
    p["notes"] = [
        "prompts_per_pair is measured on the shared harmless-base file (distinct prompts / pairs)",
        "embed texts are an upper bound: curate embeds each distinct text once",
        "the projection times the steps of one iteration; model loads, scoring, filtering and eval are left out",
    ]
    if args.embed_model == "default":
        p["notes"].append("embedding used the packaged all-MiniLM-L6-v2; the config's "
                          f"{cfg.embed.model} is a larger model and embeds more slowly")
    if smoke:
        p["notes"].insert(0, "--smoke: tiny models and sizes on this machine; the figures show the arithmetic only")
        p["notes"].append(f"--smoke's PPO steps were of {ppo_knobs['batch_size']} prompts; the projection scales "
                          "by prompts/s")
    return p


def figure(section: str, r: dict) -> str:
    """A side's figures on one line."""
    load = f"load {r.get('load_s')} s"
    if section == "scale":  # its sides are of the other kinds
        section = "embed" if "texts" in r else "gen" if "new_tokens" in r else "rm"
        if section == "rm":
            return (f"{r.get('pairs_per_s')} pairs/s ({r.get('pairs', 0):,} pairs in {r.get('train_s')} s on "
                    f"{r.get('recorded_processes')} processes, launch included)")
    if section == "gen":
        return (f"{r.get('tokens_per_s')} tokens/s ({r.get('prompts', 0)} prompts, {r.get('new_tokens', 0):,} tokens "
                f"in {r.get('generate_s')} s; {load})")
    if section == "embed":
        return f"{r.get('texts_per_s')} texts/s ({r.get('texts', 0):,} texts in {r.get('encode_s')} s; {load})"
    if section == "rm":
        return f"{r.get('pairs_per_s')} pairs/s ({r.get('pairs', 0):,} pairs in {r.get('train_s')} s; {load})"
    return f"{r.get('seconds_per_step')} s/step, {r.get('prompts_per_s')} prompts/s ({r.get('steps', 0)} steps; {load})"


def show(sides: list[Side]) -> None:
    for s in sides:
        if s.skip:
            print(f"  {s.name:<30} {s.skip}")
            continue
        r = {k: "n/a" if v is None else v for k, v in {**s.result, **rates(s)}.items()}
        extra = f" [{r['status']}: {r.get('reason', '')}]" if r.get("status") != "complete" else ""
        print(f"  {s.name:<30} {figure(s.section, r)}, wall {r.get('wall_s')} s of {r.get('budget_s')}{extra}")


# ---------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    deadline = t0 + args.budget
    if not synth.REAL_PAIRS.exists() or not synth.REAL_GENERATIONS.exists():
        sys.exit(f"missing {synth.SHARED}: the benchmark needs the shared HH-RLHF files")
    from curate.hardware import cpu_summary
    from curate.run.config import load

    cfg = load(args.config)
    info = gpu_info()
    device = ("cuda" if info["cuda"] else "cpu") if args.device == "auto" else args.device
    if device.startswith("cuda") and not info["cuda"]:
        sys.exit("--device cuda: torch sees no CUDA GPU here (use --smoke on a CPU machine)")
    if not args.smoke and not device.startswith("cuda"):
        sys.exit("the full sizes are for a GPU (torch sees none); --smoke runs tiny sizes on the CPU, "
                 "--device cpu forces the full ones here")
    cpu = cpu_summary()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags']) or 'no AVX2'})")
    if info["cuda"]:
        print(f"GPU: {info['devices']}x {info['name']}, {info['memory_gib']} GiB, compute capability "
              f"{info['capability']}, {info['multiprocessors']} SMs; driver {info.get('driver', '?')} (CUDA driver "
              f"API {info.get('cuda_driver_api')}), torch {info['torch']} built for CUDA {info['cuda_runtime']}")
    else:
        print(f"GPU: none that torch {info['torch']} sees; running on {device}")

    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-gpu-"))
    logs = Path(args.logs) if args.logs else tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        print(f"set-up: workspaces, data and models in {tmp} ...", file=sys.stderr)
        smol, why_smol = resolve(args.smollm2)
        if args.smoke:
            gpt2, why_gpt2 = (tiny_gpt2(tmp / "tiny-gpt2", smol), None) if smol else (None, why_smol)
        else:
            gpt2, why_gpt2 = resolve(args.gpt2_medium)
        models = {"smollm2-135m": (smol, why_smol), "gpt2-medium": (gpt2, why_gpt2)}
        paths = {"tmp": tmp, "gen_ws": tmp / "gen-ws", "embed_ws": tmp / "embed-ws", "texts": tmp / "texts.json"}
        prompts_per_pair = generation_workspace(paths["gen_ws"])
        n_texts = 0
        if "embed" in args.sections or "scale" in args.sections:
            n_texts = embedding_workspace(paths["embed_ws"], args.embed_texts, paths["texts"])
            for b in [*args.embed_batches, "ray"]:  # a fresh copy per side: nothing cached
                suffix = f"-b{b}" if b != "ray" else "-ray"
                shutil.copytree(paths["embed_ws"], str(paths["embed_ws"]) + suffix)
        paths["rm_data"], paths["ppo_prompts"], rm_pairs = training_files(tmp, args.rm_pairs)
        args.gpu = info
        sides = plan(args, cfg, device, models, paths)
        gen = next((x.args for x in sides if x.section == "gen"), {"where": None, "max_new_tokens": None})
        setup_s = round(time.time() - t0, 1)
        print(f"set-up took {setup_s} s; {len([s for s in sides if not s.skip])} sides to run in "
              f"{deadline - time.time():.0f} s", file=sys.stderr)

        payload = {
            "mode": "smoke" if args.smoke else "full", "device": device, "gpu_torch": info,
            "budget_s": args.budget, "setup_s": setup_s, "config": Path(args.config).name,
            "sizes": {"prompts": args.prompts, "prompts_where": gen["where"], "max_new_tokens": gen["max_new_tokens"],
                      "top_k": 50, "embed_texts": n_texts, "rm_pairs": rm_pairs,
                      "ppo_steps": args.ppo_steps, "gen_batch_size": args.gen_batch_size,
                      "vllm_batch_size": args.vllm_batch_size,
                      "embed_batch_sizes": {"naive": 32, "curate": list(args.embed_batches)}},
            "models": {k: str(f) if f else why for k, (f, why) in models.items()}
            | ({"gpt2-medium": "--smoke: a 2-layer GPT-2, SmolLM2's tokenizer, random weights"} if args.smoke else {}),
            "versions": {k: _version(k) for k in ("vllm", "accelerate", "tokenizers", "onnxruntime")},
        }
        # --smoke runs on shared CPUs, where OpenMP's spinning threads collapse when the cores are oversubscribed
        # (a matmul at 3 GFLOP/s on 2 threads against 38 on 1, on this project's 2-core machine with other jobs)
        side_env = {"OMP_NUM_THREADS": "1"} if args.smoke and "OMP_NUM_THREADS" not in os.environ else {}
        payload["side_env"] = side_env
        todo = [s for s in sides if not s.skip]
        for i, s in enumerate(todo):
            left = deadline - time.time() - RESERVE_S
            budget = left * s.weight / sum(x.weight for x in todo[i:])
            if budget < 5:
                s.skip = f"skipped: no time left ({left:.0f} s for {len(todo) - i} sides)"
                continue
            print(f"{s.name}: up to {budget:.0f} s ...", file=sys.stderr)
            s.result = run_side(s, budget, tmp, logs, side_env)
            print(f"{s.name}: {s.result['status']} in {s.result.get('wall_s')} s "
                  f"{s.result.get('reason', '')}".rstrip(), file=sys.stderr)
            _write_partial(args.out, {**payload, **summarise(sides), "finished": False})
        res = summarise(sides)
        proj = projection(res, cfg, args, prompts_per_pair, args.smoke)
        wall = round(time.time() - t0, 1)
        print(f"\n{'smoke run' if args.smoke else 'GPU run'} on {device}, {wall} s of {args.budget:.0f}:")
        show(sides)
        for key, model in res.get("gen", {}).items():
            if model.get("ratios"):
                print(f"  {key} tokens/s ratios: " + ", ".join(f"{k} {v}x" for k, v in model["ratios"].items()))
        print(gpu_projection.describe(proj))
        write_result("gpu", {**payload, **res, "projection": proj, "wall_s": wall, "finished": True}, args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _write_partial(out: str, payload: dict) -> None:
    """The JSON so far, after every side: a run stopped from outside still leaves its figures."""
    from curate.atomic import write_text

    write_text(out, json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
