"""Train a Bradley-Terry reward model on a curate subset with TRL's RewardTrainer.

    python -m train.rm --base checkpoints/sft --subset frft-split-even-it1 -w workspace --output checkpoints/rm-it1
    curate train rm --base checkpoints/sft --subset frft-split-even-it1 --output checkpoints/rm-it1

    from train.rm import RMConfig, train_rm
    result = train_rm(RMConfig(base="checkpoints/sft", subset="frft-split-even-it1", output="checkpoints/rm-it1"))

The base is a causal-LM SFT checkpoint (a fresh scalar head is added) or a previous reward model (FRFT
trains the reward model of iteration i from that of i-1). The loss is the Bradley-Terry loss with an
optional per-row margin and label smoothing a:

    loss = -(1 - a) log sigma(d) - a log sigma(-d),   d = r_chosen - r_rejected - margin

Rows are tokenized here, as RewardTrainer would (prompt + response + eos), so that rows longer than
max_length are counted before training instead of being filtered out silently by RewardTrainer:
`long_rows="drop"` (default, RewardTrainer's own behaviour) drops them and reports how many;
`long_rows="truncate"` cuts the prompt from the left so the row fits, and drops (and counts) only rows
whose response alone does not fit. Beside the checkpoint, `curate_train.json` records the inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import CurateError

from .output import check_output, staged_output

RECORD_FILE = "curate_train.json"
LONG_ROWS = ("drop", "truncate")


@dataclass
class RMConfig:
    base: str  # causal-LM SFT checkpoint or a previous reward model (a folder)
    output: str
    subset: str | None = None  # a subset of the workspace ...
    workspace: str | None = None
    data: str | None = None  # ... or an exported folder / .parquet / .jsonl
    # FRFT paper's reward-model learning rate (appendix, training details): 9e-6
    learning_rate: float = 9e-6
    epochs: float = 1.0
    batch_size: int = 8
    max_length: int = 1024  # RewardConfig's default
    long_rows: str = "drop"  # drop | truncate (prompt cut from the left)
    use_margin: bool = True  # read the `margin` column when the data has one
    label_smoothing: float = 0.0  # a in the loss above (0: plain Bradley-Terry)
    center_rewards_coefficient: float | None = None
    seed: int = 0
    bf16: str = "auto"  # auto (where the GPU or CPU has bfloat16), on, off
    # recompute activations in the backward pass: about a third more compute for a fraction of the memory
    # (a full SmolLM2-135M epoch at max_length 512 peaked at 22 GiB of RAM without it)
    activation_checkpointing: bool = True
    logging_steps: int = 10
    overwrite: bool = False  # replace an existing output folder (once the new model is complete)
    quiet: bool = False


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


def _trainer_class():
    """CurateRewardTrainer, defined lazily so that importing this module does not import torch/trl."""
    import torch
    from trl import RewardTrainer

    class CurateRewardTrainer(RewardTrainer):
        """RewardTrainer whose loss has a margin and label smoothing; its accuracy and margin metrics are kept."""

        def __init__(self, *args, label_smoothing: float = 0.0, **kwargs):
            self.label_smoothing = float(label_smoothing)
            super().__init__(*args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            margin = inputs.pop("margin", None)
            inputs["use_cache"] = False
            outputs = model(**inputs)
            # the collator puts the chosen rows first, then the rejected ones (DataCollatorForPreference)
            rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
            loss = preference_loss(rewards_chosen, rewards_rejected, margin, self.label_smoothing)
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)

            # the metrics exactly as trl.RewardTrainer.compute_loss logs them
            if mode == "train":
                n_tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += n_tokens // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            with torch.no_grad():
                all_rewards = self.accelerator.gather(outputs.logits)
                self._metrics[mode]["min_reward"].append(all_rewards.min().item())
                self._metrics[mode]["mean_reward"].append(all_rewards.mean().item())
                self._metrics[mode]["max_reward"].append(all_rewards.max().item())
                acc = (rewards_chosen > rewards_rejected).float().mean()
                self._metrics[mode]["accuracy"].append(self.accelerator.gather_for_metrics(acc).mean().item())
                gap = (rewards_chosen - rewards_rejected).mean()
                self._metrics[mode]["margin"].append(self.accelerator.gather_for_metrics(gap).mean().item())
            return (loss, outputs) if return_outputs else loss

    return CurateRewardTrainer


def length_grouped(dataset, batch_size: int, seed: int):
    """Rows ordered so each batch holds rows of similar length (less padding), batches in a seeded random order."""
    import random

    lengths = [max(len(c), len(r)) for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"])]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(seed).shuffle(batches)
    return dataset.select([i for b in batches for i in b])


def preference_loss(r_chosen, r_rejected, margin=None, label_smoothing: float = 0.0):
    """-(1 - a) log sigma(d) - a log sigma(-d), d = r_chosen - r_rejected - margin, averaged over the batch."""
    import torch.nn.functional as F

    d = r_chosen - r_rejected
    if margin is not None:
        d = d - margin.to(d.dtype)
    a = label_smoothing
    return (-(1 - a) * F.logsigmoid(d) - a * F.logsigmoid(-d)).mean()


# -- model and tokenizer -------------------------------------------------------------------------
def load_reward_model(base: str | os.PathLike):
    """(model, tokenizer, pad_token_set): AutoModelForSequenceClassification with one label, a pad token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = Path(base)
    if not (base / "config.json").is_file():
        raise CurateError(f"{base} is not a model folder (it has no config.json): give an SFT checkpoint "
                          "(`curate train sft`) or a previous reward model.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base))
    except (OSError, ValueError) as e:  # no tokenizer files, or ones transformers cannot read
        raise CurateError(f"{base} has no usable tokenizer ({type(e).__name__}: {' '.join(str(e).split())[:200]}). "
                          "Save the base model's tokenizer into that folder (tokenizer.save_pretrained(...)) "
                          "and run again.") from None
    pad_token_set = False
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CurateError(f"The tokenizer of {base} has neither a pad nor an eos token; a reward model needs one "
                              f"to find each row's last token. Set pad_token in {base / 'tokenizer_config.json'}.")
        tokenizer.pad_token = tokenizer.eos_token
        pad_token_set = True
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    # a sequence-classification head scores the last non-pad token, which it finds by config.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, pad_token_set


# -- data ----------------------------------------------------------------------------------------
def tokenize_rows(dataset, tokenizer, max_length: int | None, long_rows: str = "drop", use_margin: bool = True):
    """Tokenize as RewardTrainer does (prompt + response + eos); returns (dataset with chosen_ids/rejected_ids
    [/margin], counts). Long rows are dropped or prompt-truncated here and counted, never lost silently."""
    if long_rows not in LONG_ROWS:
        raise CurateError(f"long_rows must be one of {', '.join(LONG_ROWS)}, not {long_rows!r}.")
    eos = tokenizer.eos_token or ""
    has_margin = use_margin and "margin" in dataset.column_names
    out: dict[str, list] = {"chosen_ids": [], "rejected_ids": []}
    if has_margin:
        out["margin"] = []
    dropped_ids: list[str] = []
    counts = {"rows": len(dataset), "dropped_long": 0, "truncated": 0, "margin_column": has_margin}
    for i, ex in enumerate(dataset):
        ids = []
        for resp in (ex["chosen"], ex["rejected"]):
            text = ex["prompt"] + resp
            ids.append(tokenizer(text if text.endswith(eos) else text + eos)["input_ids"])
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
    counts["dropped_examples"] = dropped_ids[:10]
    import datasets

    return datasets.Dataset.from_dict(out), counts


# -- the record ----------------------------------------------------------------------------------
def write_record(output: Path, record: dict) -> Path:
    path = output / RECORD_FILE
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def train_versions() -> dict:
    from curate.provenance import versions

    return versions(("torch", "transformers", "trl", "accelerate", "datasets", "tokenizers", "duckdb", "pyarrow"))


def train_rm(config: RMConfig) -> RMResult:
    """Train a reward model as `config` says and save it (with curate_train.json) in config.output."""
    t0 = time.perf_counter()
    from curate.workspace import utcnow

    from .data import load_preferences

    messages: list[str] = []

    def say(msg: str) -> None:
        messages.append(msg)
        if not config.quiet:
            print(msg, file=sys.stderr)

    if not 0 <= config.label_smoothing < 0.5:
        raise CurateError(f"--label-smoothing must be in [0, 0.5), not {config.label_smoothing}.")
    output = check_output(config.output, config.overwrite)

    # data
    rows = load_preferences(config.workspace, subset=config.subset, data=config.data)

    # model
    model, tokenizer, pad_token_set = load_reward_model(config.base)
    if pad_token_set:
        say(f"the tokenizer of {config.base} has no pad token: using its eos token {tokenizer.eos_token!r} as pad")

    train_ds, counts = tokenize_rows(rows.dataset, tokenizer, config.max_length, config.long_rows, config.use_margin)
    if counts["dropped_long"]:
        say(f"{counts['dropped_long']:,} of {counts['rows']:,} rows are longer than max_length {config.max_length} "
            f"tokens and are left out (e.g. {', '.join(counts['dropped_examples'][:3])}); "
            "use --long-rows truncate or a larger --max-length to keep them")
    if counts["truncated"]:
        say(f"{counts['truncated']:,} of {counts['rows']:,} rows had their prompt cut from the left to fit "
            f"max_length {config.max_length}")
    if len(train_ds) == 0:
        raise CurateError(f"No row fits in max_length {config.max_length} tokens: raise --max-length.")
    train_ds = length_grouped(train_ds, config.batch_size, config.seed)

    # train
    import torch

    from curate.policy import cpu_has_fast_bf16

    # bfloat16 autocast where the hardware has it (weights and optimizer stay float32)
    use_bf16 = {"auto": (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
                or (not torch.cuda.is_available() and cpu_has_fast_bf16()),
                "on": True, "off": False}[config.bf16]
    with staged_output(output, config.overwrite) as staging:
        trainer, metrics, started = _fit(config, model, tokenizer, train_ds, staging, use_bf16)
        trainer.save_model(str(staging))
        tokenizer.save_pretrained(str(staging))
        cfg = asdict(config)
        record = {
            "kind": "reward_model",
            "loss": "bradley-terry: -(1-a) log sigma(d) - a log sigma(-d), d = r_chosen - r_rejected - margin",
            "data": rows.source,
            "subset": rows.source.get("subset"),
            "subset_id": rows.source.get("subset_id"),
            "manifest_sha256": rows.source.get("manifest_sha256"),
            "base_model": str(Path(config.base).resolve()),
            "config": cfg,
            "bf16_autocast": use_bf16,
            "counts": {k: v for k, v in counts.items()} | {"trained_rows": len(train_ds)},
            "pad_token": {"token": tokenizer.pad_token, "id": tokenizer.pad_token_id, "set_to_eos": pad_token_set},
            "metrics": metrics,
            "versions": train_versions(),
            "started_at": started,
            "finished_at": utcnow(),
        }
        write_record(staging, record)
    return RMResult(output, counts["rows"], len(train_ds), counts["dropped_long"], counts["truncated"],
                    pad_token_set, metrics, record, time.perf_counter() - t0, messages)


def _fit(config: RMConfig, model, tokenizer, train_ds, output_dir: Path, use_bf16: bool):
    """Run CurateRewardTrainer; (trainer, metrics, started_at)."""
    import torch
    from trl import RewardConfig

    from curate.workspace import utcnow

    args = RewardConfig(
        output_dir=str(output_dir), learning_rate=config.learning_rate, num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size, max_length=config.max_length,
        center_rewards_coefficient=config.center_rewards_coefficient, seed=config.seed,
        logging_steps=config.logging_steps, save_strategy="no", report_to="none",
        bf16=use_bf16, activation_checkpointing=config.activation_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}, disable_tqdm=config.quiet,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        train_sampling_strategy="sequential",  # the order length_grouped() made: batches of similar lengths
    )
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                               label_smoothing=config.label_smoothing)
    started = utcnow()
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is for data
        out = trainer.train()
    logged = [h for h in trainer.state.log_history if "accuracy" in h]
    metrics = {"train_loss": out.training_loss, "steps": trainer.state.global_step}
    if logged:
        metrics.update(accuracy=logged[-1]["accuracy"], margin=logged[-1]["margin"])
    return trainer, metrics, started


