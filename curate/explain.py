"""`curate explain`: why a pair is in or out of a subset, from the stored tables and the filter's SQL.

For a pair in the subset: its rank, score and which rule picked it. For a pair out of it, the filter
is run again with no size limit (same SQL, same bound parameters), which gives every candidate's rank:
a pair that is a candidate was cut by the size; one that is not fails the filter's condition, and the
similarities say which side of the floor each score is on.

A subset made with preference strength (clean, flip, --clean, --flip) also shows the pair's strength under the
identity it used, and says why it was dropped, left out of the candidates, or flipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import strategies
from .lookup import resolve_pair_id
from .strength_rows import shadow_without, weakest_table
from .subsets import subset_row
from .workspace import Workspace, query_frame

NO_LIMIT = 2**30  # "no size limit" that still leaves room for ($size + 1) // 2 in an INTEGER


def explain(ws: Workspace, pair_id: str, subset: str) -> dict:
    """Whether a pair is in a subset and why, as a dict (the pair's similarities, the picks or the reason it is
    out)."""
    ws.require()
    with ws.connect() as con:
        sub = subset_row(con, subset)
        pid = resolve_pair_id(con, pair_id)
        params = json.loads(sub["params"])
        branch, iteration, model_id = sub["branch"], sub["iteration"], params.get("model_id")
        floor = params.get("floor")
        out: dict = {"pair_id": pid, "subset": sub["name"], "strategy": sub["strategy"], "branch": branch,
                     "iteration": iteration, "eps": params.get("eps"), "floor": floor, "size": params.get("size"),
                     "aggregate": params.get("aggregate")}
        sims = con.execute(
            "select pos_sim, neg_sim, pos_sim_max, neg_sim_max, n_samples from similarities "
            "where branch = $b and iteration = $i and model_id = $m and pair_id = $p",
            {"b": branch, "i": iteration, "m": model_id, "p": pid}).fetchall()
        picks = con.execute("select rank, score, picked_by, reason, flipped from subset_pairs where subset_id = $s "
                            "and pair_id = $p order by rank", {"s": sub["subset_id"], "p": pid}).fetchall()
        builtin = _builtin(sub)
        strength = _strength_row(con, pid, params.get("strength"))
        if strength is not None:
            out.update(strength)
        p = q = None
        if sims:
            pos, neg, pos_max, neg_max, n = sims[0]
            p, q = (pos_max, neg_max) if params.get("aggregate") == "max" else (pos, neg)
            out.update(pos_sim=round(pos, 6), neg_sim=round(neg, 6), pos_sim_max=round(pos_max, 6),
                       neg_sim_max=round(neg_max, 6), n_samples=n)
        if picks:
            out["selected"] = True
            out["picks"] = [{"rank": r, "score": None if s is None else round(s, 6), "picked_by": b, "reason": why,
                             "flipped": bool(f)} for r, s, b, why, f in picks]
            rows = json.loads(sub["counts"]).get("rows")
            out["reason"] = "; ".join(
                f"picked by {b} at rank {r:,} of {rows:,}" + (f" with score {s:.4f}" if s is not None else "")
                + (f" ({why})" if why else "") for r, s, b, why, _ in picks)  # why: the filter's own reason column
            if any(f for *_, f in picks):
                out["reason"] += "; " + _why_flipped(strength, params)
            return out
        out["selected"] = False
        why_not = _strength_reason(con, pid, sub, params, strength, builtin)
        if why_not:
            out["reason"] = why_not
            return out
        if not sims and builtin:
            out["reason"] = _not_scored(con, pid, branch, iteration)
            return out
        manifest = ws.manifests_dir / f"filter-{sub['subset_id']}.json"
        if not manifest.exists():
            out["reason"] = "not in the subset (its manifest is gone, so the filter cannot be re-run to say why)"
            return out
        m = json.loads(manifest.read_text(encoding="utf-8"))
        current = sorted(p_.name for p_ in ws.files("similarities", key=f"{branch}-it{iteration}-{model_id}"))
        if current != m.get("similarities_files"):
            out["warning"] = "the iteration was rescored after this subset was made; the scores below are the new ones"
        bound = dict(m.get("bound", {}))
        if "size" in bound:
            bound["size"] = NO_LIMIT
        if "clean" in params:  # the candidates the filter saw: without the pairs --clean left out
            weakest_table(con, "strength_clean", params["strength"], params["clean"])
            shadow_without(con, "strength_clean")
        full = query_frame(con, m["sql"], bound)
    if not builtin and pid not in set(full["pair_id"].to_list()):
        # a user's filter: curate cannot know its condition, only that its query does not return the pair
        out["reason"] = (f"not in the result of its filter {Path(m.get('sql_file') or '?').name}: without a size "
                         f"limit the query returns {full.height:,} rows, and this pair is not among them")
        return out
    out["reason"] = _why_out(full, pid, sub["strategy"], params, p, q, m.get("header", {}))
    return out


def _strength_row(con, pid: str, identity: str | None) -> dict | None:
    """The pair's strength under the subset's identity, for the answer (None without an identity)."""
    if identity is None:
        return None
    row = con.execute("select mean, std, percentile, category from strength where identity = $i and pair_id = $p",
                      {"i": identity, "p": pid}).fetchall()
    out = {"strength_identity": identity}
    if row:
        mean, std, pct, cat = row[0]
        out.update(strength_mean=round(mean, 6), strength_std=round(std, 6), strength_percentile=round(pct, 6),
                   strength_category=cat)
    return out


def _percentile(strength: dict | None) -> str:
    return f"strength percentile {strength['strength_percentile']:.4f}"


def _why_flipped(strength: dict | None, params: dict) -> str:
    """Why a picked pair is flipped: its percentile is below flip's --bottom or the --flip fraction."""
    if strength is None or "strength_percentile" not in strength:
        return "flipped by the filter (its own flipped column)"
    pct = strength["strength_percentile"]
    for key, option in (("bottom", "--bottom"), ("flip", "--flip")):
        if key in params and pct < params[key]:
            return (f"flipped (chosen and rejected swapped): {_percentile(strength)} < {option} {params[key]:g} "
                    f"(mean {strength['strength_mean']:.4f})")
    return "flipped by the filter (its own flipped column)"


