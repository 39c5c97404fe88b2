"""Stable content hashes: pair ids, text hashes and deterministic role assignment."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import polars as pl

SEP = "\x1f"
# Unicode White_Space, the set polars' strip_chars() uses; Python's str.strip() would also strip
# \x1c-\x1f, so both sides name the set explicitly to agree on every input.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


def text_hash(text: str) -> str:
    """Embedding cache key: MD5 hex of the exact UTF-8 text, the same as DuckDB's md5(text) in SQL."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def stripped(col: "pl.Expr") -> "pl.Expr":
    return col.str.strip_chars(WHITESPACE)


def pair_id_from_parts(prompt: str, chosen: str, rejected: str) -> str:
    """pair_id: hash of the three texts, each stripped of surrounding whitespace, joined, in Unicode NFC."""
    import unicodedata

    key = SEP.join(s.strip(WHITESPACE) for s in (prompt, chosen, rejected))
    return _blake(unicodedata.normalize("NFC", key).encode("utf-8"))


def pair_ids(df: "pl.DataFrame") -> list[str]:
    """pair_id for each row of a frame with prompt, chosen, rejected (same as pair_id_from_parts)."""
    import unicodedata

    import polars as pl

    keys = df.select(
        pl.concat_str([stripped(pl.col(c)) for c in ("prompt", "chosen", "rejected")], separator=SEP).cast(pl.Binary)
    ).to_series()
    blake, is_nfc, nfc = hashlib.blake2b, unicodedata.is_normalized, unicodedata.normalize
    out = []
    for k in keys:
        if not k.isascii():  # NFC only where it can matter; ASCII is always NFC
            s = k.decode("utf-8")
            if not is_nfc("NFC", s):
                k = nfc("NFC", s).encode("utf-8")
        out.append(blake(k, digest_size=16).hexdigest())
    return out


def unit_interval(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by key and seed."""
    digest = hashlib.blake2b(f"{seed}{SEP}{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_roles(ids: Iterable[str], sft_fraction: float, seed: int) -> list[str]:
    """'sft' for a stable sft_fraction of pairs, 'pref' for the rest (the paper halves HH-RLHF)."""
    if sft_fraction <= 0:
        return ["pref" for _ in ids]
    return ["sft" if unit_interval(i, seed) < sft_fraction else "pref" for i in ids]
