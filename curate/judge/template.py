"""Judge prompt templates: the FRFT paper's Appendix A prompt, shipped as published and corrected, or a user's file.

    t = load_template()                      # the default: frft-appendix-a-corrected
    t = load_template("frft-appendix-a")     # the paper's text as published
    t = load_template("my_judge.txt")        # a file with {question}, {answer_a} and {answer_b}
    t.render(question, answer_a, answer_b)

The published prompt (FRFT paper, Appendix A "Prompt For LLM Eval"; ../shared/frft_judge_prompt.txt) contradicts
itself: its second example is answered "Output: B" while the explanation after the examples says A should be chosen
for it (A is the helpful list of places, B the odd one). `frft-appendix-a` keeps the text as published, for
reproducing the paper; `frft-appendix-a-corrected`, the default, answers example 2 with A, so the judge is not shown
a demonstration that disagrees with its own explanation. Nothing else differs (a test checks that).

Placeholders are replaced literally (not str.format), so braces elsewhere in a template are kept as they are.
`prefix` is the text before the question, the same for every judgment: a local judge computes it once (its KV cache).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import CurateError

PLACEHOLDERS = ("{question}", "{answer_a}", "{answer_b}")
BUILTIN = ("frft-appendix-a-corrected", "frft-appendix-a")
DEFAULT = BUILTIN[0]


def templates_dir() -> Path:
    return Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Template:
    name: str  # a built-in name, or the file's path
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def prefix(self) -> str:
        """Everything up to the line holding {question}: shared by every rendered prompt."""
        cut = self.text.index("{question}")
        return self.text[:self.text.rfind("\n", 0, cut) + 1]

    def render(self, question: str, answer_a: str, answer_b: str) -> str:
        # one pass, so an answer that contains "{answer_b}" is not itself replaced
        out, rest = [], self.text
        while True:
            hits = [(rest.find(p), p) for p in PLACEHOLDERS if p in rest]
            if not hits:
                return "".join(out) + rest
            at, p = min(hits)
            out.append(rest[:at] + {"{question}": question, "{answer_a}": answer_a, "{answer_b}": answer_b}[p])
            rest = rest[at + len(p):]


def load_template(spec: str | None = None) -> Template:
    """A built-in template by name, or a UTF-8 file holding each placeholder exactly once."""
    spec = spec or DEFAULT
    if spec in BUILTIN:
        return Template(spec, (templates_dir() / f"{spec}.txt").read_text(encoding="utf-8"))
    path = Path(spec)
    if not path.is_file():
        raise CurateError(f"--template {spec!r} is neither a built-in template ({', '.join(BUILTIN)}) nor a file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CurateError(f"--template {path}: not UTF-8 text ({e}).") from None
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise CurateError(f"--template {path} lacks the placeholder(s) {', '.join(missing)}: a judge template holds "
                          f"{', '.join(PLACEHOLDERS)} once each, where the question and the two answers go.")
    twice = [p for p in PLACEHOLDERS if text.count(p) > 1]
    if twice:
        raise CurateError(f"--template {path} holds {', '.join(twice)} more than once; each placeholder goes in once.")
    if text.index("{question}") > min(text.index("{answer_a}"), text.index("{answer_b}")):
        raise CurateError(f"--template {path}: {{question}} must come before the answers.")
    return Template(str(path), text)


def question_text(prompt: str) -> str:
    """An HH transcript as the template's question: without the leading "Human:" (the template writes it) and the
    open final "Assistant:" turn; earlier turns stay, so a multi-turn dialogue is judged in context."""
    text = prompt.strip()
    if text.startswith("Human:"):
        text = text[len("Human:"):].lstrip()
    if text.endswith("Assistant:"):
        text = text[:-len("Assistant:")].rstrip()
    return text
