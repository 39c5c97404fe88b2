"""The sides of the GPU benchmark (bench_gpu.py), each run in its own process:

    python benchmarks/gpu_tasks.py TASK SPEC_JSON

SPEC_JSON holds `record` (where the side writes what it measured), `deadline` (wall-clock seconds since the
epoch at which the parent stops it) and `args` (the task's keyword arguments). A side writes its counts to the
record as it goes, atomically, so one that the parent has to kill still leaves the figures of the work it
finished; where its work comes in pieces (batches, steps) it stops itself a little before the deadline and says
so (`cut: true`). Counts are raw (prompts, tokens, seconds): the parent derives the rates.

Separate processes because vLLM keeps its GPU memory (and an engine process) until its interpreter exits, and so
that each side's start-up and peak memory are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


class Cut(Exception):
    """The side's time is up: stop and keep what was measured."""


class Record:
    """What a side has measured so far, flushed to its JSON file (at most every half second unless forced)."""

    def __init__(self, path: str, deadline: float):
        self.path, self.t0 = path, time.perf_counter()
        budget = deadline - time.time()
        # stop early enough to leave the side's closing work (a trainer's save, vLLM's shutdown) inside the budget
        self.soft_deadline = deadline - max(3.0, min(15.0, 0.15 * budget))
        self.data: dict = {"stage": "starting", "complete": False, "cut": False}
        self._flushed = 0.0

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.t0, 3)

    def update(self, force: bool = False, **kw) -> None:
        self.data.update(kw)
        now = time.perf_counter()
        if force or now - self._flushed > 0.5:
            from curate.atomic import write_text

            write_text(self.path, json.dumps({**self.data, "wall_s": self.elapsed()}))
            self._flushed = now

    def time_up(self) -> bool:
        return time.time() > self.soft_deadline

    def check(self) -> None:
        if self.time_up():
            raise Cut


def _peak_gpu_mib() -> int | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20)


# ---------------------------------------------------------------------------------------------- generation


def _engine(engine: str | None):
    """--engine ray's settings (a Ray this side starts on the machine, one actor per GPU), or None for local."""
    if not engine:
        return None
    from curate.engine import EngineSettings

    return EngineSettings(kind=engine)


def gen_curate(rec: Record, workspace: str, model: str, backend: str, prompts: int, max_new_tokens: int,
               batch_size: int, chat_template: bool, device: str, branch: str, where: str | None = None,
               engine: str | None = None) -> None:
    """`curate generate --backend BACKEND [--engine ray]` through its Python API on the first `prompts` prompts
    (seed 0's sample)."""
    from curate.generate import GenerateParams, generate
    from curate.workspace import Workspace

    clock: dict = {}

    def progress(total: int, done_before: int):
        clock.update(t=time.perf_counter(), prompts=0, tokens=0)
        rec.update(force=True, stage="generating", load_s=rec.elapsed(), prompts_planned=total)

        def advance(n: int, n_tokens: int) -> None:
            clock["prompts"] += n
            clock["tokens"] += n_tokens
            rec.update(prompts=clock["prompts"], new_tokens=clock["tokens"],
                       generate_s=round(time.perf_counter() - clock["t"], 3))
            if clock["prompts"] < total:  # between batches: what is committed so far stays measured
                rec.check()

        return advance

    rec.update(force=True, stage="loading", backend=backend, batch_size=batch_size)
    r = generate(Workspace(workspace), model, iteration=1, branch=branch, backend=backend, device=device,
                 batch_size=batch_size, limit=prompts, where=where, progress=progress, engine=_engine(engine),
                 params=GenerateParams(max_new_tokens=max_new_tokens, chat_template=chat_template))
    manifest = json.loads(Path(r.manifest).read_text(encoding="utf-8")) if r.manifest else {}
    # the backend's own clock (its generate calls only) once the run is whole
    rec.update(prompts=r.generated_prompts, new_tokens=r.new_tokens, generate_s=round(r.generate_seconds, 3),
               truncated=r.truncated, dtype=manifest.get("dtype"), device=manifest.get("device"))


