"""What every judge shares: one request is one presentation of two answers (in one order), one Answer its verdict.

    judge.judge(requests, on_answer)    # calls on_answer(i, Answer) as each verdict arrives, in any order

A judge's `judge_id` names it in the `judgments` table (kind:model[@host]#<hash of its identity>), and
`identity` is recorded with every comparison. Verdicts are the label the judge chose for what it was shown: "A" (the first answer), "B"
(the second), "tie" (a judge that scores both the same) or "invalid" (an answer that is neither A nor B, after
one retry). Which policy was shown first is the caller's business (curate.judge.winrate).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

VERDICTS = ("A", "B", "tie", "invalid")

# "A", "B.", "(A)", "Output: B", "Answer: A", "**A**": the first word must be the label; "A or B" is invalid
_LABEL = re.compile(r"^\W*(?:(?:output|answer|final answer)\s*[:\-]?\s*)?\W*([AB])(?![\w])(?!\s+or\s+[AB]\b)",
                    re.IGNORECASE)


def identity_hash(identity: dict) -> str:
    """8 hex digits of a judge's identity: settings that change its verdicts (dtype, max_length, endpoint,
    max_tokens) give another judge_id, so a stored verdict is only reused by the same judge."""
    import hashlib
    import json

    return hashlib.md5(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]


def parse_verdict(text: str | None) -> str:
    """The label a judge's free-text answer names: "A", "B" or "invalid" (anything else)."""
    if not text:
        return "invalid"
    m = _LABEL.match(text.strip())
    if not m:
        return "invalid"
    letter = m.group(1)
    if letter.islower() and len(text.strip()) > 1:  # "a good answer..." is prose, not the label a
        return "invalid"
    return letter.upper()


@dataclass(frozen=True)
class Request:
    """One presentation: the rendered judge prompt, and its parts for judges that score answers directly."""

    text: str  # the template filled with question, answer_a, answer_b
    question: str  # the prompt as the policies saw it (an HH transcript ending in "Assistant:")
    answer_a: str
    answer_b: str


@dataclass(frozen=True)
class Answer:
    raw: str  # what the judge returned: its text, or its probabilities/scores as JSON
    verdict: str  # one of VERDICTS
    attempts: int = 1


class Judge(Protocol):
    judge_id: str
    identity: dict

    def judge(self, requests: list[Request], on_answer: Callable[[int, Answer], None]) -> None:
        """Judge every request, calling on_answer(index, answer) as each is done (so a caller can store verdicts
        as they come: an interrupted or failing judge keeps the ones it made). Raises CurateError on errors a
        retry cannot fix (unreachable endpoint, wrong model, bad key)."""
        ...
