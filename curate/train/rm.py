"""Train a reward model on a curate subset with TRL's RewardTrainer: Bradley-Terry, contrastive, MetaRM or AVA.

    python -m curate.train.rm --base checkpoints/sft --subset frft-split-even-it1 -w workspace -o checkpoints/rm-it1
    curate train rm --base checkpoints/sft --subset frft-split-even-it1 --output checkpoints/rm-it1

    from curate.train.rm import RMConfig, train_rm
    result = train_rm(RMConfig(base="checkpoints/sft", subset="frft-split-even-it1", output="checkpoints/rm-it1"))

The base is a causal-LM SFT checkpoint (a fresh scalar head is added), a previous reward model (FRFT trains the
reward model of iteration i from that of i-1), the packaged smollm2-135m or a Hub id. The loss is the
Bradley-Terry loss with an optional per-row margin (TRL reads the `margin` column itself) and label smoothing a:

    loss = -(1 - a) log sigma(d) - a log sigma(-d),   d = r_chosen - r_rejected - margin

a is one value for every row (--label-smoothing), or per row with --smooth-incorrect (a on the pairs whose mean
strength is below 0, 0 on the others: Secrets of RLHF II, section 2.5, "Soft Label + Margin"); --margin strength
takes the margin from the workspace's strength table (max(mean, 0) * --margin-scale, eq. 6).

The other objectives (issue #17) are composed by curate.train.rm_trainer from the losses of curate.train.objectives:
--contrastive simcse|swav adds beta times a contrastive term between two dropout views (section 3.1), --meta takes a
MetaRM meta step on the shifted policy's samples (--shifted-generations, section 3.2; curate.train.meta), and
--objective ava trains AVA's per-token Gaussian reward instead of Bradley-Terry (curate.train.ava).

Rows are tokenized here, as RewardTrainer would (prompt + response + eos), so that rows longer than
max_length are counted before training instead of being filtered out silently by RewardTrainer:
`long_rows="drop"` (default, RewardTrainer's own behaviour) drops them and reports how many;
`long_rows="truncate"` cuts the prompt from the left so the row fits, and drops (and counts) only rows
whose response alone does not fit. Beside the checkpoint, `curate_train.json` records the inputs.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CurateError
from ..progress import quiet_libraries
from ..settings import quiet_setting, script, setting, workspace_setting
from .checkpoint import (
    Messages,
    activation_checkpointing_setting,
    check_output,
    logging_steps_setting,
    overwrite_setting,
    processes_record,
    rows_seen,
    show_progress,
    staged_output,
    write_record,
)
from .rm_trainer import build_terms, check_options, describe, make_trainer

LONG_ROWS = ("drop", "truncate")
MARGINS = ("data", "strength", "none")
LOGGED = ("accuracy", "margin", "contrastive", "meta_difference", "ava_likelihood", "ava_kl", "ava_td", "ava_cer")
OBJECTIVES = ("bt", "ava")
CONTRASTIVE = ("none", "simcse", "swav")
CONTRASTIVE_SAMPLES = ("pairs", "difference")  # curate.train.objectives.CONTRASTIVE_SAMPLES, without torch


@dataclass
class RMConfig:
    # inputs and outputs (`curate run` sets them per branch and iteration)
    base: str = setting("", "Model to start from: a causal-LM SFT checkpoint (a reward head is added), a previous "
                        "reward model, smollm2-135m or a Hub id.", required=True, toml=False, metavar="MODEL")
    output: str = setting("", "Folder for the reward model and its curate_train.json.", short="-o", required=True,
                          toml=False, metavar="DIR")
    subset: str | None = setting(None, "Train on this subset of the workspace (name or subset_id).", toml=False)
    workspace: str | None = workspace_setting()
    data: str | None = setting(None, "Train on an exported folder, .parquet or .jsonl instead (columns prompt, "
                               "chosen, rejected[, margin]).", toml=False, metavar="PATH")
    # the knobs
    lr: float = setting(9e-6, "Learning rate.", paper="FRFT paper, appendix: reward-model training")
    epochs: float = setting(1.0, "Training epochs.")
    batch_size: int = setting(8, "Pairs per device per step.")
    max_length: int = setting(1024, "Longest transcript (prompt + response + eos) in tokens.",
                              paper="TRL RewardConfig's default")
    long_rows: str = setting("drop", "Rows over --max-length: drop them (counted and reported) or cut the prompt "
                             "from the left.", choices=LONG_ROWS)
    margin: str = setting("data", "Loss margin: the data's `margin` column when it has one (data), max(mean "
                          "strength, 0) * --margin-scale from the workspace's `strength` table (strength), or none.",
                          choices=MARGINS, paper="Secrets of RLHF part II, section 2.4.2, eq. 6")
    margin_scale: float = setting(1.0, "With --margin strength: the margin is max(mean, 0) times this.")
    label_smoothing: float = setting(0.0, "a in -(1-a) log sigma(d) - a log sigma(-d) on every row (0: plain "
                                     "Bradley-Terry).", paper="Secrets of RLHF part II, section 2.4.1, eq. 5")
    smooth_incorrect: float = setting(0.0, "Label smoothing a on the incorrect pairs only (mean strength < 0, in the "
                                      "orientation trained); a = 0 on the others.",
                                      paper="Secrets of RLHF part II, section 2.5: Soft Label + Margin")
    strength: str | None = setting(None, "Strength identity of --margin strength and --smooth-incorrect (or a unique "
                                   "prefix; default: the latest computed).", metavar="ID")
    # the objective (Secrets of RLHF II, section 3; AVA); values no paper gives are marked "curate's choice"
    objective: str = setting("bt", "The ranking loss: Bradley-Terry (bt) or AVA-p with its CER term (ava: a Gaussian "
                             "reward per token; use the model with --reward-mode final|dense).", choices=OBJECTIVES,
                             paper="AVA (ava-variational-bayesian-irl), eqs. 17-18")
    contrastive: str = setting("none", "Add a contrastive term between two dropout views: simcse or swav.",
                               choices=CONTRASTIVE, paper="Secrets of RLHF part II, section 3.1")
    # beta of L_rm + beta L_cl: the paper gives no value; 1.0 is curate's choice (the example)
    contrastive_weight: float = setting(1.0, "beta in L_rm + beta * L_cl (the paper gives none: curate's choice).")
    contrastive_on: str = setting("pairs", "Contrast the responses' representations (pairs) or the chosen - rejected "
                                  "differences (difference).", choices=CONTRASTIVE_SAMPLES,
                                  paper="Secrets of RLHF part II, section 3.1.1")
    # SimCSE's own defaults (Gao et al. 2021): dropout 0.1, tau 0.05; SwAV's (Caron et al. 2020): tau 0.1
    contrastive_dropout: float = setting(0.1, "Dropout rate of the two views (the augmentation).",
                                         paper="SimCSE (Gao et al. 2021): p = 0.1")
    contrastive_temperature: float | None = setting(None, "tau of eq. 9 / eq. 8 (default: 0.05 for simcse, 0.1 for "
                                                    "swav, those papers' own).")
    swav_prototypes: int = setting(32, "SwAV: number of prototypes K (curate's choice for batches of tens).")
    swav_epsilon: float = setting(0.05, "SwAV: Sinkhorn's entropy epsilon.", paper="SwAV (Caron et al. 2020)")
    swav_iterations: int = setting(3, "SwAV: Sinkhorn iterations.", paper="SwAV (Caron et al. 2020)")
    meta: bool = setting(False, "MetaRM: a meta step on the shifted policy's samples before every update.",
                         flag="--meta/--no-meta", paper="Secrets of RLHF part II, section 3.2, Algorithm 1")
    shifted_generations: str | None = setting(None, "MetaRM's shifted samples: the generations of it<N> or "
                                              "<branch>:it<N> (`curate run` uses the iteration's own).", toml=False,
                                              metavar="SPEC")
    # eta of eq. 12: the paper gives none. curate's choice makes the meta step about as long as one Adam step at the
    # default lr (lr * sqrt(parameters) ~ 0.1 on SmolLM2-135M, where |dJ/dtheta| measured 3.7): 0.03
    meta_lr: float = setting(0.03, "eta of the meta step theta' = theta + eta dJ/dtheta (eq. 12; curate's choice).")
    meta_samples: int = setting(4, "k: responses per prompt in J (eq. 11), at most (curate's choice).")
    meta_batch_size: int = setting(2, "m: prompts per meta step (curate's choice).")
    # AVA's weights: the paper's objective weighs its terms equally; lambda (TD) = 1 as in AVRIL's experiments
    ava_kl_weight: float = setting(1.0, "AVA: weight of KL(q(r_t) || N(0, 1)).", paper="AVRIL / AVA eq. 4")
    ava_td_weight: float = setting(1.0, "AVA: lambda, weight of the TD term log q(Q_t - gamma Q_t+1).",
                                   paper="AVRIL / AVA eq. 4")
    ava_negative_weight: float = setting(1.0, "AVA: weight of the rejected responses' log-likelihood (minimised).",
                                         paper="AVA eq. 17")
    ava_cer_weight: float = setting(1.0, "AVA: weight of CER, -log sigma(mu_T(chosen) - mu_T(rejected)).",
                                    paper="AVA eq. 18")
    ava_gamma: float = setting(1.0, "AVA: discount gamma of the TD error.")
    ava_q_temperature: float = setting(1.0, "AVA: tau of Q = log softmax(z / tau) (eq. 12).")
    center_rewards_coefficient: float | None = setting(None, "Weight of TRL's reward-centering term "
                                                       "(mean (r_chosen + r_rejected)^2); none by default.")
    seed: int = setting(0, "Seed of the head's init and the shuffling.", toml=False)
    bf16: str = setting("auto", "bfloat16 autocast: auto where the GPU or CPU has bfloat16 instructions.",
                        choices=("auto", "on", "off"))
    activation_checkpointing: bool = activation_checkpointing_setting()
    logging_steps: int = logging_steps_setting()
    overwrite: bool = overwrite_setting()
    quiet: bool = quiet_setting()


@dataclass
class RMResult:
    output: Path
    rows: int
    trained_rows: int
    dropped_long: int
    truncated: int
    pad_token_set: bool
    metrics: dict
    record: dict
    seconds: float
    messages: list[str] = field(default_factory=list)


def length_grouped(dataset, batch_size: int, seed: int):
    """Rows ordered so each batch holds rows of similar length (less padding), batches in a seeded random order."""
    import random

    lengths = [max(len(c), len(r)) for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"])]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(seed).shuffle(batches)
    return dataset.select([i for b in batches for i in b])


def tokenize_rows(dataset, tokenizer, max_length: int | None, long_rows: str = "drop", use_margin: bool = True,
                  prompt_len: bool = False):
    """Tokenize as RewardTrainer does (prompt + response + eos); returns (dataset with chosen_ids/rejected_ids
    [/margin][/smoothing][/prompt_len], counts). Long rows are dropped or prompt-truncated here and counted, never
    lost silently. prompt_len (AVA's per-token terms need it): the prompt's tokens in each of the two sequences."""
    from .reward import token_ids

    if long_rows not in LONG_ROWS:
        raise CurateError(f"long_rows must be one of {', '.join(LONG_ROWS)}, not {long_rows!r}.")
    has_margin = use_margin and "margin" in dataset.column_names
    has_smoothing = "smoothing" in dataset.column_names
    out: dict[str, list] = {"chosen_ids": [], "rejected_ids": []}
    if has_margin:
        out["margin"] = []
    if has_smoothing:
        out["smoothing"] = []
    if prompt_len:
        out["prompt_len"] = []
    dropped_ids: list[str] = []
    counts = {"rows": len(dataset), "dropped_long": 0, "truncated": 0, "margin_column": has_margin}
    for i, ex in enumerate(dataset):
        ids = [token_ids(tokenizer, ex["prompt"], resp, None) for resp in (ex["chosen"], ex["rejected"])]
        full = [len(x) for x in ids]
        fits = max_length is None or max(len(x) for x in ids) <= max_length
        if not fits and long_rows == "truncate":
            n_prompt = len(tokenizer(ex["prompt"])["input_ids"])
            if all(len(x) - n_prompt <= max_length for x in ids):  # the responses fit: cut the prompt's head
                ids = [x[-max_length:] if len(x) > max_length else x for x in ids]
                counts["truncated"] += 1
                fits = True
        if not fits:
            counts["dropped_long"] += 1
            dropped_ids.append(ex.get("pair_id") or f"row {i}")
            continue
        out["chosen_ids"].append(ids[0])
        out["rejected_ids"].append(ids[1])
        if has_margin:
            out["margin"].append(float(ex["margin"] or 0.0))
        if has_smoothing:
            out["smoothing"].append(float(ex["smoothing"]))
        if prompt_len:  # the prompt's tokens, less those a truncation cut from its head (one at least)
            n_prompt = len(tokenizer(ex["prompt"])["input_ids"])
            out["prompt_len"].append([max(n_prompt - (n - len(x)), 1) for n, x in zip(full, ids)])
    counts["dropped_examples"] = dropped_ids[:10]
    import datasets

    return datasets.Dataset.from_dict(out), counts


def train_rm(config: RMConfig, callbacks: list | None = None) -> RMResult:
    """Train a reward model as `config` says and save it (with curate_train.json) in config.output.

    callbacks: extra transformers TrainerCallbacks (a benchmark's clock that stops at its time budget, a
    notebook's logger); they see every step and may end training early, after which the model is saved as usual.
    """
    t0 = time.perf_counter()
    from ..models import resolve_model
    from ..workspace import utcnow
    from . import ava
    from .data import load_preferences, with_strength
    from .meta import load_shifted
    from .reward import load_reward_model, replaced_head

    messages = Messages(config.quiet)
    say = messages.say
    quiet_libraries(config.quiet)  # before any model loads: the libraries' bars follow curate's rule

    if not config.base:
        raise CurateError("--base is required: the SFT checkpoint (or previous reward model) to start from.")
    if not 0 <= config.label_smoothing < 0.5:
        raise CurateError(f"--label-smoothing must be in [0, 0.5), not {config.label_smoothing}.")
    if not 0 <= config.smooth_incorrect < 0.5:
        raise CurateError(f"--smooth-incorrect must be in [0, 0.5) (0: off), not {config.smooth_incorrect}.")
    if config.label_smoothing and config.smooth_incorrect:
        raise CurateError("--label-smoothing smooths every row and --smooth-incorrect only the incorrect ones: give "
                          "one of them.")
    if config.margin not in MARGINS:
        raise CurateError(f"--margin must be one of {', '.join(MARGINS)}, not {config.margin!r}.")
    if config.margin_scale != 1.0 and config.margin != "strength":
        raise CurateError("--margin-scale applies to --margin strength (the margin is max(mean, 0) times it).")
    if config.strength is not None and config.margin != "strength" and not config.smooth_incorrect:
        raise CurateError("--strength picks the strength rows of --margin strength and --smooth-incorrect: give one "
                          "of them too.")
    check_options(config)
    output = check_output(config.output, config.overwrite)
    base = resolve_model(config.base, kind="rm-base")  # a folder, a Hub id or smollm2-135m

    # data
    rows = load_preferences(config.workspace, subset=config.subset, data=config.data)
    strength = None
    if config.margin == "strength" or config.smooth_incorrect:
        rows.dataset, strength = with_strength(
            rows, config.workspace, config.strength, config.margin_scale if config.margin == "strength" else None,
            config.smooth_incorrect)
        if "smooth_incorrect" in strength:
            say(f"label smoothing {config.smooth_incorrect:g} on the {strength['smooth_incorrect']['rows']:,} "
                f"incorrect rows (mean strength < 0) of {len(rows.dataset):,}")

    # model: seeded first, as --seed says: a causal-LM base gets a fresh reward head, drawn from torch's global RNG
    # (the Trainer seeds only once it is built; unseeded, the same run trained a different model each time)
    from transformers import set_seed

    set_seed(config.seed)
    model, tokenizer, pad_token_set = load_reward_model(base, kind="rm-base")
    if pad_token_set:
        say(f"the tokenizer of {config.base} has no pad token: using its eos token {tokenizer.eos_token!r} as pad")
    if replaced_head(model):
        say(f"{config.base} is an AVA reward model: its (mean, log-scale) head is "
            + ("kept" if config.objective == "ava" else "replaced by a fresh one-output head for Bradley-Terry"))
    q_head, owned = None, []
    if config.objective == "ava":  # a (mean, log-scale) head per token, Q-values from the LM head
        model, q_head, owned = ava.prepare(model, base.folder)
        if "margin" in rows.dataset.column_names and config.margin == "data":
            say("AVA's CER term has no margin: the data's `margin` column is not used")
    meta = None
    if config.meta:
        meta = load_shifted(config.workspace, config.shifted_generations, tokenizer, config.max_length,
                            config.meta_samples, config.meta_batch_size, config.seed)
        say(f"MetaRM: {meta.record['samples']:,} samples of {meta.record['prompts']:,} prompts from "
            f"{config.shifted_generations} ({meta.record['prompts_left_out']:,} prompts with fewer than 2 left out)")
    terms, extra = build_terms(config, model, meta)
    objective = describe(config, meta)

    train_ds, counts = tokenize_rows(rows.dataset, tokenizer, config.max_length, config.long_rows,
                                     config.margin != "none" and config.objective == "bt",
                                     prompt_len=config.objective == "ava")
    if counts["dropped_long"]:
        fix = ("a response alone is longer than that: a larger --max-length keeps them"
               if config.long_rows == "truncate" else "use --long-rows truncate or a larger --max-length to keep them")
        say(f"{counts['dropped_long']:,} of {counts['rows']:,} rows are longer than max_length {config.max_length} "
            f"tokens and are left out (e.g. {', '.join(counts['dropped_examples'][:3])}); {fix}")
    if counts["truncated"]:
        say(f"{counts['truncated']:,} of {counts['rows']:,} rows had their prompt cut from the left to fit "
            f"max_length {config.max_length}")
    if len(train_ds) == 0:
        raise CurateError(f"No row fits in max_length {config.max_length} tokens: raise --max-length.")
    train_ds = length_grouped(train_ds, config.batch_size, config.seed)

    # train
    import torch

    from ..hardware import cpu_has_fast_bf16

    # bfloat16 autocast where the hardware has it (weights and optimizer stay float32)
    use_bf16 = {"auto": (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
                or (not torch.cuda.is_available() and cpu_has_fast_bf16()),
                "on": True, "off": False}[config.bf16]
    with staged_output(output, config.overwrite) as staging:
        trainer, metrics, started = _fit(config, model, tokenizer, train_ds, staging, use_bf16, callbacks,
                                         terms, owned + extra, q_head)
        if config.objective == "ava":
            ava.mark(model, objective["settings"])

        # save: every process (a ZeRO-3 save gathers the weights), but only the main one writes
        trainer.save_model(str(staging))
        record = {
            "kind": "reward_model",
            "loss": objective["loss"],
            "objective": objective,
            "data": rows.source,
            "strength": strength,
            "subset": rows.source.get("subset"),
            "subset_id": rows.source.get("subset_id"),
            "manifest_sha256": rows.source.get("manifest_sha256"),
            "base_model": str(base.folder),
            "base_model_id": base.model_id,
            "config": asdict(config),
            "bf16_autocast": use_bf16,
            **processes_record(trainer.args),
            "counts": dict(counts) | {"trained_rows": len(train_ds)},
            "pad_token": {"token": tokenizer.pad_token, "id": tokenizer.pad_token_id, "set_to_eos": pad_token_set},
            "metrics": metrics,
            "started_at": started,
            "finished_at": utcnow(),
        }
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(str(staging))
            record = write_record(staging, record)
    return RMResult(output, counts["rows"], len(train_ds), counts["dropped_long"], counts["truncated"],
                    pad_token_set, metrics, record, time.perf_counter() - t0, messages)


def _fit(config: RMConfig, model, tokenizer, train_ds, output_dir: Path, use_bf16: bool, callbacks: list | None,
         terms, extra_parameters: list, q_head):
    """Run CurateRewardTrainer; (trainer, metrics, started_at)."""
    import torch
    from trl import RewardConfig

    from ..workspace import utcnow

    args = RewardConfig(
        output_dir=str(output_dir), learning_rate=config.lr, num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size, max_length=config.max_length,
        center_rewards_coefficient=config.center_rewards_coefficient, seed=config.seed,
        logging_steps=config.logging_steps, save_strategy="no", report_to="none",
        bf16=use_bf16, activation_checkpointing=config.activation_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}, disable_tqdm=True,  # curate's bar instead
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        train_sampling_strategy="sequential",  # the order length_grouped() made: batches of similar lengths
    )
    trainer = make_trainer(model, tokenizer, train_ds, args, terms, extra_parameters, q_head)
    show_progress(trainer, config.quiet, "reward model")
    for callback in callbacks or ():
        trainer.add_callback(callback)
    started = utcnow()
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is for data
        out = trainer.train()
    logged = [h for h in trainer.state.log_history if "accuracy" in h]
    steps = trainer.state.global_step
    metrics = {"train_loss": out.training_loss, "steps": steps,
               "rows_seen": rows_seen(len(train_ds), config.batch_size, steps, args.world_size)}
    if logged:  # the last log's averages, and each term of the composed loss where there is one
        metrics.update({k: v for k, v in logged[-1].items() if k in LOGGED})
    return trainer, metrics, started


main = script(RMConfig, lambda config: str(train_rm(config).output), "python -m curate.train.rm",
              "Train a reward model on a subset: Bradley-Terry, contrastive, MetaRM or AVA.")

if __name__ == "__main__":
    sys.exit(main())
