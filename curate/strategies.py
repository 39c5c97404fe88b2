"""The filter strategies: one registry entry and one SQL file each.

Everything that lists or explains strategies reads this registry: `curate filter --strategy` (its choices and
help), `--all-strategies`, `curate run`'s [run] strategies, the reports' order, `curate explain` and the
filter benchmark. Adding a strategy is a SELECT in `sql/` (header: strategy, keeps, params, paper, returns)
plus one entry below; `register()` adds one from elsewhere (a test does it with a file in a temporary folder).

The paper reference and what the filter keeps come from the SQL file's own header, so they are written once.
clean and flip (Secrets of RLHF II) read the `strength` table instead of `similarities`: they need no scored
iteration, and any strategy can take them on top with --clean F / --flip F (curate.filters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import CurateError
from .resources import sql_dir


@dataclass(frozen=True)
class Strategy:
    name: str
    sql: str  # a file in sql/, or an absolute path
    # what `curate explain` says a pair needs when it fails the filter's condition
    condition: str
    # FRFT paper section 5.3 part (1-4): `--all-strategies` and `curate run`'s default run these, in order
    part: int | None = None
    # picked_by groups with quotas of their own (split-even: pos ceil(size / 2), neg floor(size / 2))
    halves: bool = False
    # a baseline ignores what the policy writes (random, all): `curate run` trains a branch on it to compare the
    # FRFT branches against, and from iteration 2 on draws it from the pairs scored in iteration 1 without
    # sampling its own policy (the paper's vanilla PPO: an RM on random or all pairs, FRFT section 6)
    baseline: bool = False

    @property
    def path(self) -> Path:
        p = Path(self.sql)
        return p if p.is_absolute() else sql_dir() / p

    @property
    def header(self) -> dict[str, str]:
        return parse_header(self.path.read_text(encoding="utf-8"))

    @property
    def paper(self) -> str:
        return self.header.get("paper", "")

    @property
    def params(self) -> set[str]:
        """The parameters the header lists (a test checks them against those the SQL uses)."""
        return {p.strip() for p in self.header.get("params", "").split(",") if p.strip()}

    @property
    def reads_strength(self) -> bool:
        """Whether it picks from the `strength` table (clean, flip) rather than from an iteration's scores."""
        return "strength" in self.params

    @property
    def label(self) -> str:
        """A short reference for help texts: "Part 2" or "eq. 3"."""
        if self.part is not None:
            return f"Part {self.part}"
        m = re.search(r"eq\.\s*\d+", self.paper)
        return m.group(0) if m else self.paper

    def quota(self, size: int, picked_by: str | None) -> int:
        """How many rows of a picked_by group the filter keeps at most (the whole size without halves)."""
        if not self.halves:
            return size
        return (size + 1) // 2 if picked_by == "pos" else size // 2


REGISTRY: dict[str, Strategy] = {s.name: s for s in (
    Strategy("frft", "frft.sql", "needs either above the floor"),
    Strategy("overall", "overall.sql", "needs both above the floor", part=1),
    Strategy("split-even", "split_even.sql", "needs pos_sim (pos half) or neg_sim (neg half) above the floor",
             part=2, halves=True),
    Strategy("negative", "negative.sql", "needs neg_sim above the floor", part=3),
    Strategy("positive", "positive.sql", "needs pos_sim above the floor", part=4),
    Strategy("random", "random.sql", "is drawn only if its md5(seed:pair_id) is among the size smallest",
             baseline=True),
    Strategy("all", "all.sql", "needs only to be a scored pref pair", baseline=True),
    Strategy("clean", "clean.sql", "needs a strength percentile at or above --drop-below and a category that is "
             "not dropped"),
    Strategy("flip", "flip.sql", "needs only a strength row (flip keeps every measured pref pair)"),
)}


def register(strategy: Strategy) -> Strategy:
    """Add (or replace) a strategy; its SQL file must exist."""
    if not strategy.path.is_file():
        raise CurateError(f"Strategy {strategy.name!r}: its SQL file {strategy.path} does not exist.")
    REGISTRY[strategy.name] = strategy
    return strategy


def names() -> list[str]:
    """Every strategy name, in display order (the registry's order)."""
    return list(REGISTRY)


def paper_parts() -> list[str]:
    """The paper's Parts 1-4 in order: what `--all-strategies` and `curate run` run by default."""
    return [s.name for s in sorted((s for s in REGISTRY.values() if s.part is not None), key=lambda s: s.part)]


def branch_strategies() -> list[str]:
    """The strategies `curate run` can give a branch of its own: those that pick from an iteration's scores."""
    return [s.name for s in REGISTRY.values() if not s.reads_strength]


def baselines() -> list[str]:
    """The strategies that ignore the policy (random, all): what `curate run`'s [run] baseline may name."""
    return [s.name for s in REGISTRY.values() if s.baseline]


def get(name: str) -> Strategy:
    if name not in REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CurateError(f"Unknown strategy {name!r}{hint}. Known strategies: {', '.join(names())} "
                          "(or pass your own with --sql-file FILE).")
    return REGISTRY[name]


def order_key(name: str) -> tuple[int, str]:
    """Sort key: registered strategies in registry order, then the others by name."""
    order = names()
    return (order.index(name) if name in order else len(order), name)


def parse_header(text: str) -> dict[str, str]:
    """`-- key: value` lines at the top of a filter; indented `--   ...` lines continue the value."""
    header: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.startswith("--"):
            if line.strip():
                break
            continue
        m = re.match(r"--\s?(\w[\w-]*):\s*(.*)$", line)
        if m and not line.startswith("--   "):
            key = m.group(1).lower()
            header[key] = m.group(2).strip()
        elif key:
            header[key] = (header[key] + " " + line[2:].strip()).strip()
    return header
