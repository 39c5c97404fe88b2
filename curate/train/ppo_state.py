"""A PPO run's state on disk: weights, optimizers, the KL coefficient and every RNG, so a resumed run continues
exactly where the saved step left off (tests/test_ppo.py checks a resumed run equals an uninterrupted one).
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_text
from .ppo_algo import KLController

STATE_FILE, LOG_FILE, OPTIMIZER_FILE = "trainer_state.json", "log.jsonl", "optimizer.pt"


def _rng_state(prompt_rng: torch.Generator) -> dict:
    def b64(t: torch.Tensor) -> str:  # torch's RNG states are byte tensors; JSON holds them as base64
        return base64.b64encode(t.cpu().numpy().tobytes()).decode()

    np_state = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *map(float, np_state[2:])],
        "torch": b64(torch.get_rng_state()),
        "cuda": [b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "prompts": b64(prompt_rng.get_state()),
    }


def set_rng_state(state: dict, prompt_rng: torch.Generator) -> None:
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(tensor(state["torch"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensor(s) for s in state["cuda"]])
    prompt_rng.set_state(tensor(state["prompts"]))


def save_checkpoint(out: Path, step: int, accelerator, actor, value_head, tokenizer, actor_opt, critic_opt,
                    kl_ctl: KLController, prompt_rng: torch.Generator, optimizer: bool = True) -> None:
    """Weights, optimizer states and the step into `out`; trainer_state.json last, so its presence means complete.

    optimizer=False (the last step of a run that will not continue) leaves the optimizer state out, and removes
    an earlier checkpoint's: what remains is the policy, its value head and the state of a finished run.
    """
    from accelerate.utils import gather_object

    rng = gather_object([_rng_state(prompt_rng)])  # one per process
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # the weights are overwritten in place: an older state beside half-written weights would resume from them
        (out / STATE_FILE).unlink(missing_ok=True)
        accelerator.unwrap_model(actor).save_pretrained(out)
        tokenizer.save_pretrained(out)
        torch.save(accelerator.unwrap_model(value_head).state_dict(), out / "value_head.pt")
        if optimizer:
            torch.save({"actor": actor_opt.state_dict(), "critic": critic_opt.state_dict()}, out / OPTIMIZER_FILE)
        state = {"step": step, "kl_coef": kl_ctl.value, "rng": rng}
        write_text(out / STATE_FILE, json.dumps(state) + "\n")
        if not optimizer:  # only after the new state: until then the older checkpoint stays whole
            (out / OPTIMIZER_FILE).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
