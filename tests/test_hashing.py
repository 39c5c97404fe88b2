"""pair_id: the same pair gets the same id everywhere (DESIGN.md), whichever code path computed it."""

from __future__ import annotations

import polars as pl
import pytest

from curate.hashing import COMMON_IN_NFC, assign_roles, pair_id_from_parts, pair_ids, unit_interval

TRICKY = [
    ("plain", "yes", "no"),
    ("  padded\n", "\tyes ", "no\u00a0"),  # whitespace at the edges, a no-break space included
    ("caf\u00e9", "na\u00efve", "r\u00e9sum\u00e9"),  # composed (NFC)
    ("cafe\u0301", "nai\u0308ve", "re\u0301sume\u0301"),  # decomposed (NFD): same text
    ("\x1cunit\x1f", "sep\x1e", "x\u3000"),  # \x1c-\x1f are not whitespace here, \u3000 is
    ("emoji \U0001f600", "", ""),
]


def test_the_vectorised_ids_equal_the_reference():
    df = pl.DataFrame(TRICKY, schema=["prompt", "chosen", "rejected"], orient="row")
    assert pair_ids(df) == [pair_id_from_parts(*t) for t in TRICKY]


def test_ids_of_keys_with_and_without_other_non_ascii_equal_the_reference():
    """pair_ids hashes a key of ASCII and COMMON_IN_NFC as it is; with anything else it must still normalise."""
    rows = [("\u2019quoted\u201d \u2026", "\u2014", "\u2022"), ("\u2019e\u0301", "\u00e9\u2019", "\u212b"),
            ("\u2019\U0001f600", "\u30ab\u3099", "x"), ("\u2019", "\u00e9\u00e9", "\u2019\u2019")]
    df = pl.DataFrame(rows, schema=["prompt", "chosen", "rejected"], orient="row")
    assert pair_ids(df) == [pair_id_from_parts(*t) for t in rows]


def test_common_characters_cannot_make_a_string_non_nfc():
    """Each is three bytes in UTF-8 (pair_id_keys counts on it), not a combining mark, left as it is by NFC, and never
    the second half of a canonical composition."""
    import unicodedata

    seconds = set()
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<") and len(d.split()) == 2:
            seconds.add(int(d.split()[1], 16))
    for c in COMMON_IN_NFC:
        assert len(c.encode()) == 3 and unicodedata.combining(c) == 0, hex(ord(c))
        assert unicodedata.normalize("NFC", c) == c and ord(c) not in seconds, hex(ord(c))


def test_ids_ignore_edge_whitespace_and_unicode_normal_form():
    ids = [pair_id_from_parts(*t) for t in TRICKY]
    assert ids[2] == ids[3]
    assert pair_id_from_parts(" plain ", "yes\n", "\nno") == ids[0]
    assert pair_id_from_parts("\x1cunit\x1f", "sep\x1e", "x") == ids[4]
    assert pair_id_from_parts("unit", "sep", "x") != ids[4]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_ids_depend_on_which_text_is_which():
    assert pair_id_from_parts("p", "a", "b") != pair_id_from_parts("p", "b", "a")
    assert pair_id_from_parts("p a", "b", "c") != pair_id_from_parts("p", "a b", "c")


@pytest.mark.parametrize("fraction", [0.0, 0.25, 1.0])
def test_roles(fraction):
    ids = [pair_id_from_parts(f"q{i}", "a", "b") for i in range(200)]
    roles = assign_roles(ids, fraction, seed=1)
    assert roles == ["sft" if unit_interval(i, 1) < fraction else "pref" for i in ids]
    assert roles == assign_roles(ids, fraction, seed=1)
    assert [r for i, r in zip(ids, roles) if i in ids[:50]] == assign_roles(ids[:50], fraction, seed=1)
