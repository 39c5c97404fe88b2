"""The reward-model trainer: TRL's RewardTrainer, with the loss composed from curate.train.objectives.

One training step, top to bottom (Secrets of RLHF II, sections 2.4, 3.1, 3.2; AVA):

    1. MetaRM's meta step, with --meta: theta' = theta + eta dJ/dtheta on k samples of the shifted policy (eq. 12)
    2. the ranking loss on the preference batch (at theta' after a meta step):
         Bradley-Terry with margin and label smoothing (eqs. 2, 5, 6), or AVA-p with its CER term (eqs. 17, 18)
    3. + beta * the contrastive term, with --contrastive: SimCSE (eq. 9) or SwAV (eqs. 7-8) between two dropout
       views of the batch; the ranking loss is then the mean over both views ("computed using all original samples
       and their augmentations", section 3.1)
    4. the gradient of that loss, and after a meta step theta is restored: the optimizer applies the gradient taken
       at theta' to theta (eq. 14, Algorithm 1)

Without a contrastive term, a meta step or AVA, the step is TRL's own (plus label smoothing), as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .reward import token_outputs


@dataclass
class Terms:
    """What the trainer adds to the ranking loss; built by curate.train.rm from RMConfig."""

    label_smoothing: float = 0.0
    objective: str = "bt"  # or "ava"
    # kl_weight, td_weight, negative_weight, cer_weight, gamma, q_temperature
    ava: dict[str, float] = field(default_factory=dict)
    contrastive: str = "none"  # simcse | swav
    contrastive_weight: float = 1.0
    contrastive_on: str = "pairs"
    contrastive_temperature: float = 0.05
    swav: dict[str, float] = field(default_factory=dict)  # epsilon, iterations
    prototypes: Any = None  # SwAV's prototype vectors (a Parameter the optimizer also steps), with --contrastive swav
    meta: Any = None  # a curate.train.meta.MetaBatches, with --meta
    meta_lr: float = 0.0

    @property
    def plain(self) -> bool:
        """TRL's own loss (+ smoothing) is all there is."""
        return self.objective == "bt" and self.contrastive == "none"


def last_token(input_ids, pad_token_id: int):
    """The position a sequence-classification head reads: the last token that is not padding (transformers'
    GenericForSequenceClassification rule), so that `final` rewards and the trained ones are the same number."""
    import torch

    positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
    return (positions * (input_ids != pad_token_id).int()).argmax(-1)


