"""The sides of the filter benchmark, each run in its own process by _measure.py."""

from __future__ import annotations


def curate_filter(workspace: str, strategy: str, iteration: str) -> int:
    """`curate filter --strategy S --eps 0.2 --iteration I -q`, as the user runs it."""
    from curate.cli import main
    from curate.workspace import Workspace

    try:
        main(["filter", "-w", workspace, "-s", strategy, "--eps", "0.2", "-i", iteration, "-q"], standalone_mode=False)
    except SystemExit:
        pass
    con = Workspace(workspace).connect()
    try:
        return con.execute("select count(*) from subset_pairs join subsets using (subset_id) where name = $n",
                           {"n": f"frft-{strategy}-it{iteration}"}).fetchall()[0][0]
    finally:
        con.close()


def _top(frame, col, n):
    return frame.sort_values([col, "pair_id"], ascending=[False, True]).head(n)


def _split_even(df, floor, n):
    import pandas as pd

    pos = df[df.pos_sim > floor].sort_values(["pos_sim", "pair_id"], ascending=[False, True]).head(n // 2)
    neg = df[df.neg_sim > floor].sort_values(["neg_sim", "pair_id"], ascending=[False, True]).head(n // 2)
    return pd.concat([pos.assign(picked_by="pos"), neg.assign(picked_by="neg")])


# The baseline of each registered strategy, as a user would write it in pandas (a strategy without one is
# reported as not benchmarked, never silently compared against another's)
PANDAS = {
    "overall": lambda df, floor, n: _top(df[(df.pos_sim > floor) & (df.neg_sim > floor)]
                                         .assign(score=lambda d: d.pos_sim + d.neg_sim), "score", n),
    "frft": lambda df, floor, n: _top(df[(df.pos_sim > floor) | (df.neg_sim > floor)]
                                      .assign(score=lambda d: d[["pos_sim", "neg_sim"]].max(axis=1)), "score", n),
    "split-even": _split_even,
    "negative": lambda df, floor, n: _top(df[df.neg_sim > floor], "neg_sim", n),
    "positive": lambda df, floor, n: _top(df[df.pos_sim > floor], "pos_sim", n),
}


def pandas_filter(workspace: str, strategy: str, iteration: str, out: str) -> int:
    """The same selection as a user would write it in pandas: read, mask, sort, head, save."""
    import json

    import pandas as pd

    state = json.load(open(f"{workspace}/state.json"))
    df = pd.read_parquet([f"{workspace}/tables/{f}" for f in state["tables"]["similarities"]])
    df = df[df["iteration"] == int(iteration)]
    sel = PANDAS[strategy](df, 1 - 0.2, 2000)
    sel.to_parquet(out)
    return len(sel)


def curate_intersect(workspace: str) -> int:
    from curate.cli import main

    try:
        main(["report", "intersect", "-w", workspace, "-f", "csv", "-o", f"{workspace}/intersect.csv"],
             standalone_mode=False)
    except SystemExit:
        pass
    return sum(1 for _ in open(f"{workspace}/intersect.csv")) - 1


def pandas_intersect(workspace: str) -> int:
    """Share of iteration-1 pairs picked again in iteration 2, per strategy, in pandas."""
    import json

    import pandas as pd

    state = json.load(open(f"{workspace}/state.json"))
    read = lambda t: pd.read_parquet([f"{workspace}/tables/{f}" for f in state["tables"][t]])  # noqa: E731
    subsets, sp, pairs = read("subsets"), read("subset_pairs"), read("pairs")[["pair_id", "prompt"]]
    sp = sp.merge(subsets[["subset_id", "strategy", "iteration"]], on="subset_id").merge(pairs, on="pair_id")
    rows = []
    for strategy, g in sp.groupby("strategy"):
        a = g[g.iteration == 1]
        b = g[g.iteration == 2]
        pa, pb = set(a.pair_id), set(b.pair_id)
        qa, qb = set(a.prompt), set(b.prompt)
        rows.append({"strategy": strategy, "share_pairs": len(pa & pb) / max(len(pa), 1),
                     "share_prompts": len(qa & qb) / max(len(qa), 1),
                     "jaccard_pairs": len(pa & pb) / max(len(pa | pb), 1)})
    return len(pd.DataFrame(rows))
