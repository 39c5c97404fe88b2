"""AVA's reward model (ava-variational-bayesian-irl.txt, "TQR Architecture" and "AVA for Reward Modeling").

    model, q_head, extra = prepare(model, base_folder)   # a (mean, log-scale) head per token, and the Q-value head
    mark(model, settings)                                # config.json says what the two outputs are

The reward head outputs, for every token, the mean mu_t and log sigma_t of a Gaussian reward (eq. 9): it is the
sequence-classification model's own `score` head with two outputs, so the saved folder loads wherever a reward
model does (`final` reads mu at the last token, `dense` mu at every response token; curate.train.reward). The
Q-values come from the language model's own head (eq. 12, "pre-trained Q-value model"): the input embeddings
where the base ties them (SmolLM2 does), else the base causal LM's output layer, trained alongside and not saved
(AVA trains the policy jointly, "although finally we only need the reward function").

Left out, and said so: the attention-based reward weights of eq. 11 ("AVA-p w/o rwt" in the paper's ablation).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CurateError

OUTPUTS = ("mean", "log_scale")


def is_ava(folder) -> bool:
    """Whether a saved model is an AVA reward model (its config.json says so)."""
    from ..models import reward_objective

    cfg = Path(folder) / "config.json"
    return cfg.is_file() and reward_objective(json.loads(cfg.read_text(encoding="utf-8"))) == "ava"


def prepare(model, base_folder) -> tuple:
    """The reward model with a two-output head (copied from the base when it is an AVA model already, else fresh),
    and the Q-value head: (model, q_head, extra trainable parameters the optimizer must also see)."""
    import torch

    hidden = model.config.hidden_size
    head = torch.nn.Linear(hidden, len(OUTPUTS), bias=False)
    torch.nn.init.normal_(head.weight, std=getattr(model.config, "initializer_range", 0.02))
    if is_ava(base_folder):  # continue from an AVA model: keep its reward head
        head.weight.data.copy_(_saved_tensor(base_folder, "score.weight"))
    model.score = head  # config.num_labels says 2 only when mark() saves it: TRL's RewardTrainer insists on 1
    if getattr(model.config, "tie_word_embeddings", False):
        embeddings = model.get_input_embeddings()

        def q_head(h):
            return h @ embeddings.weight.T

        return model, q_head, []
    lm_head = _untied_lm_head(base_folder)
    return model, lm_head, list(lm_head.parameters())


def mark(model, settings: dict) -> None:
    """Record in the model's config (and so in config.json) that its two outputs are AVA's mean and log-scale."""
    model.num_labels = model.config.num_labels = len(OUTPUTS)
    model.config.curate_reward = {"objective": "ava", "outputs": list(OUTPUTS), "settings": settings,
                                  "final": "the mean at the last token", "dense": "the mean at each response token"}


def _saved_tensor(folder, name: str):
    from safetensors import safe_open

    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            if name in st.keys():
                return st.get_tensor(name)
    raise CurateError(f"{folder} says it is an AVA reward model but holds no {name}: it is damaged; train it again.")


def _untied_lm_head(folder):
    """The output layer of a base causal LM whose embeddings are not tied."""
    from transformers import AutoConfig, AutoModelForCausalLM

    archs = AutoConfig.from_pretrained(str(folder)).architectures or []
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise CurateError(f"--objective ava takes its Q-values from the base's language-model head (AVA, eq. 12), "
                          f"and {folder} ({', '.join(archs) or 'no architecture'}) has none, nor tied embeddings. "
                          "Start from a causal LM (the SFT checkpoint) instead.")
    return AutoModelForCausalLM.from_pretrained(str(folder)).get_output_embeddings()
