"""Synthesise large HH-RLHF-format files from the real shared rows.

Rows are resampled from the real file and perturbed (a numbered tag and a few
word swaps in every turn) so that every synthetic text is distinct, which keeps
hashing, deduplication and embedding caches honest at scale.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base"
REAL_PAIRS = SHARED / "test.jsonl.gz"
REAL_GENERATIONS = SHARED / "test.generations.smollm2-135m.jsonl"
HH_TRAIN_SIZE = 160_800


def load_real(path: Path = REAL_PAIRS) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def explicit_rows(rows: list[dict]):
    """The HH rows as explicit {prompt, chosen, rejected} (what the trainers read), skipping rows whose transcripts
    diverge before the last turn or that have an empty response."""
    marker = "\n\nAssistant:"
    for row in rows:
        c, r = row["chosen"], row["rejected"]
        i, j = c.rfind(marker) + len(marker), r.rfind(marker) + len(marker)
        if c[:i] != r[:j] or not c[i:].strip() or not r[j:].strip():
            continue
        yield {"prompt": c[:i], "chosen": c[i:], "rejected": r[j:]}


def _perturb(text: str, rng: random.Random, tag: str) -> str:
    words = text.split(" ")
    if len(words) > 3:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words) + f" [{tag}]"


def synth_hh_rows(n: int, seed: int = 0, base: list[dict] | None = None) -> list[dict]:
    """n HH-format rows: the real prompt with a distinct tag, each response perturbed."""
    base = base if base is not None else load_real()
    rng = random.Random(seed)
    marker = "\n\nAssistant:"
    out = []
    for k in range(n):
        row = base[rng.randrange(len(base))]
        chosen, rejected = row["chosen"], row["rejected"]
        ic, ir = chosen.rfind(marker), rejected.rfind(marker)
        prompt = chosen[: ic + len(marker)]
        if ic < 0 or ir < 0 or rejected[: ir + len(marker)] != prompt:
            # keep the real edge cases as they are, only tagged, so parsing still sees them
            out.append({"chosen": chosen + f" [s{k}c]", "rejected": rejected + f" [s{k}r]"})
            continue
        # the tag goes in the first human turn, so the shared prompt stays shared
        new_prompt = prompt.replace("\n\nHuman: ", f"\n\nHuman: [s{k}] ", 1)
        out.append(
            {
                "chosen": new_prompt + _perturb(chosen[ic + len(marker):], rng, f"c{k}"),
                "rejected": new_prompt + _perturb(rejected[ir + len(marker):], rng, f"r{k}"),
            }
        )
    return out


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    tmp = path.with_name(path.name + ".tmp")
    with opener(tmp, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
