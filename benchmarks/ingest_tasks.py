"""The two sides of the ingest benchmark, each run in its own process by _measure.py."""

from __future__ import annotations

MARKER = "\n\nAssistant:"


def naive(path: str, out: str) -> int:
    """What a user would write: json + pandas in one loop, then to_parquet."""
    import gzip
    import hashlib
    import json

    import pandas as pd

    rows = []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            r = json.loads(line)
            c, j = r["chosen"], r["rejected"]
            ic, ij = c.rfind(MARKER), j.rfind(MARKER)
            prompt = c[: ic + len(MARKER)]
            chosen, rejected = c[ic + len(MARKER):], j[ij + len(MARKER):]
            key = "\x1f".join(s.strip() for s in (prompt, chosen, rejected))
            rows.append(
                {
                    "pair_id": hashlib.blake2b(key.encode(), digest_size=16).hexdigest(),
                    "prompt": prompt,
                    "chosen": chosen,
                    "rejected": rejected,
                    "chosen_full": c,
                    "rejected_full": j,
                    "source_row": i,
                }
            )
    df = pd.DataFrame(rows).drop_duplicates("pair_id")
    df.to_parquet(out)
    return len(df)


def curate_cli(path: str, workspace: str) -> int:
    """`curate ingest PATH -w WORKSPACE -q`, as the user runs it."""
    from curate.cli import main
    from curate.workspace import Workspace

    try:
        main(["ingest", path, "-w", workspace, "-q"], standalone_mode=False)
    except SystemExit:
        pass
    return Workspace(workspace).count("pairs")
