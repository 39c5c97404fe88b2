"""Loading a causal LM to sample from: the model in eval mode on its device and dtype, its tokenizer padding on
the left. Which model, and its identity, is curate.models' business (resolve_policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import CurateError
from .hardware import cpu_has_fast_bf16
from .models import ModelRef

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "half": "float16"}


@dataclass
class LoadedPolicy:
    model: Any  # a transformers causal LM, in eval mode, on `device`
    tokenizer: Any  # pads on the left, has a pad token
    device: str
    dtype: str  # float32, bfloat16 or float16

    def __iter__(self):  # `model, tokenizer = load_policy(ref)`
        return iter((self.model, self.tokenizer))


def resolve_dtype(device: str, dtype: str | None) -> str:
    """The torch dtype name `dtype` means on `device` (see load_policy)."""
    name = (dtype or "auto").lower()
    if name == "auto":
        if device.startswith("cuda"):
            import torch

            if torch.cuda.is_available():
                return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            return "bfloat16"  # a driver without GPUs deciding for GPU actors: bfloat16, what current GPUs run
        return "bfloat16" if device == "cpu" and cpu_has_fast_bf16() else "float32"
    if name in DTYPES:
        return DTYPES[name]
    raise CurateError(f"--dtype {dtype!r}: expected auto, float32, bfloat16 or float16.")


def load_policy(ref: ModelRef, device: str | None = None, dtype: str | None = "auto") -> LoadedPolicy:
    """Load the model (eval mode, on `device`) and its tokenizer (left padding, a pad token) for generation.

    device: default cuda when available, else cpu. dtype: auto (bfloat16 on CUDA, float16 on GPUs without
    bfloat16; on CPU bfloat16 where the CPU has native bfloat16 instructions (avx512_bf16/AMX: about 1.9x the
    tokens/s of float32 for SmolLM2-135M on this project's machine), else float32), float32, bfloat16 or float16.
    Unlike transformers' "auto", the checkpoint's own dtype does not decide: the converted default is stored in
    float32 and would otherwise run so on a GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = resolve_dtype(device, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(ref.folder), dtype=getattr(torch, name))
        model = model.eval().to(device)
    except Exception as e:  # a broken checkpoint, an unavailable device, out of memory
        raise CurateError(f"Could not load policy {ref.name} from {ref.folder} on {device} in {name}: "
                          f"{type(e).__name__}: {' '.join(str(e).split())}") from None
    # Left padding: a decoder-only model continues the last token of each row of a batch.
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(ref.folder), padding_side="left")
    except (OSError, ValueError) as e:  # no tokenizer files, or ones transformers cannot read
        raise CurateError(f"Policy {ref.name} has no usable tokenizer in {ref.folder} ({type(e).__name__}). Save the "
                          "model's tokenizer into that folder (tokenizer.save_pretrained(...)).") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CurateError(f"The tokenizer of {ref.name} has neither a pad nor an eos token; batched generation "
                              f"needs one. Set pad_token in {ref.folder / 'tokenizer_config.json'}.")
        tokenizer.pad_token = tokenizer.eos_token
    gen = model.generation_config
    gen.use_cache = True  # the KV cache: without it every new token recomputes the whole prefix
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    if gen.eos_token_id is None and tokenizer.eos_token_id is not None:
        gen.eos_token_id = tokenizer.eos_token_id
    return LoadedPolicy(model, tokenizer, device, name)
