"""The held-out prompts two policies are compared on: the workspace's eval split, or a file / hf:ID of prompts.

    eval_prompts(ws, split="test", limit=200, seed=0)               # distinct prompts of the test pairs (any role)
    eval_prompts(ws, source="prompts.jsonl", field="prompt")       # a user's file: jsonl, json, parquet or csv
    eval_prompts(ws, source="hf:HuggingFaceH4/helpful-instructions", field="instruction")

A prompt from a file that is not an HH transcript already ("\\n\\nHuman: ...\\n\\nAssistant:") is wrapped as a
single human turn, so policies see what they were trained on. Its key is `prompt-` + the md5 of that transcript:
the generations of an eval branch are keyed by it, as other branches are keyed by pair_id.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import CurateError
from ..generate import Prompt, as_transcript, select_prompts
from ..workspace import Workspace

READERS = {".jsonl": "ndjson", ".ndjson": "ndjson", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def prompt_key(transcript: str) -> str:
    return "prompt-" + hashlib.md5(transcript.encode("utf-8")).hexdigest()


def eval_prompts(ws: Workspace, source: str | None = None, field: str = "prompt", split: str | None = "test",
                 limit: int | None = None, seed: int = 0) -> list[Prompt]:
    """The prompts to compare on, a deterministic sample of `limit` by seed (the same for every policy)."""
    if source is None:
        prompts = select_prompts(ws, None, limit, None, seed, split, role=None)
        if not prompts:
            raise CurateError(f"No prompts with split {split!r} in {ws.root}: ingest held-out pairs, pick another "
                              "--split, or give --prompts FILE.")
        return prompts
    texts = _read_prompts(source, field)
    seen: dict[str, Prompt] = {}
    for text in texts:
        transcript = as_transcript(text)
        key = prompt_key(transcript)
        seen.setdefault(key, Prompt(key, transcript, [key]))
    prompts = sorted(seen.values(), key=lambda p: hashlib.sha256(f"{seed}:{p.key}".encode()).hexdigest())
    return prompts[:limit] if limit else prompts


def _read_prompts(source: str, field: str) -> list[str]:
    if source.startswith("hf:"):
        columns, rows = _hub_rows(source[3:], field)
    else:
        path = Path(source)
        if not path.is_file():
            raise CurateError(f"--prompts {source}: no such file (give a .jsonl, .json, .parquet or .csv file with a "
                              f"{field!r} column, or hf:ID).")
        kind = READERS.get(path.suffix.lower())
        if kind is None:
            raise CurateError(f"--prompts {path}: unknown format {path.suffix!r}; use one of {', '.join(READERS)}.")
        import polars as pl

        try:
            df = getattr(pl, f"read_{kind}")(path)
        except Exception as e:  # polars raises its own errors for bad JSON, CSV and Parquet
            raise CurateError(f"--prompts {path}: could not read it as {kind}: {' '.join(str(e).split())[:300]}") \
                from None
        columns, rows = df.columns, df.get_column(field).to_list() if field in df.columns else None
    if rows is None:
        raise CurateError(f"--prompts {source} has no {field!r} column (it has {', '.join(columns) or 'none'}): "
                          "name the prompt column with --prompt-field.")
    bad = next((i for i, t in enumerate(rows) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise CurateError(f"--prompts {source}, row {bad + 1}: field {field!r} is {rows[bad]!r}, not a non-empty "
                          "string. Remove the row or fill it in.")
    return rows


def _hub_rows(dataset_id: str, field: str) -> tuple[list[str], list | None]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise CurateError("--prompts hf:ID needs the `datasets` package: pip install 'curate[hub]'.") from None
    try:
        ds = load_dataset(dataset_id, split="test")
    except Exception as e:  # offline, unknown id, no test split
        raise CurateError(f"--prompts hf:{dataset_id}: could not load its test split ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:300]}). Offline, save it to a file and pass the file.") from None
    return ds.column_names, (ds[field] if field in ds.column_names else None)
