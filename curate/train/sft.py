"""Supervised fine-tuning on the workspace's `sft` pairs (prompt + chosen) with TRL's SFTTrainer.

    python -m curate.train.sft --model smollm2-135m --output checkpoints/sft -w workspace
    curate train sft --model smollm2-135m --output checkpoints/sft

    from curate.train.sft import SFTConfig, train_sft
    result = train_sft(SFTConfig(model="smollm2-135m", output="checkpoints/sft", workspace="workspace"))

FRFT starts from a policy fine-tuned on the half of HH-RLHF given role `sft` at ingest
(`curate ingest --sft-fraction 0.5`). Rows are TRL's prompt-completion format (the completion is the
chosen response, so the transcript is prompt + chosen); the loss is on the completion only, SFTTrainer's
default for that format. Sequences over max_length are truncated by SFTTrainer (keep_start); their count
is recorded. `curate_train.json` beside the checkpoint records the inputs.
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


@dataclass
class SFTConfig:
    model: str = setting("smollm2-135m", "Causal LM to fine-tune: a folder, a Hub id or smollm2-135m (offline).",
                         metavar="MODEL")
    output: str = setting("", "Folder for the checkpoint and its curate_train.json.", short="-o", required=True,
                          toml=False, metavar="DIR")
    workspace: str | None = workspace_setting()
    split: str | None = setting(None, "Only the sft pairs of this split (e.g. train: held-out pairs stay out).",
                                toml=False)
    where: str | None = setting(None, "Only the sft pairs matching this SQL predicate on `pairs`.", toml=False,
                                metavar="SQL")
    lr: float = setting(2e-5, "Learning rate.", paper="TRL SFTConfig's default")
    epochs: float = setting(1.0, "Training epochs.")
    max_steps: int = setting(-1, "Stop after N steps (-1: use --epochs).")
    batch_size: int = setting(8, "Rows per device per step.")
    max_length: int = setting(1024, "Longest sequence in tokens; longer ones are truncated (and counted).",
                              paper="TRL SFTConfig's default")
    seed: int = setting(0, "Seed of the shuffling.", toml=False)
    logging_steps: int = logging_steps_setting()
    activation_checkpointing: bool = activation_checkpointing_setting()
    overwrite: bool = overwrite_setting()
    quiet: bool = quiet_setting()


@dataclass
class SFTResult:
    output: Path
    rows: int  # sft pairs available
    truncated: int
    pad_token_set: bool
    metrics: dict
    record: dict
    seconds: float
    messages: list[str] = field(default_factory=list)


def train_sft(config: SFTConfig) -> SFTResult:
    """Fine-tune config.model on the sft pairs and save it (with curate_train.json) in config.output."""
    t0 = time.perf_counter()
    from ..models import resolve_policy
    from ..workspace import utcnow
    from .data import load_sft

    messages = Messages(config.quiet)
    say = messages.say
    quiet_libraries(config.quiet)  # before any model loads: the libraries' bars follow curate's rule

    output = check_output(config.output, config.overwrite)
    base = resolve_policy(config.model)  # a packaged name, a folder or a Hub id, as every command resolves models

    # data
    rows = load_sft(config.workspace, config.where, config.split)

    # model
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base.folder))
        model = AutoModelForCausalLM.from_pretrained(str(base.folder))
    except OSError as e:
        raise CurateError(f"Could not load a causal LM from {config.model!r} ({base.folder}): {e}") from None
    pad_token_set = False
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CurateError(f"The tokenizer of {config.model} has neither a pad nor an eos token: set pad_token "
                              "in its tokenizer_config.json.")
        tokenizer.pad_token = tokenizer.eos_token
        pad_token_set = True
        say(f"the tokenizer of {config.model} has no pad token: using its eos token {tokenizer.eos_token!r} as pad")
    model.config.pad_token_id = tokenizer.pad_token_id

    eos = tokenizer.eos_token or ""
    truncated = sum(
        len(tokenizer(p + c + ("" if c.endswith(eos) else eos))["input_ids"]) > config.max_length
        for p, c in zip(rows.dataset["prompt"], rows.dataset["completion"])
    )
    if truncated:
        say(f"{truncated:,} of {len(rows.dataset):,} sft rows are longer than max_length {config.max_length} tokens "
            "and are truncated (their end is cut)")

    # train
    from trl import SFTConfig as TrlSFTConfig
    from trl import SFTTrainer

    with staged_output(output, config.overwrite) as staging:
        args = TrlSFTConfig(
            output_dir=str(staging), learning_rate=config.lr, num_train_epochs=config.epochs,
            max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
            max_length=config.max_length, seed=config.seed, logging_steps=config.logging_steps, save_strategy="no",
            report_to="none", bf16=False, activation_checkpointing=config.activation_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False}, disable_tqdm=True,  # curate's bar instead
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=rows.dataset.remove_columns(["pair_id"]),
                             processing_class=tokenizer)
        show_progress(trainer, config.quiet, "sft")
        started = utcnow()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is for data
            out = trainer.train()

        # save: every process (a ZeRO-3 save gathers the weights), but only the main one writes
        trainer.save_model(str(staging))
        steps = trainer.state.global_step
        seen = rows_seen(len(rows.dataset), config.batch_size, steps, args.world_size)
        metrics = {"train_loss": out.training_loss, "steps": steps, "rows_seen": seen}
        record = {
            "kind": "sft",
            "data": rows.source,
            "base_model": config.model,
            "base_model_id": base.model_id,
            "config": asdict(config),
            **processes_record(args),
            "counts": {"rows": len(rows.dataset), "truncated": truncated, "rows_seen": seen},
            "pad_token": {"token": tokenizer.pad_token, "id": tokenizer.pad_token_id, "set_to_eos": pad_token_set},
            "metrics": metrics,
            "started_at": started,
            "finished_at": utcnow(),
        }
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(str(staging))
            record = write_record(staging, record)
    return SFTResult(output, len(rows.dataset), truncated, pad_token_set, metrics, record,
                     time.perf_counter() - t0, messages)


main = script(SFTConfig, lambda config: str(train_sft(config).output), "python -m curate.train.sft",
              "Fine-tune a causal LM on the sft pairs.")

if __name__ == "__main__":
    sys.exit(main())
