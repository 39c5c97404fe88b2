"""Reward models: load one, and score prompt + response texts with it, the same way everywhere.

A Bradley-Terry reward model (`curate train rm`'s default) is a sequence classifier with one label
(AutoModelForSequenceClassification). It is trained on prompt + response + eos (TRL's RewardTrainer) and scored on
exactly that text, keeping the last max_length tokens (the prompt is cut from the left), in `curate eval rm`, in
PPO's reward and in the RM trainer's base.

An AVA reward model (issue #17; AVA paper, "AVA for Reward Modeling", Eq. 19) has two outputs per token: column 0
is the mean reward mu_t of the state after token t, column 1 its log-scale; its config.json says so in
`curate_reward = {"objective": "ava", ...}`. It gives a reward in one of two modes, which a caller must name:

    final   mu at the last token of prompt + response + eos: what the classifier's forward returns in logits[:, 0]
    dense   mu_t at every response token (PPO adds them to its per-token rewards); where one number per response
            is needed (accuracy, the rm: judge) their sum over the response tokens, eos included

A Bradley-Terry model has one number per text: `final` is what it always gave, and `dense` is an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CurateError
from ..models import REWARD_OUTPUTS as OUTPUTS  # the head's outputs per token, by objective
from ..models import reward_objective  # "bt" or "ava", from a model's config

if TYPE_CHECKING:
    import torch

__all__ = ["reward_objective", "check_mode", "resolve_mode", "load_reward_model", "replaced_head", "score",
           "token_rewards", "token_outputs", "response_span", "token_ids", "spaced"]
REWARD_MODES = ("final", "dense")
MODE_HELP = ("How an AVA reward model's per-token Gaussian rewards become rewards: final (the mean at the last "
             "token) or dense (the mean at every response token; one number per response: their sum). Required "
             "for an AVA model; a Bradley-Terry model has final only.")


def check_mode(config, mode: str | None, name: str, option: str = "--reward-mode") -> str:
    """The reward mode to use for a model: `mode`, checked against the model's objective ("final" for a
    Bradley-Terry model given none). An AVA model given none, or dense for a Bradley-Terry model, is an error that
    names the model and the option to set (option: how the caller's user spells it)."""
    if mode is not None and mode not in REWARD_MODES:
        raise CurateError(f"{option} must be one of {', '.join(REWARD_MODES)}, not {mode!r}.")
    objective = reward_objective(config)
    if objective == "ava" and mode is None:
        raise CurateError(f"{name} is an AVA reward model: it gives a Gaussian reward per token, so say which reward "
                          f"to use with {option} final (the mean at the last token) or {option} dense (the mean at "
                          f"every response token, summed where one number per response is needed).")
    if objective == "bt" and mode == "dense":
        raise CurateError(f"{option} dense needs per-token rewards, and {name} is a Bradley-Terry reward model (one "
                          f"reward per text, read at its last token): give {option} final, or leave it out.")
    return mode or "final"


def resolve_mode(ref, mode: str | None, option: str = "--reward-mode") -> str:
    """check_mode for a resolved reward model (a curate.models.ModelRef), reading only its config.json: a wrong
    mode fails before any data or weights are read."""
    from transformers import AutoConfig

    return check_mode(AutoConfig.from_pretrained(str(ref.folder)), mode, ref.name, option)


def load_reward_model(spec, kind: str = "rm-base", device=None, mode: str | None = None, num_labels: int = 1,
                      option: str = "--reward-mode"):
    """(model, tokenizer, pad_token_set) for a reward model, or a base to train one from. spec: a folder, a Hub id,
    or smollm2-135m (resolved by curate.models), or the ModelRef a caller resolved already (not resolved twice).

    kind "reward": a model to score with; `mode` is checked against its objective (check_mode: an AVA model needs
    one). kind "rm-base": a base to train a head of `num_labels` outputs on. A causal LM gets a fresh head; so does
    a reward model whose head has another number of outputs (an AVA checkpoint as the base of a Bradley-Terry
    model): its old head is dropped, its curate_reward key too, and replaced_head(model) names its objective, so
    the trainer can say so.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

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
                              f"to find each row's last token. Set pad_token in "
                              f"{ref.folder / 'tokenizer_config.json'}.")
        tokenizer.pad_token = tokenizer.eos_token
        pad_token_set = True
    config = AutoConfig.from_pretrained(folder)
    objective = reward_objective(config)
    replaced = None
    if kind == "reward":
        check_mode(config, mode, spec, option)
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=OUTPUTS[objective])
    elif _head_outputs(config, objective) not in (None, num_labels):
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels,
                                                                   ignore_mismatched_sizes=True)
        if hasattr(model.config, "curate_reward"):  # the new head is not the old objective's
            del model.config.curate_reward
        replaced = objective
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels)
    model.curate_replaced_head = replaced
    # a sequence-classification head scores the last non-pad token, which it finds by config.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model = model.to(device)
    return model, tokenizer, pad_token_set


def _head_outputs(config, objective: str) -> int | None:
    """Outputs per token of a checkpoint's reward head; None for a model without one (a causal LM)."""
    if objective != "bt":
        return OUTPUTS[objective]
    archs = getattr(config, "architectures", None) or []
    return config.num_labels if any(a.endswith("ForSequenceClassification") for a in archs) else None


def replaced_head(model) -> str | None:
    """The objective ("ava") whose head load_reward_model(kind="rm-base") dropped for a fresh one; else None."""
    return getattr(model, "curate_replaced_head", None)


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


def response_span(tokenizer, prompt: str, response: str, max_length: int | None) -> tuple[list[int], int]:
    """token_ids(...) and the index of its first response token: the first that differs from the prompt's own
    tokens (a token that merges the prompt's end with the response's start counts as the response's)."""
    eos = tokenizer.eos_token or ""
    text = prompt + response
    full = tokenizer(text if text.endswith(eos) else text + eos)["input_ids"]
    alone = tokenizer(prompt)["input_ids"]
    start = next((i for i, (x, y) in enumerate(zip(full, alone)) if x != y), min(len(full), len(alone)))
    start = min(start, len(full) - 1)  # an empty response still has its eos
    cut = len(full) - max_length if max_length is not None and len(full) > max_length else 0
    return full[cut:], max(start - cut, 0)


def token_rewards(model, input_ids: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """mu_t of an AVA model at every position, [batch, tokens] float32: the backbone's last hidden states through
    the `score` head, column 0 (what the classifier's forward reads at the last real token only). Rows padded on
    the right: positions count from the first token."""
    import torch

    head = getattr(model, "score", None)
    if not isinstance(head, torch.nn.Linear) or head.out_features != OUTPUTS["ava"]:
        raise CurateError(f"{model.name_or_path}: per-token rewards need a `score` head with {OUTPUTS['ava']} "
                          f"outputs (mean, log-scale), as an AVA reward model has; this model has "
                          f"{getattr(head, 'out_features', 'no such head')}.")
    return token_outputs(model, input_ids, attention_mask)[1][..., 0].float()


def token_outputs(model, input_ids, attention_mask):
    """(hidden [B, T, H], head outputs [B, T, labels]): what the model's sequence-classification forward computes
    before it picks the last token (the RM trainer's losses and token_rewards read them).

    A model wrapped for data parallelism (DDP, a DeepSpeed engine: `accelerate launch`) runs through the wrapper's
    forward, which arms the gradients' all-reduce (the backbone called alone would train each process apart); the
    last hidden state is then the forward's last hidden_states entry, the same tensor."""
    if not hasattr(model, "base_model_prefix"):
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        return hidden, model.module.score(hidden)
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    return hidden, model.score(hidden)


def score(model, tokenizer, prompts: list[str], responses: list[str], batch_size: int = 8,
          max_length: int | None = 1024, mode: str | None = None) -> "torch.Tensor":
    """The reward of each prompt + response (float32, on the CPU, in the order given), in batches padded on the
    right. mode: for an AVA model, final or dense (the sum of mu_t over the response tokens, eos included).

    Rows are batched by length (shortest first): a row's score does not depend on its batch (right padding,
    causal attention, the head reads the last real token), but a batch costs as much as its longest row times its
    rows, and held-out pairs range from 20 to 250 tokens."""
    import torch

    dense = check_mode(model.config, mode, model.name_or_path) == "dense"
    pad = tokenizer.pad_token_id
    if dense:
        spans = [response_span(tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
        seqs, starts = [s for s, _ in spans], [k for _, k in spans]
    else:
        seqs = [token_ids(tokenizer, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = torch.zeros(len(seqs))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = max(len(seqs[i]) for i in rows)
            input_ids = torch.tensor([seqs[i] + [pad] * (width - len(seqs[i])) for i in rows], device=model.device)
            mask = torch.tensor([[1] * len(seqs[i]) + [0] * (width - len(seqs[i])) for i in rows], device=model.device)
            if dense:
                pos = torch.arange(width, device=model.device)
                first = torch.tensor([starts[i] for i in rows], device=model.device)
                in_response = (pos >= first[:, None]) & mask.bool()
                mu = token_rewards(model, input_ids, mask)
                out[rows] = torch.where(in_response, mu, 0.0).sum(1).cpu()
            else:
                out[rows] = model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().cpu()
    return out