def _strength_reason(con, pid: str, sub: dict, params: dict, strength: dict | None, builtin: bool) -> str | None:
    """Why a pair is out of a subset because of its strength (dropped, cleaned out, never measured), or None."""
    if strength is None:
        return None
    identity = strength["strength_identity"]
    measured = "strength_percentile" in strength
    if measured and "clean" in params and strength["strength_percentile"] < params["clean"]:
        return (f"left out of the candidates before the filter picked: {_percentile(strength)} < --clean "
                f"{params['clean']:g} (strength identity {identity})")
    known = strategies.REGISTRY.get(sub["strategy"])
    if not (builtin and known.reads_strength):
        return None
    role = con.execute("select role from pairs where pair_id = $p", {"p": pid}).fetchall()[0][0]
    if role != "pref":
        return f"not a candidate: it is an {role} pair, and {sub['strategy']} chooses among pref pairs"
    if not measured:
        return (f"not measured under strength identity {identity}: {sub['strategy']} keeps only measured pairs (run "
                "`curate strength` again to measure it)")
    why = []
    if "drop_below" in params and strength["strength_percentile"] < params["drop_below"]:
        why.append(f"{_percentile(strength)} < --drop-below {params['drop_below']:g}")
    if strength["strength_category"] in params.get("drop_categories", []):
        why.append(f"its strength category is {strength['strength_category']} (mean "
                   f"{strength['strength_mean']:.4f}), which --drop-category drops")
    if why:
        return f"dropped by {sub['strategy']}: " + "; ".join(why)
    return (f"not in the subset, though its strength passes {sub['strategy']} now: the strength rows changed after "
            "the filter ran; run `curate filter` again")


def _builtin(sub: dict) -> bool:
    """Whether the subset was made by a registered strategy's own SQL (not a user's --sql-file)."""
    known = strategies.REGISTRY.get(sub["strategy"])
    if known is None or not known.path.is_file():
        return False
    return hashlib.sha256(known.path.read_text(encoding="utf-8").encode("utf-8")).hexdigest() == sub["sql_sha256"]


def _not_scored(con, pid: str, branch: str, iteration: int) -> str:
    role, flags = con.execute("select role, flags from pairs where pair_id = $p", {"p": pid}).fetchall()[0]
    if role != "pref":
        return f"not scored: it is an {role} pair, and filters choose among pref pairs"
    if "empty_response" in (flags or []):
        return "not scored: its chosen or rejected response is empty"
    n = con.execute("select count(*) from generations where pair_id = $p and branch = $b and iteration = $i",
                    {"p": pid, "b": branch, "i": iteration}).fetchall()[0][0]
    if not n:
        return f"not scored: it has no generation in branch {branch!r}, iteration {iteration}"
    return "not scored in this iteration with this embedding model (only empty generations, or run `curate score`)"


def _why_out(full, pid: str, strategy: str, params: dict, pos: float, neg: float, header: dict) -> str:
    import polars as pl

    floor, size = params.get("floor"), params.get("size")
    mine = full.filter(pl.col("pair_id") == pid)
    if mine.height:
        parts = []
        known = strategy in strategies.REGISTRY
        group = "picked_by" in full.columns and known and strategies.get(strategy).halves
        for row in mine.iter_rows(named=True):
            pool = full.filter(pl.col("picked_by") == row["picked_by"]) if group else full
            rank = pool.with_row_index("k").filter(pl.col("pair_id") == pid)["k"][0] + 1
            keep = strategies.get(strategy).quota(size, row.get("picked_by")) if group else size
            last = pool["score"][keep - 1] if "score" in pool.columns and keep <= pool.height else None
            what = f"the {row['picked_by']} half" if group else "the filter"
            parts.append(f"a candidate of {what} at rank {rank:,} of {pool.height:,}"
                         + (f" (score {row['score']:.4f})" if row.get("score") is not None else "")
                         + (f" ({row['reason']})" if row.get("reason") else "")  # the filter's own reason
                         + f", but only the top {keep:,} are kept"
                         + (f" (the last kept scored {last:.4f})" if last is not None else ""))
        return "; ".join(parts)
    if floor is None:
        return "the filter does not return it"
    side = lambda x: f"{x:.4f} {'>' if x > floor else '<='} floor {floor:g}"  # noqa: E731
    known = strategies.REGISTRY.get(strategy)
    cond = known.condition if known else f"keeps: {header.get('keeps', '?')}"
    return f"fails the filter's condition: pos_sim {side(pos)}, neg_sim {side(neg)}; {strategy} {cond}"
