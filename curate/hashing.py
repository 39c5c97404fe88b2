"""Stable content hashes: pair ids, text hashes and deterministic role assignment."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import polars as pl

SEP = "\x1f"
# Unicode White_Space, the set polars' strip_chars() uses; Python's str.strip() would also strip
# \x1c-\x1f, so both sides name the set explicitly to agree on every input.
WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
              + "\u2028\u2029\u202f\u205f\u3000")


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


# The non-ASCII characters of most English text (dashes, curly quotes, bullet, ellipsis): each three bytes in UTF-8,
# not a combining mark, left as it is by NFC and composing with nothing before it (tests/test_hashing.py checks), so
# a key of ASCII and these alone is in NFC already. pair_id_keys finds such keys by counting; only the others go
# through unicodedata.
COMMON_IN_NFC = "\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u2026"


def pair_ids(df: "pl.DataFrame") -> list[str]:
    """pair_id for each row of a frame with prompt, chosen, rejected (same as pair_id_from_parts)."""
    return hash_keys(*pair_id_keys(df))


def pair_id_keys(df: "pl.DataFrame") -> tuple["pl.Series", list[int]]:
    """What pair_ids hashes, made in polars (no Python object per row): each row's stripped texts joined by SEP, as
    bytes, and the rows that may not be in NFC."""
    import polars as pl

    key = pl.col("key")
    # UTF-8 bytes beyond one per character: 0 for ASCII, 2 per COMMON_IN_NFC character, so equality means no other
    # character is there (a regex over every character's class costs three times as much)
    extra = key.str.len_bytes() - key.str.len_chars()
    out = df.select(key=pl.concat_str([stripped(pl.col(c)) for c in ("prompt", "chosen", "rejected")], separator=SEP))
    check = out.select(extra != 2 * key.str.count_matches(f"[{COMMON_IN_NFC}]")).to_series()
    return out["key"].cast(pl.Binary), check.arg_true().to_list()


def hash_keys(keys: "pl.Series", check: list[int]) -> list[str]:
    """The pair_ids of pair_id_keys(): each key's BLAKE2b-128, the rows in `check` brought to NFC first."""
    import unicodedata

    keys = keys.to_list()
    blake = hashlib.blake2b
    out = [blake(k, digest_size=16).hexdigest() for k in keys]
    for i in check:
        s = keys[i].decode("utf-8")
        if not unicodedata.is_normalized("NFC", s):
            out[i] = _blake(unicodedata.normalize("NFC", s).encode("utf-8"))
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