def trainer_class():
    """CurateRewardTrainer, defined lazily so that importing this module does not import torch/trl."""
    import torch
    from trl import RewardTrainer

    from . import objectives as obj

    class CurateRewardTrainer(RewardTrainer):
        def __init__(self, *args, terms: Terms, extra_parameters: list | None = None, q_head=None, **kwargs):
            self.terms = terms
            self.extra_parameters = extra_parameters or []  # SwAV's prototypes, an untied Q head: trained, not saved
            self.q_head = q_head  # AVA's Q-values: the language model's head (eq. 12)
            super().__init__(*args, **kwargs)

        def create_optimizer(self, *args, **kwargs):
            optimizer = super().create_optimizer(*args, **kwargs)
            if self.extra_parameters:  # before the scheduler is made, so it schedules them too
                optimizer.add_param_group({"params": self.extra_parameters, "weight_decay": 0.0})
            return optimizer

        # -- one step ------------------------------------------------------------------------------------
        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = self._step(model, inputs, num_items_in_batch)
            if self.extra_parameters and self.accelerator.num_processes > 1:
                # outside the wrapped model, so data parallelism does not average their gradients: do it here
                # (a mean per micro-batch: the mean of what accumulated before is itself)
                for p in self.extra_parameters:
                    if p.grad is not None:
                        p.grad.copy_(self.accelerator.reduce(p.grad, reduction="mean"))
            return loss

        def _step(self, model, inputs, num_items_in_batch):
            if self.terms.meta is None:
                return super().training_step(model, inputs, num_items_in_batch)
            # MetaRM, Algorithm 1: ascend J on the shifted samples, take the ranking loss's gradient there, and
            # give that gradient to the original parameters. J's pass runs on the unwrapped model: every process
            # draws the same meta batch (one seed) from the same weights, so theta' is the same everywhere without
            # a data-parallel reduction (which autograd.grad would not trigger anyway)
            params = [p for p in model.parameters() if p.requires_grad]
            saved = [p.detach().clone() for p in params]
            meta_rewards = self._meta_rewards(self.accelerator.unwrap_model(model))
            j = torch.stack([obj.difference(r) for r in meta_rewards]).mean()
            grads = torch.autograd.grad(j, params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p.add_(g, alpha=self.terms.meta_lr)  # eq. 12: theta' = theta + eta dJ/dtheta
            self._metrics["train"]["meta_difference"].append(j.item())
            loss = super().training_step(model, inputs, num_items_in_batch)  # dL(theta')/dtheta' into .grad
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)  # eq. 14: theta_{t+1} = theta_t - alpha dL(theta')/dtheta'
            return loss

        def _meta_rewards(self, model) -> list:
            """The rewards of one meta batch, a [1, k] tensor per prompt (k may differ between prompts)."""
            batch = self.terms.meta.next(model.device)
            rewards = self._rewards(model, batch["input_ids"], batch["attention_mask"])
            return [rewards[s:e].unsqueeze(0) for s, e in batch["groups"]]

        def _rewards(self, model, input_ids, attention_mask):
            """The scalar reward of each sequence: the head's first output at the last token (BT's reward, AVA's
            final mean mu_T)."""
            _, out = token_outputs(model, input_ids, attention_mask)
            idx = last_token(input_ids, self.processing_class.pad_token_id)
            return out[torch.arange(len(input_ids), device=out.device), idx, 0]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            smoothing = inputs.pop("smoothing", None)  # per-row a: the loss's, not an input of the model
            prompt_len = inputs.pop("prompt_len", None)
            if self.terms.plain:
                return self._trl_loss(model, inputs, smoothing, return_outputs, num_items_in_batch)
            views = [self._view(model, inputs, prompt_len)]
            if self.terms.contrastive != "none":
                views.append(self._view(model, inputs, prompt_len))  # another dropout mask
            loss = sum(self._ranking(v, inputs, smoothing) for v in views) / len(views)
            if self.terms.contrastive != "none":
                cl = self._contrastive(views[0]["h"], views[1]["h"])
                self._metrics["train"]["contrastive"].append(cl.item())
                loss = loss + self.terms.contrastive_weight * cl
            self._log_rewards(views[0]["rewards"], inputs)
            return (loss, {"logits": views[0]["rewards"].unsqueeze(-1)}) if return_outputs else loss

        # -- the pieces ----------------------------------------------------------------------------------
        def _trl_loss(self, model, inputs, smoothing, return_outputs, num_items_in_batch):
            """TRL's loss -log sigma(d) (margin and centering included); label smoothing adds a * d, since
            -(1-a) log sigma(d) - a log sigma(-d) = -log sigma(d) + a d (Secrets of RLHF II, eq. 5)."""
            margin = inputs.get("margin")
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            if smoothing is not None or self.terms.label_smoothing:
                # the collator puts the chosen rows first, then the rejected ones (DataCollatorForPreference)
                rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
                d = rewards_chosen - rewards_rejected
                if margin is not None:
                    d = d - margin.to(d.dtype)
                a = self.terms.label_smoothing if smoothing is None else smoothing.to(d.device, d.dtype)
                loss = loss + (a * d).mean()  # the mean of the per-row losses, as TRL's is
            return (loss, outputs) if return_outputs else loss

        def _view(self, model, inputs, prompt_len) -> dict:
            """One forward pass: the pooled representation h and reward of each sequence (+ AVA's token terms)."""
            input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
            hidden, out = token_outputs(model, input_ids, mask)
            rows = torch.arange(len(input_ids), device=out.device)
            idx = last_token(input_ids, self.processing_class.pad_token_id)
            view = {"h": hidden[rows, idx], "rewards": out[rows, idx, 0]}
            if self.terms.objective == "ava":
                view["ava"] = self._ava_terms(hidden, out, input_ids, mask, prompt_len)
            return view

        def _ava_terms(self, hidden, out, input_ids, mask, prompt_len) -> dict:
            """ava_sequence_terms for every sequence: Q(s_t, a_t) = log softmax(z_{t-1} / tau)[x_t] from the
            language model's head (eq. 12) at the response tokens, mu_t and log sigma_t from the reward head."""
            a = self.terms.ava
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            response = (positions >= prompt_len.to(input_ids.device).unsqueeze(1)) & mask.bool()
            response[:, 0] = False  # the first token has no state before it
            b, t = response.nonzero(as_tuple=True)
            logits = self.q_head(hidden[b, t - 1]).float() / a["q_temperature"]  # only the positions needed
            q = torch.zeros(response.shape, dtype=logits.dtype, device=logits.device)
            q[b, t] = logits.gather(-1, input_ids[b, t].unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
            return obj.ava_sequence_terms(q, out[..., 0].float(), out[..., 1].float(), response, a["gamma"])

        def _ranking(self, view, inputs, smoothing):
            """The ranking loss of one view: Bradley-Terry (margin, smoothing, centering) or AVA-p + CER."""
            rc, rr = torch.chunk(view["rewards"].float(), 2)
            if self.terms.objective == "ava":
                a = self.terms.ava
                chosen, rejected = ({k: torch.chunk(v, 2)[i] for k, v in view["ava"].items()} for i in (0, 1))
                t = obj.ava_preference(chosen, rejected, rc, rr, a["kl_weight"], a["td_weight"],
                                       a["negative_weight"], a["cer_weight"])
                for k in ("likelihood", "kl", "td", "cer"):
                    self._metrics["train"][f"ava_{k}"].append(t[k].mean().item())
                return t["loss"].mean()
            a = self.terms.label_smoothing if smoothing is None else smoothing.to(rc.device, rc.dtype)
            margin = inputs.get("margin")
            loss = obj.bradley_terry(rc, rr, margin.to(rc.device) if margin is not None else None, a).mean()
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((rc + rr) ** 2)
            return loss

        def _contrastive(self, h1, h2):
            t = self.terms
            n = len(h1) // 2
            s1 = obj.contrastive_samples(h1[:n], h1[n:], t.contrastive_on)
            s2 = obj.contrastive_samples(h2[:n], h2[n:], t.contrastive_on)
            if t.contrastive == "simcse":
                return obj.simcse(s1.float(), s2.float(), t.contrastive_temperature)
            with torch.no_grad():  # SwAV keeps its prototypes on the unit sphere
                t.prototypes.copy_(torch.nn.functional.normalize(t.prototypes, dim=-1))
            return obj.swav(s1.float(), s2.float(), t.prototypes, t.contrastive_temperature,
                            t.swav["epsilon"], int(t.swav["iterations"]))

        def _log_rewards(self, rewards, inputs):
            """The metrics TRL logs (accuracy, margin, reward range) for the losses curate computes itself."""
            with torch.no_grad():
                rc, rr = torch.chunk(rewards.float(), 2)
                m = self._metrics["train"]
                m["accuracy"].append((rc > rr).float().mean().item())
                m["margin"].append((rc - rr).mean().item())
                m["mean_reward"].append(rewards.float().mean().item())

    return CurateRewardTrainer


def collator_class():
    """TRL's DataCollatorForPreference plus the per-row columns it would leave out: `smoothing`, `prompt_len`."""
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    class CurateCollator(DataCollatorForPreference):
        def torch_call(self, examples):
            out = super().torch_call(examples)
            if "smoothing" in examples[0]:
                out["smoothing"] = torch.tensor([ex["smoothing"] for ex in examples], dtype=torch.float)
            if "prompt_len" in examples[0]:  # chosen rows first, then rejected ones, as input_ids
                out["prompt_len"] = torch.tensor([ex["prompt_len"][0] for ex in examples]
                                                 + [ex["prompt_len"][1] for ex in examples])
            return out

    return CurateCollator


def make_trainer(model, tokenizer, train_ds, args, terms: Terms | None = None, extra_parameters=None, q_head=None):
    """CurateRewardTrainer over a dataset tokenize_rows made, with the collator that carries the extra columns.

    RewardTrainer keeps only its signature columns (chosen_ids, rejected_ids, margin) when remove_unused_columns
    is on, which would drop `smoothing` before the collator sees it; tokenize_rows' dataset holds nothing else,
    so curate turns that pruning off instead of overriding the Trainer's private column bookkeeping.
    """
    args.remove_unused_columns = False
    collator = collator_class()(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=args.pad_to_multiple_of)
    return trainer_class()(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                           data_collator=collator, terms=terms or Terms(), extra_parameters=extra_parameters,
                           q_head=q_head)


# ------------------------------------------------------------------------------------- from RMConfig
# each objective's own options: giving one without its objective is a mistake worth an error, not a silent no-op
OWN_OPTIONS = {
    ("contrastive", "simcse or swav"): ("contrastive_weight", "contrastive_on", "contrastive_dropout",
                                        "contrastive_temperature"),
    ("contrastive", "swav"): ("swav_prototypes", "swav_epsilon", "swav_iterations"),
    ("meta", "on"): ("shifted_generations", "meta_lr", "meta_samples", "meta_batch_size"),
    ("objective", "ava"): ("ava_kl_weight", "ava_td_weight", "ava_negative_weight", "ava_cer_weight", "ava_gamma",
                           "ava_q_temperature"),
}


def check_options(config) -> None:
    """CurateError for an objective's option given without the objective, and for what cannot go together."""
    import dataclasses

    from ..errors import CurateError

    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    active = {("contrastive", "simcse or swav"): config.contrastive != "none",
              ("contrastive", "swav"): config.contrastive == "swav",
              ("meta", "on"): config.meta, ("objective", "ava"): config.objective == "ava"}
    for (name, value), options in OWN_OPTIONS.items():
        given = [o for o in options if getattr(config, o) != defaults[o]]
        if given and not active[(name, value)]:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            turn_on = "--meta" if name == "meta" else f"--{name} {value.split(' or ')[0]}"
            raise CurateError(f"{flags} belong{'s' * (len(given) == 1)} to --{name} {value}, which is not on: add "
                              f"{turn_on}, or leave {'it' if len(given) == 1 else 'them'} out.")
    if config.meta and not config.shifted_generations:
        raise CurateError("--meta needs the shifted policy's samples (MetaRM, section 3.2): --shifted-generations "
                          "it<N> names the generations of a later iteration (or <branch>:it<N>).")
    if config.meta:
        from .meta import parse_spec

        parse_spec(config.shifted_generations)  # a malformed SPEC fails before any model loads
    if config.objective == "ava":
        bt_only = [flag for flag, on in (("--label-smoothing", config.label_smoothing),
                                         ("--smooth-incorrect", config.smooth_incorrect),
                                         ("--margin strength", config.margin == "strength"),
                                         ("--center-rewards-coefficient", config.center_rewards_coefficient))
                   if on]
        if bt_only:
            raise CurateError(f"{', '.join(bt_only)} change(s) the Bradley-Terry loss, and --objective ava trains "
                              "AVA-p (eq. 17) + CER instead: drop them, or train with --objective bt.")
    for name, value, low in (("--contrastive-dropout", config.contrastive_dropout, 0.0),
                             ("--contrastive-weight", config.contrastive_weight, 0.0),
                             ("--meta-lr", config.meta_lr, 0.0)):
        if not value >= low:
            raise CurateError(f"{name} must be {low} or more, not {value}.")
    if config.contrastive != "none" and not 0 < config.contrastive_dropout < 1:
        raise CurateError(f"--contrastive-dropout must be in (0, 1): the two views differ only by their dropout "
                          f"masks (SimCSE), not {config.contrastive_dropout}.")


def build_terms(config, model, meta=None) -> tuple[Terms, list]:
    """The Terms of a run and the trainer-owned parameters (SwAV's prototypes); sets the dropout of the views."""
    import torch

    temperature = config.contrastive_temperature or {"simcse": 0.05, "swav": 0.1}.get(config.contrastive, 0.05)
    terms = Terms(label_smoothing=config.label_smoothing, objective=config.objective,
                  ava={"kl_weight": config.ava_kl_weight, "td_weight": config.ava_td_weight,
                       "negative_weight": config.ava_negative_weight, "cer_weight": config.ava_cer_weight,
                       "gamma": config.ava_gamma, "q_temperature": config.ava_q_temperature},
                  contrastive=config.contrastive, contrastive_weight=config.contrastive_weight,
                  contrastive_on=config.contrastive_on, contrastive_temperature=temperature,
                  swav={"epsilon": config.swav_epsilon, "iterations": config.swav_iterations},
                  meta=meta, meta_lr=config.meta_lr)
    extra = []
    if config.contrastive != "none":
        set_dropout(model, config.contrastive_dropout)
    if config.contrastive == "swav":
        g = torch.Generator().manual_seed(config.seed)
        terms.prototypes = torch.nn.Parameter(torch.nn.functional.normalize(
            torch.randn(config.swav_prototypes, model.config.hidden_size, generator=g), dim=-1))
        extra.append(terms.prototypes)
    return terms, extra


def set_dropout(model, rate: float) -> int:
    """Every dropout of the model at `rate` for training (nn.Dropout layers and the attention dropout that Llama-style
    models keep as a number): SimCSE's two views differ only by their masks. Returns how many were set; the saved
    config keeps the model's own values (inference runs in eval mode, without dropout, either way)."""
    import torch

    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate
            n += 1
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = rate
            n += 1
    return n


def describe(config, meta=None) -> dict:
    """What curate_train.json records about the objective: its loss as a formula and every setting it used."""
    import dataclasses

    if config.objective == "ava":
        loss = ("AVA-p + CER: -loglik(chosen) + w_neg loglik(rejected) + w_kl (KL(c) + KL(r)) - w_td (logq(TD, c) + "
                "logq(TD, r)) - w_cer log sigma(mu_T(c) - mu_T(r)), per-token means over response tokens")
    else:
        loss = "bradley-terry: -(1-a) log sigma(d) - a log sigma(-d), d = r_chosen - r_rejected - margin"
    if config.contrastive != "none":
        loss += f" + beta * {config.contrastive} (mean ranking loss over two dropout views)"
    if config.meta:
        loss += ", after MetaRM's meta step theta' = theta + eta dJ/dtheta (J: eq. 11)"
    own = {o for (name, _), options in OWN_OPTIONS.items() for o in options}
    names = ["objective", "contrastive", "meta"] + [f.name for f in dataclasses.fields(config) if f.name in own]
    settings = {n: getattr(config, n) for n in names if n in ("objective", "contrastive", "meta") or _on(config, n)}
    if config.contrastive != "none" and config.contrastive_temperature is None:
        settings["contrastive_temperature"] = {"simcse": 0.05, "swav": 0.1}[config.contrastive]
    return {"name": config.objective, "loss": loss, "settings": settings, "meta": meta.record if meta else None}


def _on(config, option: str) -> bool:
    """Whether an objective's own option belongs to a part of the objective that is on."""
    active = {("contrastive", "simcse or swav"): config.contrastive != "none",
              ("contrastive", "swav"): config.contrastive == "swav",
              ("meta", "on"): config.meta, ("objective", "ava"): config.objective == "ava"}
    return any(option in options and active[key] for key, options in OWN_OPTIONS.items())
