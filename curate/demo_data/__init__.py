"""The demo preference data set shipped with curate: `hh-demo/train.jsonl.gz` (320 pairs) and
`hh-demo/test.jsonl.gz` (64 pairs) in the Anthropic HH-RLHF format, written by the curate project (MIT).

Everyday questions answered in six distinct styles, one of them the voice of the default policy
(SmolLM2-135M-Instruct), so the FRFT filters have a real signal to find. `python -m curate.demo_data.build`
regenerates the files byte for byte; README.md in this folder describes the styles and the measured signal.

    from curate.demo_data import demo_sources
    curate ingest <train> <test>   # demo_sources() -> [train, test]
"""

from __future__ import annotations

from pathlib import Path


def demo_dir() -> Path:
    """The folder that holds `hh-demo/` (so `curate ingest` derives subset `hh-demo`)."""
    return Path(__file__).resolve().parent


def demo_sources() -> list[Path]:
    """[train file, test file]."""
    return [demo_dir() / "hh-demo" / "train.jsonl.gz", demo_dir() / "hh-demo" / "test.jsonl.gz"]