# -- evaluation ----------------------------------------------------------------------------------
def score_pairs(reward: str | os.PathLike, dataset, batch_size: int = 8, max_length: int | None = 1024):
    """(r_chosen, r_rejected) lists for each row of a prompt/chosen/rejected dataset; rows longer than
    max_length keep their last max_length tokens (the prompt is cut from the left)."""
    import torch

    model, tokenizer, _ = load_reward_model(reward)
    model.eval()
    eos = tokenizer.eos_token or ""

    def ids(text: str) -> list[int]:
        x = tokenizer(text if text.endswith(eos) else text + eos)["input_ids"]
        return x[-max_length:] if max_length is not None and len(x) > max_length else x

    scores: dict[str, list[float]] = {"chosen": [], "rejected": []}
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = dataset[start:start + batch_size]
            for side in ("chosen", "rejected"):
                seqs = [ids(p + r) for p, r in zip(batch["prompt"], batch[side])]
                width = max(len(s) for s in seqs)
                input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
                logits = model(input_ids=input_ids, attention_mask=mask).logits.squeeze(-1)
                scores[side].extend(logits.float().tolist())
    return scores["chosen"], scores["rejected"]


def evaluate_rm(reward: str | os.PathLike, workspace: str | None = None, where: str | None = None,
                subset: str | None = None, batch_size: int = 8, max_length: int | None = 1024) -> dict[str, Any]:
    """Accuracy (r_chosen > r_rejected) and mean margin (r_chosen - r_rejected) on held-out pairs."""
    from .data import load_eval_pairs

    rows = load_eval_pairs(workspace, where=where, subset=subset)
    rc, rr = score_pairs(reward, rows.dataset, batch_size, max_length)
    n = len(rc)
    return {
        "reward_model": str(reward),
        "pairs": n,
        "accuracy": sum(c > r for c, r in zip(rc, rr)) / n,
        "mean_margin": sum(c - r for c, r in zip(rc, rr)) / n,
        "mean_reward_chosen": sum(rc) / n,
        "mean_reward_rejected": sum(rr) / n,
        "selection": rows.source,
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m train.rm`: the same options as `curate train rm`."""
    from curate.commands.train import rm

    rm.main(args=argv, prog_name="python -m train.rm", standalone_mode=True)


if __name__ == "__main__":
    main()