def gen_vllm_raw(rec: Record, workspace: str, model: str, prompts: int, max_new_tokens: int,
                 chat_template: bool, where: str | None = None) -> None:
    """The baseline: one `vllm.LLM` given all the prompts at once, as a vLLM user would write it; the same prompts,
    formatting, truncation and sampling (top-k 50, stop at the next human turn) as curate's sides."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from curate.generate import STOP, select_prompts, tokenize_prompts
    from curate.models import resolve_policy
    from curate.workspace import Workspace

    rec.update(force=True, stage="loading", backend="vllm (raw)", batch_size=prompts)
    selected = select_prompts(Workspace(workspace), where, prompts, None, seed=0)  # what generate(limit=...) picks
    folder = str(resolve_policy(model).folder)
    llm = LLM(model=folder, seed=0)
    window = llm.llm_engine.model_config.max_model_len
    tokenize_prompts(selected, AutoTokenizer.from_pretrained(folder), chat_template, window - max_new_tokens)
    params = SamplingParams(max_tokens=max_new_tokens, stop=[STOP], top_k=50, top_p=1.0, temperature=1.0)
    rec.update(force=True, stage="generating", load_s=rec.elapsed(), prompts_planned=len(selected),
               dtype=str(llm.llm_engine.model_config.dtype).replace("torch.", ""))
    t = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p.ids) for p in selected], params, use_tqdm=False)
    rec.update(prompts=len(outs), new_tokens=sum(len(c.token_ids) for o in outs for c in o.outputs),
               generate_s=round(time.perf_counter() - t, 3))


# ---------------------------------------------------------------------------------------------- embedding


def embed_naive(rec: Record, texts_file: str, model: str, device: str, batch_size: int, chunk: int) -> None:
    """What a user would write: SentenceTransformer.encode over every text. In chunks of `chunk` texts only so that
    a side cut at its budget still has a count (encode sorts by length within each call, as over one call)."""
    from sentence_transformers import SentenceTransformer

    from curate.embedding.model import resolve

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    st = SentenceTransformer(str(resolve(model).folder), device=device)
    rec.update(force=True, stage="encoding", load_s=rec.elapsed(), texts_planned=len(texts), batch_size=batch_size)
    t, done = time.perf_counter(), 0
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        st.encode(part, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        done += len(part)
        rec.update(texts=done, encode_s=round(time.perf_counter() - t, 3))
        if done < len(texts):
            rec.check()


def embed_curate(rec: Record, workspace: str, model: str, device: str, batch_size: int,
                 engine: str | None = None) -> None:
    """`curate embed --device DEVICE --batch-size N [--engine ray]` through its Python API on a fresh workspace
    (nothing cached)."""
    from curate.embedding import embed
    from curate.workspace import Workspace

    clock: dict = {}

    def progress(total: int):
        clock.update(t=time.perf_counter(), texts=0)
        rec.update(force=True, stage="encoding", load_s=rec.elapsed(), texts_planned=total)

        def advance(n: int) -> None:
            clock["texts"] += n
            rec.update(texts=clock["texts"], encode_s=round(time.perf_counter() - clock["t"], 3))
            if clock["texts"] < total:
                rec.check()

        return advance

    rec.update(force=True, stage="loading", batch_size=batch_size)
    r = embed(Workspace(workspace), model, device=device, batch_size=batch_size, progress=progress,
              engine=_engine(engine))
    rec.update(texts=r.embedded, backend=r.backend, embed_wall_s=round(r.seconds, 3))


# ---------------------------------------------------------------------------------------------- training


def rm(rec: Record, base: str, data: str, output: str, knobs: dict) -> None:
    """`curate train rm` for one epoch; a TrainerCallback times the steps and ends training at the budget."""
    from transformers import TrainerCallback

    from curate.train.rm import RMConfig, train_rm

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.t = time.perf_counter()
            rec.update(force=True, stage="training", load_s=rec.elapsed(), steps_planned=state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            rec.update(steps=state.global_step, pairs=state.global_step * knobs["batch_size"],
                       train_s=round(time.perf_counter() - self.t, 3))
            if rec.time_up() and state.global_step < state.max_steps:
                control.should_training_stop = True  # the model is still saved: a cut run ends as a normal one
                rec.update(force=True, cut=True)

    rec.update(force=True, stage="loading")
    r = train_rm(RMConfig(base=base, output=output, data=data, quiet=True, overwrite=True, **knobs),
                 callbacks=[Clock()])
    rec.update(pairs=min(rec.data.get("pairs", 0), r.trained_rows), trained_rows=r.trained_rows,
               dropped_long=r.dropped_long, accuracy=r.metrics.get("accuracy"), train_loss=r.metrics.get("train_loss"),
               rm_wall_s=round(r.seconds, 3))


def rm_launch(rec: Record, base: str, data: str, output: str, knobs: dict, config: str, processes: int) -> None:
    """`accelerate launch --config_file CONFIG --num_processes N -m curate.train.rm` (the multi-GPU path,
    configs/accelerate/): pairs/s from the trainer's own record; stopped by the parent at the budget."""
    argv = []
    for k, v in knobs.items():
        flag = "--" + k.replace("_", "-")
        argv += ([flag] if v else ["--no-" + flag[2:]]) if isinstance(v, bool) else [flag, str(v)]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes",
           str(processes), "-m", "curate.train.rm", "--base", base, "--data", data, "--output", output, "--force",
           "-q", *argv]
    rec.update(force=True, stage="training", processes=processes, config=Path(config).name)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    wall = time.perf_counter() - t0
    done = json.loads((Path(output) / "curate_train.json").read_text(encoding="utf-8"))
    m = done.get("metrics", {})
    rec.update(pairs=m.get("rows_seen"), train_s=round(wall, 3), steps=m.get("steps"),
               recorded_processes=done.get("processes", m.get("processes")),
               global_batch_size=done.get("global_batch_size", m.get("global_batch_size")),
               note="train_s is the launch's wall time (model loads in every process included)")


