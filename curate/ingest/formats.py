"""Input formats: detect one, and turn each record into a transcript pair or a split pair.

- hh: `chosen`/`rejected` transcripts with `\\n\\nHuman:` / `\\n\\nAssistant:` turns (HH-RLHF).
- explicit: `prompt`, `chosen`, `rejected` strings.
- conversational: lists of `{role, content}` messages, with or without a `prompt` list (TRL's
  preference formats). They are rendered to HH transcripts, so every format shares one prompt
  representation and one splitter.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("hh", "explicit", "conversational")
ROLE_NAMES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}


@dataclass
class Reject(Exception):
    reason: str
    detail: str


def detect(obj: dict, fields: dict[str, str]) -> str | None:
    get = lambda k: obj.get(fields.get(k, k))  # noqa: E731
    if not (isinstance(obj, dict) and get("chosen") is not None and get("rejected") is not None):
        return None
    if any(isinstance(get(k), list) for k in ("prompt", "chosen", "rejected")):
        return "conversational"
    return "explicit" if get("prompt") is not None else "hh"


def _field(obj: dict, name: str, fields: dict[str, str], kind: type, required: bool = True):
    key = fields.get(name, name)
    if key not in obj or obj[key] is None:
        if not required:
            return None
        mapped = f" (--field {name}={key})" if key != name else ""
        raise Reject(f"missing_field:{name}", f"field {key!r}{mapped} is missing or null")
    value = obj[key]
    if not isinstance(value, kind):
        raise Reject(
            f"non_{kind.__name__}_field:{name}" if kind is str else f"invalid_field:{name}",
            f"field {key!r} is a {type(value).__name__}, expected a {'string' if kind is str else kind.__name__}",
        )
    return value


def render(messages: list, name: str) -> str:
    """Messages as an HH transcript: '\\n\\nHuman: ...\\n\\nAssistant: ...'."""
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLE_NAMES:
            raise Reject(
                f"invalid_messages:{name}",
                f"{name}[{i}] is not a {{role: user|assistant|system, content: string}} message",
            )
        parts.append(f"\n\n{ROLE_NAMES[m['role']]}: {m['content']}")
    return "".join(parts)


def extract(obj, fmt: str, fields: dict[str, str]) -> tuple[str, ...]:
    """('T', chosen_full, rejected_full) for transcripts, ('S', prompt, chosen, rejected) for split pairs."""
    if not isinstance(obj, dict):
        raise Reject("not_an_object", f"the row is a JSON {type(obj).__name__}, expected an object")
    if fmt == "hh":
        return ("T", _field(obj, "chosen", fields, str), _field(obj, "rejected", fields, str))
    if fmt == "explicit":
        return (
            "S",
            _field(obj, "prompt", fields, str),
            _field(obj, "chosen", fields, str),
            _field(obj, "rejected", fields, str),
        )
    if fmt == "conversational":
        prompt = _field(obj, "prompt", fields, list, required=False)
        chosen = _field(obj, "chosen", fields, list)
        rejected = _field(obj, "rejected", fields, list)
        head = render(prompt, "prompt") if prompt else ""
        for name, msgs in (("chosen", chosen), ("rejected", rejected)):
            if not msgs or not isinstance(msgs[-1], dict) or msgs[-1].get("role") != "assistant":
                raise Reject("no_assistant_turn", f"the last message of {name} is not from the assistant")
        return ("T", head + render(chosen, "chosen"), head + render(rejected, "rejected"))
    raise ValueError(fmt)
