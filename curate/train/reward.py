"""Reward models: load one, and score prompt + response texts with it, the same way everywhere.

The reward model is a sequence classifier with one label (AutoModelForSequenceClassification). It is trained on
prompt + response + eos (TRL's RewardTrainer) and scored on exactly that text, keeping the last max_length
tokens (the prompt is cut from the left), in `curate eval rm`, in PPO's reward and in the RM trainer's base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CurateError

if TYPE_CHECKING:
    import torch


def load_reward_model(spec, kind: str = "rm-base", device=None):
    """(model, tokenizer, pad_token_set) for a reward model, or a base to train one from (kind rm-base: a causal
    LM gets a fresh one-label head). spec: a folder, a Hub id, or smollm2-135m (resolved by curate.models), or
    the ModelRef a caller resolved already (not resolved twice)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..models import ModelRef, resolve_model

    ref = spec if isinstance(spec, ModelRef) else resolve_model(str(spec), kind=kind)
    spec = ref.name  # what the messages call it
    folder = str(ref.folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:  # no tokenizer files, or ones transformers cannot read
        raise CurateError(f"{spec} has no usable tokenizer ({type(e).__name__}: {' '.join(str(e).split())[:200]}). "
                          "Save the base model's tokenizer into that folder (tokenizer.save_pretrained(...)) "
                          "and run again.") from None
    pad_token_set = False
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CurateError(f"The tokenizer of {spec} has neither a pad nor an eos token; a reward model needs one "
                              f"to find each row's last token. Set pad_token in {ref.folder / 'tokenizer_config.json'}.")
        tokenizer.pad_token = tokenizer.eos_token
        pad_token_set = True
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    # a sequence-classification head scores the last non-pad token, which it finds by config.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model = model.to(device)
    return model, tokenizer, pad_token_set


def spaced(response: str) -> str:
    """A response as HH writes it after "Assistant:": with its leading space (stored generations are stripped,
    other datasets' responses come without one), so a reward model scores what it was trained on."""
    return response if response[:1].isspace() else " " + response


def token_ids(tokenizer, prompt: str, response: str, max_length: int | None) -> list[int]:
    """prompt + response + eos as the RM trainer tokenizes it; longer ones keep their last max_length tokens."""
    eos = tokenizer.eos_token or ""
    text = prompt + response
    ids = tokenizer(text if text.endswith(eos) else text + eos)["input_ids"]
    return ids[-max_length:] if max_length is not None and len(ids) > max_length else ids


def score(model, tokenizer, prompts: list[str], responses: list[str], batch_size: int = 8,
          max_length: int | None = 1024) -> "torch.Tensor":
    """The reward of each prompt + response (float32, on the CPU, in the order given), in batches padded on the
    right. Rows are batched by length (shortest first): a row's score does not depend on its batch (right padding,
    causal attention, the head reads the last real token), but a batch costs as much as its longest row times its
    rows, and held-out pairs range from 20 to 250 tokens."""
    import torch

    pad = tokenizer.pad_token_id
    seqs = [token_ids(tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = torch.zeros(len(seqs))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = max(len(seqs[i]) for i in rows)
            input_ids = torch.tensor([seqs[i] + [pad] * (width - len(seqs[i])) for i in rows], device=model.device)
            mask = torch.tensor([[1] * len(seqs[i]) + [0] * (width - len(seqs[i])) for i in rows], device=model.device)
            out[rows] = model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().cpu()
    return out
