"""Files shipped with the package: the SQL filters live in `sql/` in the checkout and in
`curate/sql/` inside a wheel (hatch force-include)."""

from __future__ import annotations

from pathlib import Path


def sql_dir() -> Path:
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"