def ppo(rec: Record, policy: str, prompts_file: str, workdir: str, knobs: dict) -> None:
    """`curate train ppo` for knobs["steps"] steps against a reward model with a fresh (untrained) head on the
    policy: the step's cost does not depend on what the reward model learnt."""
    from curate.train.ppo import PPOConfig, train_ppo
    from curate.train.reward import load_reward_model

    rec.update(force=True, stage="loading")
    reward = Path(workdir) / "reward"
    model, tokenizer, _ = load_reward_model(policy, kind="rm-base")
    model.save_pretrained(reward)
    tokenizer.save_pretrained(reward)
    del model
    step_s: list[float] = []

    def on_step(row: dict) -> None:
        if not step_s:
            rec.update(load_s=round(rec.elapsed() - row["seconds"], 3))
        step_s.append(row["seconds"])
        rec.update(force=True, stage="training", steps=len(step_s), step_s=step_s,
                   response_length=row.get("response_length"))
        if len(step_s) < knobs["steps"]:
            rec.check()

    train_ppo(PPOConfig(policy=policy, reward=str(reward), prompts_file=prompts_file, output=str(Path(workdir) / "ppo"),
                        save_every=10**6, final_optimizer=False, quiet=True, **knobs), on_step=on_step)


# ---------------------------------------------------------------------------------------------- the runner


def main(task: str, spec: dict) -> int:
    rec = Record(spec["record"], spec["deadline"])
    rec.update(force=True)
    try:
        globals()[task](rec, **spec["args"])
    except Cut:
        rec.update(cut=True)
    except Exception as e:  # recorded for the JSON; the traceback goes to the log
        traceback.print_exc()
        rec.update(force=True, error=f"{type(e).__name__}: {' '.join(str(e).split())[:500]}")
        return 1
    rec.update(force=True, complete=True, stage="done", peak_gpu_mib=_peak_gpu_mib())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
