"""Content fingerprints of model files: SHA-256 per file, computed once per (path, size, mtime).

One cache serves every model identity (policies, reward models, embedders): `cache_dir()/fingerprints.json`,
keyed `<resolved path>:<size>:<mtime_ns>`. A file in a huggingface_hub cache links to a blob named by its
SHA-256 (LFS files): that name is the hash, and the file is not read at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .errors import CurateError


def cache_dir() -> Path:
    """curate's cache (env CURATE_CACHE, else $XDG_CACHE_HOME/curate): fingerprints, ONNX exports, policies."""
    root = os.environ.get("CURATE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "curate")
    return Path(root).expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of one file, read in 16 MiB blocks (not cached: inputs and outputs that change)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(files: list[Path]) -> list[str]:
    """SHA-256 of each file, cached by (path, size, mtime) in cache_dir()/fingerprints.json."""
    from .atomic import write_text

    cache_file = cache_dir() / "fingerprints.json"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        cache = {}
    out, changed = [], False
    for f in files:
        real = Path(f).resolve()
        if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
            out.append(real.name)
            continue
        st = real.stat()
        key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
        if key not in cache:
            cache[key], changed = sha256_file(real), True
        out.append(cache[key])
    if changed:
        write_text(cache_file, json.dumps(cache))
    return out


def combine(files: list[Path], digests: list[str]) -> str:
    """One digest for several files: SHA-256 over their names and digests, in order."""
    return hashlib.sha256("".join(f"{Path(f).name}\0{d}\n" for f, d in zip(files, digests, strict=True))
                          .encode()).hexdigest()


def weight_files(folder: Path) -> list[Path]:
    """A checkpoint's weight files: the shards an index names, model.safetensors, or PyTorch pickles."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            files = [folder / name for name in sorted(set(weight_map.values()))]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise CurateError(f"{folder}: weight files named in the index are missing: {', '.join(missing)}.")
            return files
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CurateError(f"{folder}: no model weights (model.safetensors, sharded *.safetensors with their index, "
                          f"or pytorch_model.bin).")
    return files


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the SHA-256 of every weight file (each shard in full).

    Every shard is hashed rather than the index plus shard sizes: two fine-tuned checkpoints of one model
    (FRFT's iterations) have the same index and the same sizes, and must not share an identity.
    """
    files = weight_files(folder)
    return combine(files, sha256_files(files))
