"""Where a run keeps things: its branches, subset names and checkpoint folders, fixed by the config so a resumed
run finds what an earlier attempt made.

Branches are named after the run: iteration 1's data (one SFT policy for all) lives on branch `<run>`, iteration
k > 1 on branch `<run>/<strategy>`, so several runs share a workspace (and its embeddings) without colliding, and
the plain commands' branch `main` is left alone.
"""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig


class Layout:
    def __init__(self, cfg: RunConfig, done: dict[str, dict]):
        self.cfg = cfg
        self.done = done  # step key -> outputs of its finished row (the sft step's folder lives there)
        self.run_id = cfg.run.name
        self.shared = cfg.run.name  # the branch of shared work: ingest, SFT, iteration 1's samples, embeddings
        self.ckpt = cfg.checkpoints.resolve()  # absolute: a resumed run finds them from any folder

    def sft_path(self) -> Path:
        done = self.done.get(f"sft/{self.shared}/it0")
        if done:  # the folder the sft step trained or resolved (a Hub id's snapshot)
            return Path(done["checkpoint"])
        if self.cfg.sft.checkpoint:
            given = Path(self.cfg.sft.checkpoint)
            return given.resolve() if given.exists() else given  # a folder, or a Hub id resolved by the step
        return self.ckpt / "sft"

    def rm_path(self, strategy: str, k: int) -> Path:
        return self.ckpt / strategy / f"rm-it{k}"

    def ppo_path(self, strategy: str, k: int) -> Path:
        return self.ckpt / strategy / f"ppo-it{k}"

    def subset_name(self, strategy: str, k: int) -> str:
        return f"{self.run_id}-{strategy}-it{k}"

    def branch(self, strategy: str) -> str:
        """A strategy's branch: its own reward models and actor (the paper's RM1..RM4)."""
        return f"{self.run_id}/{strategy}"

    def data_branch(self, strategy: str, k: int) -> str:
        """Where iteration k's generations and scores of a strategy live: the shared branch at k = 1, and always
        for a baseline (it ignores the policy, so it never samples its own)."""
        return self.shared if k == 1 or self.is_baseline(strategy) else self.branch(strategy)

    def data_iteration(self, strategy: str, k: int) -> int:
        """The scored iteration a strategy's filter of iteration k reads: a baseline draws from iteration 1's."""
        return 1 if self.is_baseline(strategy) else k

    def is_baseline(self, strategy: str) -> bool:
        from .. import strategies

        return strategy in strategies.REGISTRY and strategies.get(strategy).baseline

    def heldout_subset(self, strategy: str, k: int) -> str:
        """The held-out pairs the strategy's filter selects for its policy of iteration k (the eval step's)."""
        return f"{self.run_id}-{strategy}-it{k}-heldout"

    def comparison_name(self, strategy: str, k: int) -> str:
        return f"{self.run_id}-{strategy}-it{k}-vs-{self.cfg.run.baseline}"

    def sampling_branch(self, strategy: str | None) -> str:
        """Where a generate step writes: the shared branch for iteration 1 (strategy None), else the strategy's."""
        return self.shared if strategy is None else self.branch(strategy)

    @property
    def report_key(self) -> str:
        return f"report/{self.shared}/it{self.cfg.run.alpha}"

    def rm_base(self, strategy: str, k: int) -> Path:
        """The reward model of iteration k starts from the SFT model (k = 1) or the branch's RM of k - 1."""
        return self.sft_path() if k == 1 else self.rm_path(strategy, k - 1)

    def policy_for(self, strategy: str | None, k: int) -> Path:
        """The policy that samples (and that PPO starts from) in iteration k of a strategy's branch."""
        return self.sft_path() if k == 1 else self.ppo_path(strategy, k - 1)
