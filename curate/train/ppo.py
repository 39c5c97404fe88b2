"""PPO for a causal LM policy against a reward model: a thin trainer on transformers + accelerate.

TRL dropped its PPOTrainer in 1.13 (issue #6), so this file and curate.train.ppo_algo are the whole algorithm:

    python -m curate.train.ppo --policy sft/ --reward rm/ --output ppo/ --prompts prompts.jsonl
    python -m curate.train.ppo --policy sft/ --reward rm/ --output ppo/ -w workspace   # the `pref` prompts
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m curate.train.ppo --policy sft/ ...
    curate train ppo --policy checkpoints/sft --reward checkpoints/rm-it1 --output checkpoints/ppo-it1

Rerunning with the same --output resumes from `<output>/trainer_state.json` (on as many processes as it was saved
from). From Python: `train_ppo(PPOConfig(...), prompts=[...], reward_fn=f)` where `f(prompts, responses) -> tensor
of scores`.

Under `accelerate launch` (data parallel: each process holds the actor, reference, critic and reward model), every
step draws one global batch of --batch-size x processes prompts from one seeded stream and each process takes its
slice, so a run on P processes sees the prompts that one process with P times the --batch-size sees. Advantages are
whitened with the global batch's statistics, the losses are means over the global minibatch's tokens (each process
divides its sum by the global count / P; data parallelism averages the gradients), logged metrics are reduced over
the processes, and only the main process writes the output folder. DeepSpeed and FSDP are refused: this trainer is
the single-node, whole-model-per-GPU one (the README says when to move to OpenRLHF or verl).

The models: the actor (the policy being trained), a frozen reference (a copy of its initial weights, for the KL
penalty), the critic (a linear value head on the actor's last hidden states, detached: the value loss trains the
head only, so the actor's and critic's learning rates stay separate), and the reward model (a sequence
classifier with one label, or a Python function). Each step: sample responses for a batch of prompts (rollout),
score them, turn score - KL into per-token rewards, estimate advantages with GAE, then run a few epochs of the
clipped PPO objective over minibatches of that batch.

An AVA reward model (issue #17) needs --reward-mode: final scores each response as above (its mean reward at the
last token); dense adds its mean reward of every sampled response token to that token's reward instead
(curate.train.ppo_algo.dense_rewards), so the reward model must share the policy's tokenizer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CurateError
from ..settings import quiet_setting, script, setting, workspace_setting
from .checkpoint import RECORD_FILE, write_record
from .reward import MODE_HELP, REWARD_MODES

if TYPE_CHECKING:  # torch is imported when training starts, not when the CLI reads PPOConfig's options
    import torch

    from .ppo_algo import RewardFn, TokenRewardFn

INSTRUCTGPT = "InstructGPT (Ouyang et al. 2022), appendix C.4"
ZIEGLER = "Ziegler et al. 2019, section 2.2"


@dataclass
class PPOConfig:
    """Every knob of the run. Defaults after InstructGPT (Ouyang et al. 2022, appendix C.4) unless noted."""

    # models, data and output (`curate run` sets them per branch and iteration)
    policy: str = setting("smollm2-135m", "Policy to train: an SFT checkpoint folder, a Hub id or smollm2-135m.",
                          toml=False, metavar="MODEL")
    output: str = setting("", "Folder for checkpoints, log.jsonl and curate_train.json (a rerun resumes from it).",
                          short="-o", required=True, toml=False, metavar="DIR")
    reward: str | None = setting(None, "Reward model: a folder (`curate train rm`) or a Hub id; or pass reward_fn "
                                 "from Python.", toml=False, metavar="MODEL")
    # the frozen KL reference; default: the initial policy. FRFT's later iterations continue from the previous
    # PPO policy and keep the SFT model as the reference (pi_ref)
    reference: str | None = setting(None, "Frozen KL reference (default: the initial --policy). FRFT's later "
                                    "iterations continue from the previous PPO policy and keep the SFT model here.",
                                    toml=False, metavar="MODEL")
    prompts_file: str | None = setting(None, "A .jsonl with a `prompt` field (default: the distinct prompts of "
                                       "the workspace's pref pairs).", flag="--prompts", toml=False, metavar="FILE")
    workspace: str | None = workspace_setting()
    # rollout
    batch_size: int = setting(64, "Prompts per step (per process).", paper=INSTRUCTGPT)
    mini_batch_size: int = setting(16, "Rows per PPO minibatch.")
    max_prompt_length: int = setting(512, "Longer prompts keep their last tokens.")
    max_new_tokens: int = setting(64, "Longest sampled response.")
    top_k: int = setting(50, "Top-k sampling in the rollout.")
    temperature: float = setting(1.0, "Sampling temperature in the rollout.")
    # rewards and advantages
    # AVA reward models (issue #17) give a reward per token: final keeps InstructGPT's one score per response,
    # dense adds the per-token means to the per-token rewards (AVA paper, Eq. 19)
    reward_mode: str | None = setting(None, MODE_HELP, choices=REWARD_MODES)
    kl_coef: float = setting(0.02, "KL penalty beta.", paper=INSTRUCTGPT)
    kl_target: float = setting(0.0, "Target KL of the adaptive controller (0: a fixed --kl-coef; Ziegler et al. "
                               "use 6.0).", paper=ZIEGLER)
    kl_horizon: int = setting(10000, "Horizon of the adaptive KL controller.", paper=ZIEGLER)
    gamma: float = setting(1.0, "Discount of GAE.")
    lam: float = setting(0.95, "Lambda of GAE.")
    whiten_advantages: bool = setting(True, "Zero mean, unit variance advantages per batch.")
    # update
    ppo_epochs: int = setting(4, "Passes over each batch.", paper=INSTRUCTGPT)
    cliprange: float = setting(0.2, "Policy ratio clip.", paper="Schulman et al. 2017")
    cliprange_value: float = setting(0.2, "Value clip.")
    # InstructGPT's 1.3B/6B value range; the critic slightly higher, as there
    actor_lr: float = setting(5e-6, "Policy learning rate.", paper=INSTRUCTGPT)
    critic_lr: float = setting(9e-6, "Value head learning rate.", paper=INSTRUCTGPT)
    adam_betas: tuple[float, float] = setting((0.9, 0.95), "Adam betas.")
    max_grad_norm: float = setting(1.0, "Gradient clipping (0: off).")
    # dropout off: the first minibatch sees exactly the rollout policy
    train_dropout: bool = setting(False, "Dropout during the update.")
    # run
    steps: int = setting(100, "PPO steps (rollout + update).")
    save_every: int = setting(50, "Checkpoint every N steps (and at the end).")
    # the optimizer state is twice the weights (Adam's two moments: 1 GB for SmolLM2-135M); the last checkpoint
    # needs it only to continue with more --steps. `curate run` never does (a changed [ppo] redoes the step)
    final_optimizer: bool = setting(True, "Keep the optimizer state in the last checkpoint too, so a later run with "
                                    "more --steps can continue from it.", flag="--final-optimizer/--no-final-optimizer",
                                    toml=False)
    seed: int = setting(0, "Seed of sampling and prompt order.", toml=False)
    dtype: str = setting("float32", "Weights of the actor and reference.", choices=("float32", "bfloat16", "float16"))
    resume: bool = setting(False, "Require a checkpoint to resume from (resuming is automatic when one exists).",
                           flag="--resume", toml=False)
    quiet: bool = quiet_setting()


def load_prompts(prompts_file: str | None = None, workspace: str | None = None) -> tuple[list[str], str]:
    """The training prompts and where they came from: a .jsonl file, or the workspace's distinct pref prompts."""
    if prompts_file:
        prompts = []
        with open(prompts_file, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise CurateError(f"{prompts_file}, line {n}: not valid JSON. Each line needs an object with a "
                                      f"`prompt` string.") from None
                if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                    raise CurateError(f"{prompts_file}, line {n}: expected an object with a `prompt` string.")
                prompts.append(row["prompt"])
        source = f"file:{Path(prompts_file).resolve()}"
    else:
        from ..workspace import Workspace

        ws = Workspace(workspace).require()
        with ws.connect() as con:
            rows = con.execute("select distinct prompt from pairs where role='pref' order by prompt").fetchall()
        prompts = [r[0] for r in rows]
        source = f"workspace:{ws.root}"
    if not prompts:
        raise CurateError(f"No prompts found in {source}.")
    return prompts, source


def reward_model_fn(spec, device, batch_size: int, mode: str | None = None) -> RewardFn:
    """The reward model as reward_fn: the score of each prompt + response (curate.train.reward.score)."""
    from .reward import load_reward_model, score

    model, tokenizer, _ = load_reward_model(spec, kind="reward", device=device, mode=mode)
    model.eval().requires_grad_(False)

    def reward(prompts: list[str], responses: list[str]) -> torch.Tensor:
        return score(model, tokenizer, prompts, responses, batch_size=batch_size, mode=mode)

    return reward


def token_reward_model_fn(spec, device, batch_size: int, policy_tokenizer, prompts: list[str]) -> TokenRewardFn:
    """An AVA reward model as token_reward_fn (dense mode): mu_t at every position of the rows the rollout hands it
    (curate.train.reward.token_rewards). It reads the policy's token ids as they are, so its tokenizer must be the
    policy's: the same vocabulary, eos, and tokens for the same prompt (a bos one adds and the other does not)."""
    from .reward import load_reward_model, token_rewards

    model, tokenizer, _ = load_reward_model(spec, kind="reward", device=device, mode="dense")
    model.eval().requires_grad_(False)
    fix = ("Train the reward model from the policy's base (the same tokenizer), or use --reward-mode final (it "
           "scores the decoded text).")
    if tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        raise CurateError(f"--reward-mode dense: the reward model {spec.name} and the policy have different "
                          f"vocabularies ({len(tokenizer)} and {len(policy_tokenizer)} tokens); dense rewards score "
                          f"the very tokens the policy samples, so they need the same tokenizer. {fix}")
    if tokenizer.eos_token_id != policy_tokenizer.eos_token_id:
        raise CurateError(f"--reward-mode dense: the reward model {spec.name} ends a text with "
                          f"{tokenizer.eos_token!r} and the policy with {policy_tokenizer.eos_token!r}. {fix}")
    for p in prompts[:8]:
        if tokenizer(p)["input_ids"] != policy_tokenizer(p)["input_ids"]:
            raise CurateError(f"--reward-mode dense: the reward model {spec.name} and the policy tokenize the prompt "
                              f"{p[:60]!r} differently (special tokens added?). {fix}")

    def reward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        import torch

        ids, mask = input_ids.to(model.device), attention_mask.to(model.device)
        return torch.cat([token_rewards(model, ids[i:i + batch_size], mask[i:i + batch_size])
                          for i in range(0, len(ids), batch_size)])

    return reward


# ---------------------------------------------------------------------------------------------- train


@dataclass
class PPOResult:
    output: Path
    step: int  # the last step trained
    history: list[dict] = field(default_factory=list)  # the log.jsonl rows of this run (resumed rows included)


def train_ppo(config: PPOConfig, prompts: list[str] | None = None, reward_fn: RewardFn | None = None,
              on_step: Callable[[dict], None] | None = None) -> PPOResult:
    """Train the policy with PPO; checkpoints and logs go to config.output. Resumes when a checkpoint is there."""
    import numpy as np
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from transformers import AutoModelForCausalLM

    from ..models import resolve_model, resolve_policy
    from ..policy import load_policy
    from ..progress import counter, quiet_libraries

    quiet_libraries(config.quiet)
    from .ppo_algo import KLController, ValueHead, compute_gae, entropy, forward, ppo_loss, rollout, whiten
    from .ppo_state import LOG_FILE, OPTIMIZER_FILE, STATE_FILE, save_checkpoint, set_rng_state
    from .reward import resolve_mode

    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # the trainers' use_cpu: see process_state
    device = accelerator.device
    if not config.output:
        raise CurateError("--output is required: the folder for the PPO checkpoints.")
    out = Path(config.output)
    resuming = (out / STATE_FILE).is_file()
    if config.resume and not resuming:
        raise CurateError(f"--resume: there is no checkpoint to resume from ({out / STATE_FILE} does not exist).")
    if config.mini_batch_size <= 0 or config.batch_size % config.mini_batch_size:
        raise CurateError(f"--batch-size {config.batch_size} must be a multiple of --mini-batch-size "
                          f"{config.mini_batch_size}.")
    if reward_fn is None and not config.reward:
        raise CurateError("No reward: pass --reward DIR (a sequence-classification model with one label).")
    if prompts is None and config.prompts_file and not Path(config.prompts_file).is_file():
        raise CurateError(f"--prompts {config.prompts_file}: no such file (a .jsonl with a `prompt` field per line).")
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.MEGATRON_LM):
        raise CurateError(f"curate.train.ppo runs data parallel only (a whole actor, reference and reward model per "
                          f"process), not {accelerator.distributed_type.value}: launch it with "
                          "configs/accelerate/multi_gpu.yaml. Models that need sharding belong in OpenRLHF or verl "
                          "(README: Train on several GPUs).")
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:  # each would train alone and all would write --output
        raise CurateError(f"{launched} processes were launched but accelerate sees {accelerator.num_processes}: "
                          "check the accelerate config (distributed_type) against the devices this machine has.")
    set_seed(config.seed, device_specific=True)

    # every model named, found before anything loads: a wrong one fails at once, the same way as everywhere
    ref_spec = resolve_policy(config.policy, option="--policy")
    reference_spec = resolve_policy(config.reference, option="--reference") if config.reference else None
    reward_spec = resolve_model(config.reward, kind="reward") if reward_fn is None else None
    if reward_spec is not None:
        reward_mode = resolve_mode(reward_spec, config.reward_mode)
    elif config.reward_mode == "dense":
        raise CurateError("--reward-mode dense needs a reward model with per-token rewards (--reward, an AVA model); "
                          "a Python reward_fn gives one number per response.")
    else:
        reward_mode = "final"
    if resuming and (out / RECORD_FILE).is_file():  # one run, one reward: a record without a mode predates dense
        before = json.loads((out / RECORD_FILE).read_text(encoding="utf-8")).get("reward_mode") or "final"
        if before != reward_mode:
            raise CurateError(f"{out} was trained with reward mode {before}; resuming it in {reward_mode} would mix "
                              f"two rewards in one run. Give --reward-mode {before}, or train into a new --output.")

    # data
    if prompts is not None:
        source = "argument"
    else:
        prompts, source = load_prompts(config.prompts_file, config.workspace)
    # one stream of prompt draws for all processes: each takes its slice of the global batch
    prompt_rng = torch.Generator().manual_seed(config.seed)
    rank, world = accelerator.process_index, accelerator.num_processes

    # model
    base = load_policy(ref_spec, device="cpu", dtype=config.dtype)
    tokenizer = base.tokenizer  # left padding and a pad token
    if reference_spec is not None:
        ref_model = load_policy(reference_spec, device="cpu", dtype=config.dtype).model
        if ref_model.get_input_embeddings().num_embeddings != base.model.get_input_embeddings().num_embeddings:
            raise CurateError(f"The reference {config.reference} and the policy {config.policy} have different "
                              "vocabularies; the KL penalty needs the same tokenizer.")
    else:
        ref_model = copy.deepcopy(base.model)  # the initial weights
    reference = ref_model.eval().requires_grad_(False).to(device)  # frozen
    if resuming:
        actor = AutoModelForCausalLM.from_pretrained(out, dtype=getattr(torch, base.dtype))
        actor.generation_config = base.model.generation_config
        del base
    else:
        actor = base.model
    actor.config.use_cache = True
    value_head = ValueHead(actor.config.hidden_size)
    token_reward_fn = None
    if reward_spec is not None and reward_mode == "dense":
        token_reward_fn = token_reward_model_fn(reward_spec, device, config.mini_batch_size, tokenizer, prompts)
    elif reward_spec is not None:
        reward_fn = reward_model_fn(reward_spec, device, config.mini_batch_size, config.reward_mode)

    actor_opt = torch.optim.Adam(actor.parameters(), lr=config.actor_lr, betas=config.adam_betas)
    critic_opt = torch.optim.Adam(value_head.parameters(), lr=config.critic_lr, betas=config.adam_betas)
    actor, value_head, actor_opt, critic_opt = accelerator.prepare(actor, value_head, actor_opt, critic_opt)
    kl_ctl = KLController(config.kl_coef, config.kl_target, config.kl_horizon)

    start, history = 0, []
    if resuming:
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
        if len(state["rng"]) != world:  # its batches were --batch-size x that many: another count is another run
            raise CurateError(f"{out} was trained on {len(state['rng'])} process(es); resume it on as many (accelerate "
                              f"launch --num_processes {len(state['rng'])}), or train into a new --output.")
        start, kl_ctl.value = state["step"], state["kl_coef"]
        # read onto the CPU, copied to the device by load_state_dict (a CPU process's device, cpu:<rank>, is no
        # location torch.load knows)
        accelerator.unwrap_model(value_head).load_state_dict(torch.load(out / "value_head.pt", map_location="cpu"))
        if start < config.steps:  # a finished run has nothing to train (its last checkpoint may have no optimizer)
            if not (out / OPTIMIZER_FILE).is_file():
                raise CurateError(f"{out} holds the last checkpoint of a finished run, saved without its optimizer "
                                  f"state (--no-final-optimizer): it cannot continue past step {start}. Train into a "
                                  "new --output, from this folder as --policy.")
            opt_state = torch.load(out / OPTIMIZER_FILE, map_location="cpu", weights_only=False)
            actor_opt.load_state_dict(opt_state["actor"])
            critic_opt.load_state_dict(opt_state["critic"])
        set_rng_state(state["rng"][rank], prompt_rng)
        if (out / LOG_FILE).is_file():  # rows logged after the checkpoint belong to steps that will be redone
            rows = [json.loads(line) for line in (out / LOG_FILE).read_text(encoding="utf-8").splitlines() if line]
            history = [r for r in rows if r["step"] <= start]
    accelerator.wait_for_everyone()  # every process has read the log before the main one rewrites it
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)  # only now: a run that fails to start leaves no empty folder
        record = {
            "config": dataclasses.asdict(config),
            "policy": {"spec": config.policy, "folder": str(ref_spec.folder), "policy_id": ref_spec.model_id},
            "reference": config.reference or config.policy,
            "reward": config.reward or f"python:{getattr(reward_fn, '__qualname__', 'reward_fn')}",
            "reward_mode": reward_mode,
            "prompts": {"source": source, "count": len(prompts)},
            "processes": world,
            "global_batch_size": config.batch_size * world,
            "resumed_from_step": start if resuming else None,
        }
        write_record(out, record)
        (out / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")

    unwrapped = accelerator.unwrap_model(actor)

    def sum_all(t: torch.Tensor) -> torch.Tensor:  # over the processes
        return accelerator.reduce(t, reduction="sum") if world > 1 else t

    def latest(seconds: float, sums: dict, last: dict) -> str:
        return f"reward {last['reward']:.3f} kl {last['kl']:.3f}"

    bars = contextlib.ExitStack()
    advance = bars.enter_context(counter(config.quiet or not accelerator.is_main_process, "ppo", "steps",
                                         latest))(config.steps, start)
    try:
        for step in range(start + 1, config.steps + 1):
            t0 = time.perf_counter()
            # rollout: dropout off, so the sampled tokens' log-probs are exactly the policy's
            unwrapped.eval()
            picks = torch.randint(len(prompts), (config.batch_size * world,), generator=prompt_rng)
            batch_prompts = [prompts[i] for i in picks[rank * config.batch_size:(rank + 1) * config.batch_size]]
            roll = rollout(unwrapped, reference, value_head, tokenizer, batch_prompts, reward_fn, config, kl_ctl.value,
                           device, token_reward_fn)
            mask = roll["mask"]
            advantages, returns = compute_gae(roll["rewards"], roll["values"], mask, config.gamma, config.lam)
            if config.whiten_advantages:
                advantages = whiten(advantages, mask, sum_all)

            # update: several epochs of minibatches over this one batch
            actor.train(config.train_dropout)
            mb_stats = []
            for _ in range(config.ppo_epochs):
                for idx in torch.randperm(config.batch_size, device=device).split(config.mini_batch_size):
                    # the global minibatch's valid tokens per process: each process's sum over this is its share
                    # of the global mean, and the gradients' average over the processes is the global mean's
                    n_tokens = sum_all(mask[idx].sum().float()).clamp(min=1) / world
                    logprobs, logits, values = forward(actor, roll["sequences"][idx], roll["attention_mask"][idx],
                                                       roll["prompt_len"], value_head, config.temperature)
                    pg_loss, vf_loss, stats = ppo_loss(logprobs, roll["logprobs"][idx], values, roll["values"][idx],
                                                       advantages[idx], returns[idx], mask[idx], config.cliprange,
                                                       config.cliprange_value, n_tokens)
                    # the value head sees detached hidden states: vf_loss trains only it, pg_loss only the actor
                    accelerator.backward(pg_loss + vf_loss)
                    if config.max_grad_norm:
                        accelerator.clip_grad_norm_(actor.parameters(), config.max_grad_norm)
                        accelerator.clip_grad_norm_(value_head.parameters(), config.max_grad_norm)
                    for optimizer in (actor_opt, critic_opt):
                        optimizer.step()
                        optimizer.zero_grad()
                    stats["entropy"] = entropy(logits.detach(), mask[idx], n_tokens)
                    mb_stats.append({"pg_loss": pg_loss.item(), "vf_loss": vf_loss.item(), **stats})

            # log: means over processes; *_first is the first minibatch, where the policy is still the rollout policy
            local = {
                # the reward model's score, before the KL penalty (dense mode: the sum of its per-token rewards)
                "reward": roll["scores"].mean().item(),
                "kl": roll["kl"].mean().item(),  # per response: the sum over its tokens of logp_actor - logp_ref
                "response_length": mask.sum(1).float().mean().item(),
                **{k: float(np.mean([s[k] for s in mb_stats])) for k in ("entropy", "clipfrac", "approx_kl", "vf_loss",
                                                                        "pg_loss")},
                "clipfrac_first": mb_stats[0]["clipfrac"],
            }
            # the same number of rows per process: the mean of the processes' means is the global batch's (the
            # token statistics are already shares of the global ones)
            reduced = accelerator.reduce(torch.tensor(list(local.values()), device=device), reduction="mean")
            local["ratio_max_dev_first"] = accelerator.gather(torch.tensor([mb_stats[0]["ratio_max_dev"]],
                                                                           device=device)).max().item()
            reduced = [*reduced.tolist(), local["ratio_max_dev_first"]]
            row = {"step": step, **{k: round(v, 6) for k, v in zip(local, reduced, strict=True)},
                   "kl_coef": kl_ctl.value, "seconds": round(time.perf_counter() - t0, 3), "reward_mode": reward_mode}
            kl_ctl.update(row["kl"], config.batch_size * accelerator.num_processes)
            history.append(row)
            if accelerator.is_main_process:
                with open(out / LOG_FILE, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                if on_step:
                    on_step(row)
            advance(1, reward=row["reward"], kl=row["kl"])

            # save
            if step % config.save_every == 0 or step == config.steps:
                save_checkpoint(out, step, accelerator, actor, value_head, tokenizer, actor_opt, critic_opt, kl_ctl,
                                prompt_rng, optimizer=config.final_optimizer or step < config.steps)
    finally:
        bars.close()
    return PPOResult(out, max(start, config.steps), history)


def _print_step(row: dict) -> None:
    print(json.dumps(row), flush=True)  # stdout: one JSON line per step


def _script_run(config: PPOConfig) -> None:
    train_ppo(config, on_step=_print_step)


main = script(PPOConfig, _script_run, "python -m curate.train.ppo",
              "Train a policy with PPO against a reward model; one JSON line per step on stdout.")

if __name__ == "__main__":
    sys.exit(main())
