"""Split HH-RLHF transcripts into the shared prompt and the two final responses.

The prompt is the shared transcript up to and including the final '\\n\\nAssistant:'; the responses
are what follows. Real rows break that rule (in the shared harmless-base test file, 5 of 2,312 diverge
before the last turn): those are split at the longest shared prefix that ends right after an
'\\n\\nAssistant:' marker and flagged `diverged_early`. The common case runs vectorised in polars;
only the rows that break it go through Python.
"""

from __future__ import annotations

import os

import polars as pl

MARKER = "\n\nAssistant:"


def split_transcripts(df: pl.DataFrame) -> pl.DataFrame:
    """Add prompt, chosen, rejected, diverged, reject_reason, reject_detail to chosen_full/rejected_full."""
    cf, rf, prompt = pl.col("chosen_full"), pl.col("rejected_full"), pl.col("prompt")
    out = df.with_columns(chosen=cf.str.split(MARKER).list.last()).with_columns(
        prompt=cf.str.strip_suffix(pl.col("chosen"))  # "" when chosen has no marker
    ).with_columns(rejected=rf.str.strip_prefix(prompt))
    # the common case: rejected continues chosen's prompt with no marker after it, so its last turn starts where
    # chosen's does (the marker cannot overlap itself, so no marker straddles the cut)
    simple = out.select(
        (prompt != "") & rf.str.starts_with(prompt) & ~pl.col("rejected").str.contains(MARKER, literal=True)
    ).to_series()
    out = out.with_columns(
        diverged=pl.lit(False),
        reject_reason=pl.lit(None, dtype=pl.String),
        reject_detail=pl.lit(None, dtype=pl.String),
    )
    hard = (~simple).arg_true()
    if len(hard):
        fixed = [_split_hard(c, r) for c, r in zip(out["chosen_full"].gather(hard), out["rejected_full"].gather(hard))]
        cols = ("prompt", "chosen", "rejected", "diverged", "reject_reason", "reject_detail")
        for j, name in enumerate(cols):
            values = pl.Series(name, [f[j] for f in fixed], dtype=out.schema[name])
            out = out.with_columns(out[name].scatter(hard, values))
    return out


def _split_hard(chosen: str, rejected: str):
    """(prompt, chosen, rejected, diverged, reject_reason, reject_detail) for a row off the common path."""
    missing = [n for n, t in (("chosen", chosen), ("rejected", rejected)) if MARKER not in t]
    if missing:
        return (None, None, None, False, "no_assistant_turn", f"{' and '.join(missing)} has no '\\n\\nAssistant:' turn")
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(MARKER, 0, shared)
    if cut < 0:
        return (None, None, None, False, "no_shared_prompt",
                "chosen and rejected share no turn ending in '\\n\\nAssistant:'")
    end = cut + len(MARKER)
    last_c, last_r = chosen.rfind(MARKER), rejected.rfind(MARKER)
    diverged = not (last_c == last_r == cut)
    return (chosen[:end], chosen[end:], rejected[end:], diverged, None, None)
