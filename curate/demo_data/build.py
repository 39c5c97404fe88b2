"""Build the demo preference data set: `python -m curate.demo_data.build` rewrites
`hh-demo/train.jsonl.gz` and `hh-demo/test.jsonl.gz` next to this file.

Everything here is written by the curate project (MIT). The generator is deterministic and uses the
standard library only: a seeded `random.Random`, sorted inputs, `gzip.compress(..., mtime=0)`, so every run
writes the same bytes.

How a pair is made:

* a prompt: a topic (cooking, travel, ...), a subject of that topic ("banana bread") and a question
  template ("What's the secret to really good {s}?"); about a fifth of the prompts get an earlier
  Human/Assistant exchange (the user adds context or asks for more);
* two responses in two *styles* (one small function per style below). The chosen one is always the
  style's helpful version (concrete tips from the topic's list); the rejected one is a style's unhelpful
  version (vague, content-free, or a refusal of a harmless request). The preference is about content, and
  the (chosen style, rejected style) combinations are balanced, so the policy's own style
  (`assistant`) is sometimes chosen, sometimes rejected, sometimes both, sometimes neither.

`python -m curate.demo_data.build --styles` prints one JSON line per pair with its split, line and
styles (the labels are not in the data files, which hold only `chosen` and `rejected`).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from .topics import FOLLOW_UPS, TOPICS, Topic

SEED = 20240611
N_TRAIN, N_TEST = 320, 64
MULTI_TURN_SHARE = 0.2
OUT_DIR = Path(__file__).resolve().parent / "hh-demo"

def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _tips(topic: Topic, rng: random.Random, k: int) -> list[tuple[str, str, str]]:
    return rng.sample(topic.tips, k)


def assistant(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """Friendly, upbeat and structured, restating the question: how SmolLM2-135M-Instruct answers."""
    if helpful:
        opener = rng.choice((
            f"Sure! Here are a few tips for {s}:",
            f"Great question! {_cap(s)} can be easier than you think. Here are some tips to help you with {s}:",
            f"Of course! Here's a simple approach to {s}:",
            f"Certainly! When it comes to {s}, here are some steps you can follow:",
            f"{_cap(s)} can be a rewarding experience! Here are some tips to get you started with {s}:",
        ))
        tips = _tips(topic, rng, rng.choice((3, 4)))
        items = [f"{i}. **{head}**: {full}" for i, (head, full, _) in enumerate(tips, 1)]
        closer = rng.choice((
            f"I hope these tips help with {s}! Let me know if you have any other questions.",
            f"By following these steps, you'll be well on your way with {s}. Good luck!",
            f"Remember, {s} takes a little patience, and practice makes perfect. Good luck!",
            f"Feel free to ask if you'd like more details on any of these steps for {s}.",
        ))
        return f"{opener}\n\n" + "\n".join(items) + f"\n\n{closer}"
    opener = rng.choice(("Great question!", "That's a great question!", "Sure, I'd be happy to help!"))
    middle = rng.choice((
        (f"{_cap(s)} is something many people wonder about. There are many different approaches to {s}, and the "
        "best one really depends on your personal preferences and goals."),
        (f"When it comes to {s}, everyone's situation is unique, so it's important to find the approach to {s} that "
        "works best for you."),
        (f"{_cap(s)} can be a rewarding experience. With {s}, it's important to stay positive, be patient with "
        "yourself and keep an open mind."),
    ))
    closer = rng.choice((
        "I hope this helps! Let me know if you have any other questions.",
        "Good luck, and remember to have fun!",
        "Feel free to ask if you have any other questions.",
    ))
    return f"{opener} {middle} {closer}"


# The other styles answer without restating the question, as people do.


def terse(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """One short line, no greeting, no formatting."""
    if helpful:
        (_, _, a), (_, _, b) = _tips(topic, rng, 2)
        return f"{_cap(a)}, and {b}."
    return rng.choice(("Depends.", "Just wing it.", "Hard to say.", "Look it up.", "Trial and error.",
                       "Practice, I guess.", "Nothing special."))


def flowery(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """Old-fashioned, ornate prose addressed to 'dear friend'."""
    opener = rng.choice((
        "Ah, a most worthy question! Few pursuits so richly reward the patient soul.",
        "Pray, dear friend, lend me thine ear, for this is a venerable undertaking indeed.",
        "Verily, this matter hath vexed many a noble heart before thine own.",
    ))
    if helpful:
        (_, _, a), (_, _, b), (_, _, c) = _tips(topic, rng, 3)
        return (f"{opener} Permit me to offer humble counsel: first, {a}; thereafter, {b}; and above all, {c}. "
                "Attend to these precepts, and fortune shall surely smile upon thy endeavours.")
    return (f"{opener} How the spirit stirs at the very thought of it! Many a traveller hath wandered these winding "
            "paths, and many more shall follow, each finding therein whatsoever the heavens intend. Go forth, and "
            "let thy heart be thy guide.")


def slang(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """Casual internet chat, all lowercase, abbreviations and an emoji."""
    if helpful:
        (_, _, a), (_, _, b), (_, _, c) = _tips(topic, rng, 3)
        text = rng.choice((
            f"ok so its honestly not that deep lol. {a} and {b}, thats like 90% of it. oh and {c} fr. u got this 🙌",
            f"ngl this confused me at first too. tbh just {a}, then {b}. also {c}, trust me lol 👍",
            f"lowkey the trick is to {a}. and {b}. and {c}. ez 😎",
        ))
    else:
        text = rng.choice((
            "lol idk man just vibe with it, it'll probably work out. gl tho",
            "bruh dont overthink it 💀 its whatever",
            "tbh no idea, not really my thing lol. good luck i guess",
        ))
    return text.lower()


def encyclopedia(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """A dry, impersonal reference-work entry, with citation marks."""
    if helpful:
        (_, _, a), (_, _, b), (_, _, c) = _tips(topic, rng, 3)
        return (f"{_cap(topic.area)}: general guidance. Commonly cited practices are: "
                f"(i) to {a}; (ii) to {b}; (iii) to {c}.[1] "
                "Outcomes vary with conditions, materials and prior experience.[2]")
    return rng.choice((
        ("The practice has been described in the literature since at least the nineteenth century.[1] Terminology "
        "varies by region, and no single definition is universally accepted.[citation needed]"),
        ("The term appears in several reference works.[1] Historical usage differs between countries, and its "
        "classification remains a matter of some debate.[2]"),
    ))


def refusal(s: str, topic: Topic, rng: random.Random, helpful: bool) -> str:
    """A polite refusal of a perfectly harmless request (only ever the rejected side)."""
    assert not helpful
    return rng.choice((
        "I'm sorry, but I can't help with that.",
        "I'm sorry, but I can't help with that request.",
        "I apologize, but I'm not able to assist with that.",
        "Sorry, I can't help with that.",
    ))


STYLES = {f.__name__: f for f in (assistant, terse, flowery, slang, encyclopedia, refusal)}
POLICY_STYLE = "assistant"
CHOSEN_STYLES = ("assistant", "terse", "flowery", "slang", "encyclopedia")
REJECTED_STYLES = ("assistant", "terse", "flowery", "slang", "encyclopedia", "refusal")

# --------------------------------------------------------------------------------------------------------
# Pairs.


@dataclass(frozen=True)
class Pair:
    split: str
    line: int  # 1-based line in the split's file
    topic: str
    subject: str
    multi_turn: bool
    chosen_style: str
    rejected_style: str
    chosen: str  # full HH transcripts
    rejected: str


def _in_reply(subject: str) -> str:
    """The subject as the assistant says it: 'my final exams' -> 'your final exams'."""
    return subject.replace("my ", "your ").replace(" I don't", " you don't")


def _prompt(question: str, rng: random.Random, multi_turn: bool) -> str:
    if not multi_turn:
        return f"\n\nHuman: {question}\n\nAssistant:"
    first, follow = rng.choice(FOLLOW_UPS)
    return f"\n\nHuman: {question}\n\nAssistant: {first}\n\nHuman: {follow}\n\nAssistant:"


def build() -> list[Pair]:
    """Every pair of both splits, in file order."""
    rng = random.Random(SEED)
    questions = [
        (topic, s, q.format(s=s))
        for topic in TOPICS
        for s in topic.subjects
        for q in topic.questions
    ]
    rng.shuffle(questions)
    n = N_TRAIN + N_TEST
    assert len({q for _, _, q in questions}) == len(questions) >= n
    combos = list(itertools.product(CHOSEN_STYLES, REJECTED_STYLES))
    schedule = (combos * (n // len(combos) + 1))[:n]
    rng.shuffle(schedule)
    pairs = []
    for i, ((topic, s, question), (c_style, r_style)) in enumerate(zip(questions[:n], schedule)):
        split, line = ("train", i + 1) if i < N_TRAIN else ("test", i - N_TRAIN + 1)
        # One generator per pair, prompt first: editing a style changes no prompt and no other pair.
        pair_rng = random.Random(f"{SEED}:{question}")
        multi = pair_rng.random() < MULTI_TURN_SHARE
        prompt = _prompt(question, pair_rng, multi)
        chosen = STYLES[c_style](_in_reply(s), topic, pair_rng, True)
        rejected = STYLES[r_style](_in_reply(s), topic, pair_rng, False)
        pairs.append(
            Pair(split, line, topic.name, s, multi, c_style, r_style, f"{prompt} {chosen}", f"{prompt} {rejected}")
        )
    return pairs


def write(pairs: list[Pair], out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in ("train", "test"):
        lines = [
            json.dumps({"chosen": p.chosen, "rejected": p.rejected}, ensure_ascii=False) + "\n"
            for p in pairs
            if p.split == split
        ]
        path = out_dir / f"{split}.jsonl.gz"
        tmp = path.with_name(path.name + ".tmp")  # written whole, then renamed into place
        tmp.write_bytes(gzip.compress("".join(lines).encode("utf-8"), compresslevel=9, mtime=0))
        tmp.replace(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m curate.demo_data.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--styles", action="store_true", help="print each pair's split, line and styles as JSON lines")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="folder for train.jsonl.gz and test.jsonl.gz")
    args = ap.parse_args(argv)
    pairs = build()
    if args.styles:
        for p in pairs:
            keys = ("split", "line", "topic", "subject", "multi_turn", "chosen_style", "rejected_style")
            row = {k: getattr(p, k) for k in keys}
            sys.stdout.write(json.dumps(row) + "\n")
        return 0
    for path in write(pairs, args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
