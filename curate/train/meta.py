"""MetaRM's meta dataset: k responses per prompt from the shifted policy (Secrets of RLHF II, section 3.2).

    meta = load_shifted(workspace, "it2", tokenizer, max_length=1024, k=4, seed=0)   # generations of iteration 2
    batch = meta.next(device)   # m prompts' k responses, padded: input_ids, attention_mask, groups [(start, end)]

The shifted samples are the `generations` of a later iteration or another branch (`curate generate` made them, or
`curate generations import`): SPEC is `it<N>` (branch main), `<branch>:it<N>` or `<branch>:<N>`. Prompts with fewer
than two distinct samples carry no difference (eq. 11 needs two) and are left out, counted.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from ..errors import CurateError

SPEC = re.compile(r"^(?:(?P<branch>[^:]+):)?(?:it)?(?P<iteration>\d+)$")


def parse_spec(spec: str) -> tuple[str, int]:
    m = SPEC.match(spec.strip())
    if not m:
        raise CurateError(f"--shifted-generations {spec!r}: give the generations' iteration as it<N> (branch main), "
                          "<branch>:it<N> or <branch>:<N>; `curate generations list` shows what the workspace has.")
    return m["branch"] or "main", int(m["iteration"])


@dataclass
class MetaBatches:
    """The tokenized meta dataset and a seeded cycle over its prompts, m at a time."""

    sequences: list[list[list[int]]]  # per prompt, its k token-id lists
    pad_token_id: int
    batch_prompts: int
    seed: int
    record: dict = field(default_factory=dict)
    _order: list[int] = field(default_factory=list)
    _rng: random.Random | None = None

    def next(self, device) -> dict:
        import torch

        if self._rng is None:
            self._rng = random.Random(self.seed)
        picked = []
        while len(picked) < min(self.batch_prompts, len(self.sequences)):
            if not self._order:  # a new pass over the prompts, in a new seeded order
                self._order = list(range(len(self.sequences)))
                self._rng.shuffle(self._order)
            picked.append(self._order.pop())
        seqs, groups = [], []
        for i in picked:
            groups.append((len(seqs), len(seqs) + len(self.sequences[i])))
            seqs.extend(self.sequences[i])
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [self.pad_token_id] * (width - len(s)) for s in seqs], device=device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        return {"input_ids": ids, "attention_mask": mask, "groups": groups}


def load_shifted(workspace, spec: str, tokenizer, max_length: int | None, k: int, batch_prompts: int,
                 seed: int) -> MetaBatches:
    """The shifted policy's samples of `spec`, up to k distinct ones per prompt, tokenized as the reward model
    reads them (prompt + response + eos, the last max_length tokens)."""
    from ..workspace import Workspace
    from .reward import spaced, token_ids

    if k < 2:
        raise CurateError(f"--meta-samples must be 2 or more (MetaRM's J compares responses to one prompt), not {k}.")
    branch, iteration = parse_spec(spec)
    ws = Workspace(workspace).require()
    with ws.connect() as con:
        rows = con.execute(
            "select p.prompt, g.text from generations g join pairs p using (pair_id) "
            "where g.branch = $b and g.iteration = $i order by p.prompt, g.pair_id, g.sample",
            {"b": branch, "i": iteration}).fetchall()
    if not rows:
        raise CurateError(f"--shifted-generations {spec}: the workspace {ws.root} has no generations of branch "
                          f"{branch!r}, iteration {iteration}. MetaRM needs the shifted policy's samples: make them "
                          f"with `curate generate --model MODEL --iteration {iteration} --samples 4` (or `curate "
                          "generations import`), and see `curate generations list`.")
    by_prompt: dict[str, list[str]] = {}
    for prompt, text in rows:
        texts = by_prompt.setdefault(prompt, [])
        if text and text not in texts and len(texts) < k:
            texts.append(text)
    usable = {p: t for p, t in by_prompt.items() if len(t) >= 2}
    if not usable:
        raise CurateError(f"--shifted-generations {spec}: none of its {len(by_prompt):,} prompts has two or more "
                          "distinct samples, and MetaRM's difference J (eq. 11) compares responses to one prompt. "
                          f"Sample more per prompt: `curate generate ... --iteration {iteration} --samples 4`.")
    sequences = [[token_ids(tokenizer, p, spaced(t), max_length) for t in texts] for p, texts in usable.items()]
    record = {"spec": spec, "branch": branch, "iteration": iteration, "prompts": len(usable),
              "prompts_left_out": len(by_prompt) - len(usable), "samples": sum(len(s) for s in sequences), "k": k,
              "batch_prompts": batch_prompts}
    return MetaBatches(sequences, tokenizer.pad_token_id, batch_prompts, seed, record)
