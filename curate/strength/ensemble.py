"""`curate strength --method ensemble`: M reward models per fold, trained by curate's own trainer (Secrets of RLHF
II, section 2.2 and appendix: M = 10, one epoch, lr 5e-6, batch 32). To be written: see issue 16."""

from __future__ import annotations


def pair_inputs(ws, settings):
    raise NotImplementedError("--method ensemble is not built yet")


def ensemble_scores(pairs, settings, progress, flipped=None, cache=None):
    raise NotImplementedError("--method ensemble is not built yet")
