"""Checkpoint folders that are never half-written, and the record each trainer leaves beside its model.

A trainer writes into a temporary sibling folder, renamed into place only when the model and its record are
complete (curate.atomic.staged_dir). An existing checkpoint is kept unless the caller asked to replace it
(`--force`), and then it is replaced only once the new one is done.

Under `accelerate launch` every process runs the trainer: the main process alone makes the temporary folder, tells
the others its name, writes the tokenizer and the record, and renames it once every process is done (a DeepSpeed
ZeRO-3 save gathers the weights from all of them into the main process's files).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..atomic import staged_dir
from ..errors import CurateError
from ..provenance import TRAIN_PACKAGES, versions
from ..settings import setting

RECORD_FILE = "curate_train.json"


# the fields every trainer's config shares, written once
def overwrite_setting():
    return setting(False, "Replace an existing --output folder (only once the new model is complete).",
                   flag="--force", toml=False)


def activation_checkpointing_setting():
    # recompute activations in the backward pass: about a third more compute for a fraction of the memory (a full
    # SmolLM2-135M reward-model epoch at max_length 512 peaked at 22 GiB of RAM without it)
    return setting(True, "Recompute activations in the backward pass: about half the memory for a little more "
                   "compute.")


def logging_steps_setting():
    return setting(10, "Log the loss every N steps.")


def _refuse(out: Path) -> CurateError:
    return CurateError(f"--output {out} already exists and is not empty: give another folder, or --force to "
                       "replace it (the old one is kept until the new model is complete).")


def check_output(output: str | os.PathLike, overwrite: bool) -> Path:
    """The output folder, refusing one that already holds something unless overwrite."""
    if not str(output):
        raise CurateError("--output is required: the folder to write the model into.")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise CurateError(f"--output {out} is a file, not a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise _refuse(out)
    return out


def process_state():
    """accelerate's PartialState: this process's index and the number of processes (1 without `accelerate launch`).

    On the CPU when no GPU is visible, as the trainers' use_cpu: a state made without it would see a one-process run
    in each process that torchrun starts on a machine without GPUs (and every one of them would write the output).
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


@contextmanager
def staged_output(output: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder to write the checkpoint into; on success it replaces `output`.

    Several processes (`accelerate launch`) share the main process's folder; it is renamed once all are done."""
    out = check_output(output, overwrite)
    state = process_state()
    with contextlib.ExitStack() as stack:
        tmp = None
        if state.is_main_process:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # an empty folder (made by hand, or by a run that failed) holds nothing to keep
            tmp = stack.enter_context(staged_dir(out, replace=overwrite, refuse=_refuse))
        if state.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            tmp = Path(broadcast_object_list([str(tmp) if tmp else None])[0])
        yield tmp
        state.wait_for_everyone()  # every process's share of the save is in tmp before the main one renames it
    state.wait_for_everyone()  # and no process returns before the output is in place


def processes_record(args) -> dict:
    """What a record says of the processes a transformers Trainer ran on (TrainingArguments `args`)."""
    return {"processes": args.world_size,
            "global_batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps}


def rows_seen(rows: int, batch_size: int, steps: int, processes: int = 1) -> int:
    """Rows the optimiser saw in `steps` steps of `batch_size` rows per process over `rows` rows, epoch after epoch
    (a --max-steps run may see fewer than the pairs there are). One process: the last batch of an epoch may be
    short. Several: accelerate deals the batches out in turn and completes every process's last batch of an epoch
    with the epoch's first rows (even_batches), so every step sees processes * batch_size rows, a few twice."""
    if processes > 1:
        return steps * processes * batch_size
    per_epoch = -(-rows // batch_size)  # steps in one epoch
    epochs, rest = divmod(steps, per_epoch)
    return epochs * rows + min(rest * batch_size, rows)


def steps_per_epoch(rows: int, batch_size: int, processes: int = 1) -> int:
    """Optimizer steps in one epoch of `rows` rows: batches of `batch_size` dealt to `processes` processes in turn."""
    batches = -(-rows // batch_size)
    return -(-batches // processes)


def write_record(folder: Path, record: dict) -> dict:
    """Write curate_train.json (what went in: data, base model, config; what came out; the package versions)
    into `folder` and return what it holds."""
    record = {**record, "versions": versions(TRAIN_PACKAGES)}
    (Path(folder) / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return record


class Messages(list):
    """What a trainer told the user: printed on stderr (unless quiet) and kept for its result."""

    def __init__(self, quiet: bool):
        super().__init__()
        self.quiet = quiet or not process_state().is_main_process  # several processes: one says it

    def say(self, msg: str) -> None:
        self.append(msg)
        if not self.quiet:
            print(msg, file=sys.stderr)


def show_progress(trainer, quiet: bool, what: str) -> None:
    """Give a transformers Trainer curate's progress bar (steps, loss) in place of its tqdm bars and the metric
    dictionaries it prints: one progress style on stderr, none off a terminal (curate.progress)."""
    import contextlib

    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    from ..progress import counter

    class CurateProgress(TrainerCallback):
        def __init__(self):
            self.stack, self.advance = contextlib.ExitStack(), None

        def on_train_begin(self, args, state, control, **kwargs):
            loss = lambda seconds, sums, last: f"loss {last['loss']:.4f}" if "loss" in last else ""  # noqa: E731
            self.advance = self.stack.enter_context(counter(quiet, what, "steps", loss))(state.max_steps,
                                                                                          state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.advance and logs and "loss" in logs:
                self.advance(0, loss=logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            if self.advance:
                self.advance(1)

        def on_train_end(self, args, state, control, **kwargs):
            self.stack.close()

    quiet = quiet or not trainer.is_world_process_zero()  # several processes: one bar
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(CurateProgress())
