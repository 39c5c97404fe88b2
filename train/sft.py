"""Supervised fine-tuning on the workspace's `sft` pairs (prompt + chosen) with TRL's SFTTrainer.

    python -m train.sft --model HuggingFaceTB/SmolLM2-135M --output checkpoints/sft -w workspace
    curate train sft --model DIR --output checkpoints/sft -w workspace

    from train.sft import SFTRunConfig, train_sft
    result = train_sft(SFTRunConfig(model="DIR", output="checkpoints/sft", workspace="workspace"))

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

from curate.errors import CurateError

from .output import check_output, staged_output


@dataclass
class SFTRunConfig:
    model: str  # a causal LM folder (or Hub id)
    output: str
    workspace: str | None = None
    where: str | None = None  # a SQL predicate on pairs, e.g. "split = 'train'" (held-out pairs stay out)
    learning_rate: float = 2e-5  # TRL SFTConfig's default
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    max_length: int = 1024  # SFTConfig's default
    seed: int = 0
    logging_steps: int = 10
    activation_checkpointing: bool = True  # recompute activations in the backward pass: less memory
    overwrite: bool = False  # replace an existing output folder (once the new model is complete)
    quiet: bool = False


@dataclass
class SFTResult:
    output: Path
    rows: int
    truncated: int
    pad_token_set: bool
    metrics: dict
    record: dict
    seconds: float
    messages: list[str] = field(default_factory=list)


def train_sft(config: SFTRunConfig) -> SFTResult:
    """Fine-tune config.model on the sft pairs and save it (with curate_train.json) in config.output."""
    t0 = time.perf_counter()
    from curate.workspace import utcnow

    from .data import load_sft
    from .rm import train_versions, write_record

    messages: list[str] = []

    def say(msg: str) -> None:
        messages.append(msg)
        if not config.quiet:
            print(msg, file=sys.stderr)

    output = check_output(config.output, config.overwrite)
    # data
    rows = load_sft(config.workspace, config.where)

    # model
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model)
        model = AutoModelForCausalLM.from_pretrained(config.model)
    except OSError as e:
        raise CurateError(f"Could not load a causal LM from {config.model!r}: {e}") from None
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
    from trl import SFTConfig, SFTTrainer

    with staged_output(output, config.overwrite) as staging:
        args = SFTConfig(
            output_dir=str(staging), learning_rate=config.learning_rate, num_train_epochs=config.epochs,
            max_steps=config.max_steps, per_device_train_batch_size=config.batch_size,
            max_length=config.max_length, seed=config.seed, logging_steps=config.logging_steps, save_strategy="no",
            report_to="none", bf16=False, activation_checkpointing=config.activation_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False}, disable_tqdm=config.quiet,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=rows.dataset.remove_columns(["pair_id"]),
                             processing_class=tokenizer)
        started = utcnow()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is for data
            out = trainer.train()

        # save
        trainer.save_model(str(staging))
        tokenizer.save_pretrained(str(staging))
        metrics = {"train_loss": out.training_loss, "steps": trainer.state.global_step}
        record = {
            "kind": "sft",
            "data": rows.source,
            "base_model": config.model,
            "config": asdict(config),
            "counts": {"rows": len(rows.dataset), "truncated": truncated},
            "pad_token": {"token": tokenizer.pad_token, "id": tokenizer.pad_token_id, "set_to_eos": pad_token_set},
            "metrics": metrics,
            "versions": train_versions(),
            "started_at": started,
            "finished_at": utcnow(),
        }
        write_record(staging, record)
    return SFTResult(output, len(rows.dataset), truncated, pad_token_set, metrics, record,
                     time.perf_counter() - t0, messages)


def main(argv: list[str] | None = None) -> None:
    """`python -m train.sft`: the same options as `curate train sft`."""
    from curate.commands.train import sft

    sft.main(args=argv, prog_name="python -m train.sft", standalone_mode=True)


if __name__ == "__main__":
    main()
