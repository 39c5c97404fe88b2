"""What every output records about how it was made: the versions of curate, Python and the packages it ran on."""

from __future__ import annotations

import platform
import sys

from . import __version__

PACKAGES = ("polars", "duckdb", "pyarrow", "orjson", "datasets", "sentence-transformers", "transformers",
            "torch", "faiss-cpu", "trl")
TRAIN_PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "tokenizers", "duckdb", "pyarrow")


def versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """{package: version} for curate, Python, the platform and `names` (those installed)."""
    from importlib import metadata  # here, not at import: 40 ms that commands which record nothing never pay

    out = {"curate": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
