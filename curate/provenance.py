"""What every output records about how it was made."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import __version__

PACKAGES = ("polars", "duckdb", "pyarrow", "orjson", "datasets", "sentence-transformers", "transformers",
            "torch", "faiss-cpu", "trl")


def versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {"curate": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
