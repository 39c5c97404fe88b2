"""`curate filter`: run a filter written in SQL over `similarities` (or `strength`) and store the subset it picks.

    from curate.filters import run_filter
    r = run_filter(Workspace("workspace"), strategy="split-even", eps=0.2, size=2000, iteration=1)
    r = run_filter(ws, strategy="split-even", iteration=1, clean=0.1, flip=0.1)   # on cleaned candidates
    r = run_filter(ws, strategy="clean", drop_below=0.1)                          # no scores needed

A filter is one SELECT (a file in `sql/`, or the user's own) that returns `pair_id` and may return
`rank`, `score`, `picked_by`, `reason` and `flipped`. The runner binds DuckDB named parameters ($eps, $size,
$iteration, $branch, $model_id, $aggregate, $distinct, $strength, $drop_below, $drop_categories, $bottom, and
the user's -p values) and never formats a value into SQL text. A filter that uses none of the similarity
parameters ($eps, $iteration, $model_id, $aggregate) needs no scored iteration (clean and flip read
`strength`). The result is stored in `subsets` + `subset_pairs`, with a manifest holding the SQL text, its
hash, the parameters, the embedding model and policy identity, the strength identity, and the counts.

On top of any filter, `clean` leaves the pairs whose strength percentile is below it out of the candidates
before the filter picks (so a size is filled from the others), and `flip` marks flipped = true on the
picked pairs whose percentile is below it (Secrets of RLHF II, sections 2.3 and 2.4.1).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import strategies
from .errors import CurateError
from .settings import setting
from .strategies import parse_header
from .strength_rows import (
    CANDIDATE_VIEWS,
    check_fraction,
    mark_flipped,
    pick_identity,
    shadow_without,
    weakest_table,
)
from .workspace import Workspace, utcnow

if TYPE_CHECKING:
    import duckdb

AGGREGATES = ("mean", "max")
RESULT_COLUMNS = ("pair_id", "rank", "score", "picked_by", "reason", "flipped")
HEADER_KEYS = ("strategy", "keeps", "params", "paper", "returns")
STRENGTH_PARAMS = ("strength", "drop_below", "drop_categories", "bottom")
BUILTIN_PARAMS = ("eps", "size", "iteration", "branch", "model_id", "aggregate", "distinct", "seed", *STRENGTH_PARAMS)
# a filter using any of these reads `similarities`: it needs a scored iteration and an embedding model_id
SCORE_PARAMS = ("eps", "iteration", "model_id", "aggregate")
DROP_CATEGORIES = ("incorrect", "ambiguous")

COUNTS_SQL = """
select count(*) as scored,
       count(*) filter (where pos > 1 - $eps) as pos_above_floor,
       count(*) filter (where neg > 1 - $eps) as neg_above_floor,
       count(*) filter (where pos > 1 - $eps and neg > 1 - $eps) as both_above_floor,
       count(*) filter (where pos > 1 - $eps or neg > 1 - $eps) as either_above_floor
from (
    select case when $aggregate = 'max' then pos_sim_max else pos_sim end as pos,
           case when $aggregate = 'max' then neg_sim_max else neg_sim end as neg
    from similarities where branch = $branch and iteration = $iteration and model_id = $model_id
)
"""


@dataclass
class FilterSettings:
    """The knobs every strategy shares: `curate filter`'s options and `curate run`'s [filter] section."""

    eps: float = setting(0.2, "Similarity floor is 1 - eps; eps in (0, 2].", paper="FRFT paper, section 5.3")
    size: int = setting(2000, "Pairs to keep (N).", short="-n", paper="FRFT paper, section 5.3")
    aggregate: str = setting("mean", "With several samples per prompt: filter on their mean or max similarity.",
                             choices=AGGREGATES)
    distinct: bool = setting(False, "split-even: fill the subset with N distinct pairs (the neg half skips pairs "
                             "the pos half took).", flag="--distinct")
    seed: int = setting(0, "random: the seed of the draw (the same seed draws the same pairs).", toml=False)


@dataclass
class FilterSql:
    path: Path
    text: str
    header: dict[str, str]
    params: set[str]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def strategy(self) -> str:
        return self.header.get("strategy") or self.path.stem

    @property
    def reads_scores(self) -> bool:
        """Whether the filter reads `similarities` (uses $eps, $iteration, $model_id or $aggregate)."""
        return bool(self.params & set(SCORE_PARAMS))


def strategy_path(strategy: str) -> Path:
    """The SQL file of a registered strategy (curate.strategies)."""
    return strategies.get(strategy).path


def load_sql(path: Path) -> FilterSql:
    import duckdb

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CurateError(f"Filter file {path} does not exist.") from None
    except UnicodeDecodeError as e:
        raise CurateError(f"{path} is not UTF-8 text ({e}).") from None
    try:
        stmts = duckdb.extract_statements(text)
    except duckdb.Error as e:
        raise CurateError(f"{path}: the SQL does not parse: {str(e).strip()}") from None
    if len(stmts) != 1:
        raise CurateError(f"{path}: a filter is exactly one SELECT statement; found {len(stmts)} statements.")
    if stmts[0].type.name != "SELECT":
        raise CurateError(f"{path}: a filter is a SELECT statement, not {stmts[0].type.name}.")
    return FilterSql(Path(path), text, parse_header(text), set(stmts[0].named_parameters))


def scored_model_ids(con: "duckdb.DuckDBPyConnection", branch: str, iteration: int) -> list[str]:
    return [r[0] for r in con.execute(
        "select distinct model_id from similarities where branch = $b and iteration = $i order by 1",
        {"b": branch, "i": iteration}).fetchall()]


def latest_iteration(ws: Workspace, branch: str) -> int:
    with ws.connect() as con:
        it = con.execute("select max(iteration) from similarities where branch = $b", {"b": branch}).fetchall()[0][0]
    if it is None:
        raise CurateError(f"Nothing is scored on branch {branch!r} yet: run `curate score --iteration N` first.")
    return int(it)


def pick_model_id(con: "duckdb.DuckDBPyConnection", branch: str, iteration: int, model: str | None) -> str:
    ids = scored_model_ids(con, branch, iteration)
    if not ids:
        raise CurateError(f"Iteration {iteration} of branch {branch!r} has no scores: run "
                          f"`curate score --iteration {iteration}` first (or pick another --iteration).")
    if model is None:
        if len(ids) > 1:
            raise CurateError(f"Iteration {iteration} is scored with several embedding models ({', '.join(ids)}): "
                              "pick one with --model.")
        return ids[0]
    matches = [i for i in ids if i == model or i.startswith(model.rstrip("-") + "-")]
    if len(matches) != 1:
        raise CurateError(f"--model {model!r} matches {len(matches)} of the models iteration {iteration} is "
                          f"scored with ({', '.join(ids)}); give the model_id.")
    return matches[0]


@dataclass
class FilterResult:
    name: str
    subset_id: str
    strategy: str
    branch: str
    iteration: int
    size: int | None
    rows: int
    distinct_pairs: int
    counts: dict
    replaced: bool
    seconds: float
    manifest: str = ""
    params: dict = field(default_factory=dict)
    reads_scores: bool = True

    @property
    def short(self) -> bool:
        return self.size is not None and self.rows < self.size


def default_name(strategy: str, iteration: int, branch: str, sql_file: bool = False, *, reads_scores: bool = True,
                 clean: bool = False, flip: bool = False) -> str:
    """frft-<strategy>-it<N>[-clean][-flip][-<branch>] (the strategy named frft, eq. 3, is plain frft-it<N>, not
    frft-frft; the baselines are random-it<N> and all-it<N>); a user's --sql-file is named after the file:
    <stem>-it<N>. A registered strategy that reads no scores depends on no iteration: plain clean and flip."""
    plain = sql_file or strategy == "frft" or (strategy in strategies.REGISTRY and strategies.get(strategy).baseline)
    stem = strategy if plain or not reads_scores else f"frft-{strategy}"
    it = f"-it{iteration}" if reads_scores or sql_file else ""
    mods = ("-clean" if clean else "") + ("-flip" if flip else "")
    return stem + it + mods + ("" if branch == "main" else f"-{branch}")


def _latest_or_zero(ws: Workspace, branch: str) -> int:
    """The iteration a subset that reads no scores is filed under: the latest scored one, else 0."""
    with ws.connect() as con:
        it = con.execute("select max(iteration) from similarities where branch = $b", {"b": branch}).fetchall()[0][0]
    return 0 if it is None else int(it)


def _check_strength_options(flt: FilterSql, strength: str | None, drop_below: float | None,
                            drop_categories: tuple[str, ...], bottom: float | None, clean: float | None,
                            flip: float | None) -> bool:
    """Check the strength options against the filter's parameters; whether the filter needs strength rows."""
    for value, option in ((drop_below, "--drop-below"), (bottom, "--bottom"), (clean, "--clean"), (flip, "--flip")):
        check_fraction(value, option)
    bad = [c for c in drop_categories if c not in DROP_CATEGORIES]
    if bad:
        raise CurateError(f"--drop-category {bad[0]!r}: use {' or '.join(DROP_CATEGORIES)} (repeatable).")
    drops = {"drop_below", "drop_categories"} & flt.params
    if (drop_below is not None or drop_categories) and not drops:
        raise CurateError(f"--drop-below and --drop-category apply to clean (filters that use $drop_below or "
                          f"$drop_categories); {flt.path.name} does not. On top of another strategy use --clean F.")
    if drops and drop_below is None and not drop_categories:
        raise CurateError(f"{flt.strategy} drops the weakest pairs: give --drop-below F (the pairs whose strength "
                          "percentile is below F, e.g. 0.1) or --drop-category incorrect|ambiguous.")
    if bottom is not None and "bottom" not in flt.params:
        raise CurateError(f"--bottom applies to flip (filters that use $bottom); {flt.path.name} does not. On top of "
                          "another strategy use --flip F.")
    if "bottom" in flt.params and bottom is None:
        raise CurateError(f"{flt.strategy} flips the weakest pairs: give --bottom F (the pairs whose strength "
                          "percentile is below F, e.g. 0.1).")
    needs = "strength" in flt.params or clean is not None or flip is not None
    if strength is not None and not needs:
        raise CurateError(f"--strength picks the strength rows of clean, flip, --clean and --flip; {flt.path.name} "
                          "uses none of them.")
    return needs


def run_filter(
    ws: Workspace,
    strategy: str | None = None,
    *,
    sql_file: str | Path | None = None,
    eps: float = FilterSettings.eps,
    size: int = FilterSettings.size,
    iteration: int | None = None,
    branch: str = "main",
    aggregate: str = FilterSettings.aggregate,
    distinct: bool = FilterSettings.distinct,
    seed: int = FilterSettings.seed,
    model: str | None = None,
    name: str | None = None,
    user_params: dict[str, Any] | None = None,
    strength: str | None = None,
    drop_below: float | None = None,
    drop_categories: tuple[str, ...] | list[str] = (),
    bottom: float | None = None,
    clean: float | None = None,
    flip: float | None = None,
) -> FilterResult:
    """Run one filter and store its subset (replacing a subset of the same name).

    strength: the strength identity (exact or prefix; default the latest) that drop_below, drop_categories and
    bottom (clean, flip) and the clean/flip fractions on top of any filter read their percentiles from.
    """
    import duckdb

    t0 = time.perf_counter()
    ws.require()
    if (strategy is None) == (sql_file is None):
        raise CurateError("Give a --strategy or a --sql-file (one of them).")
    if not 0 < eps <= 2:
        raise CurateError(f"--eps must be in (0, 2] (cosine similarity floor 1 - eps lies in [-1, 1)); got {eps}.")
    if size < 1:
        raise CurateError(f"--size must be at least 1; got {size}.")
    if aggregate not in AGGREGATES:
        raise CurateError(f"--aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}.")
    flt = load_sql(strategy_path(strategy) if strategy else Path(sql_file))
    user_params = dict(user_params or {})
    clash = sorted(set(user_params) & set(BUILTIN_PARAMS))
    if clash:
        raise CurateError(f"-p {clash[0]} is set by the runner: use --{clash[0].replace('_', '-')} instead.")
    unused = sorted(set(user_params) - flt.params)
    if unused:
        raise CurateError(f"{flt.path} does not use parameter(s) {', '.join('$' + u for u in unused)} "
                          f"(it uses {', '.join(sorted('$' + p for p in flt.params)) or 'none'}).")
    missing = sorted(flt.params - set(BUILTIN_PARAMS) - set(user_params))
    if missing:
        raise CurateError(f"{flt.path} uses {', '.join('$' + m for m in missing)} with no value: pass "
                          + " ".join(f"-p {m} VALUE" for m in missing) + ".")
    if distinct and "distinct" not in flt.params:
        raise CurateError(f"--distinct applies to split-even (filters that use $distinct); {flt.path.name} does not.")
    drop_categories = tuple(drop_categories)
    needs_strength = _check_strength_options(flt, strength, drop_below, drop_categories, bottom, clean, flip)
    if iteration is None:
        iteration = latest_iteration(ws, branch) if flt.reads_scores else _latest_or_zero(ws, branch)

    # the lock and transaction cover the whole step: a filter that fails leaves nothing behind
    with ws.lock("curate filter"), ws.transaction("curate filter") as tx:
        with ws.connect() as con:  # closed before the commit, which rewrites the catalog this connection has open
            model_id = pick_model_id(con, branch, iteration, model) if flt.reads_scores else None
            ident = pick_identity(con, strength) if needs_strength else None
            values = {"eps": float(eps), "size": int(size), "iteration": int(iteration), "branch": branch,
                      "model_id": model_id, "aggregate": aggregate, "distinct": bool(distinct), "seed": int(seed),
                      "strength": ident.identity if ident else None, "drop_below": drop_below,
                      "drop_categories": list(drop_categories), "bottom": bottom, **user_params}
            bound = {k: v for k, v in values.items() if k in flt.params}
            counts: dict[str, Any] = _strength_counts(con, ident.identity) if ident else {}
            if clean is not None:  # --clean: the filter sees the candidate views without the weakest pairs
                weakest_table(con, "strength_clean", ident.identity, clean)
                counts["cleaned_out"] = _cleaned_out(con, flt.reads_scores, values)
                shadow_without(con, "strength_clean")
            try:
                con.execute(f"create temp table picked_raw as {flt.text}", bound)
            except duckdb.Error as e:
                raise CurateError(f"{flt.path}: the filter failed: {str(e).strip()}") from None
            _conform(con, flt.path)
            if flt.reads_scores:  # over the candidates the filter saw (after --clean)
                counts.update(zip(
                    ("scored", "pos_above_floor", "neg_above_floor", "both_above_floor", "either_above_floor"),
                    con.execute(COUNTS_SQL, {k: values[k] for k in ("eps", "branch", "iteration", "model_id",
                                                                       "aggregate")}).fetchall()[0]))
            if clean is not None:
                for view in CANDIDATE_VIEWS:
                    con.execute(f"drop view temp.main.{view}")
            if flip is not None:
                weakest_table(con, "strength_flip", ident.identity, flip)
                mark_flipped(con, "picked", "strength_flip")
            unknown, example = con.execute(
                "select count(*), min(pair_id) from picked anti join pairs using (pair_id)").fetchall()[0]
            if unknown:
                raise CurateError(f"{flt.path} returned {unknown:,} pair_id(s) that are not in `pairs` "
                                  f"(e.g. {example!r}): a filter must return ids from the pairs table.")
            # flipped enters the digest only where set, so the ids of subsets without flips stay what they were
            rows, distinct_pairs, flipped, pairs_digest = con.execute(
                "select count(*), count(distinct pair_id), count(*) filter (where flipped), "
                "md5(coalesce(string_agg(pair_id || ':' || rank || ':' || picked_by || "
                "case when flipped then ':flipped' else '' end, ',' order by rank, pair_id, picked_by), '')) "
                "from picked").fetchall()[0]
            by = dict(con.execute("select picked_by, count(*) from picked group by 1 order by 1").fetchall())
            policies = [r[0] for r in con.execute(
                "select distinct policy from generations where branch = $b and iteration = $i order by 1",
                {"b": branch, "i": iteration}).fetchall()] if flt.reads_scores else []
            model_row = None
            if flt.reads_scores:
                cur = con.execute("select * exclude (created_at) from embedding_models where model_id = $m",
                                  {"m": model_id})
                model_row = dict(zip([d[0] for d in cur.description], cur.fetchone() or ())) or {"model_id": model_id}

            strategy_name = strategy or flt.strategy
            name = name or default_name(strategy or flt.path.stem, iteration, branch, sql_file=strategy is None,
                                        reads_scores=flt.reads_scores, clean=clean is not None,
                                        flip=flip is not None)
            params = ({"eps": eps, "floor": round(1 - eps, 12), "size": size, "aggregate": aggregate,
                       "distinct": distinct, "model_id": model_id} if flt.reads_scores
                      else {"size": size} if "size" in flt.params else {})
            if "seed" in flt.params:
                params["seed"] = seed
            if user_params:
                params["user"] = user_params
            strength_params = {"strength": ident.identity if ident else None, "drop_below": drop_below,
                               "drop_categories": list(drop_categories) or None, "bottom": bottom, "clean": clean,
                               "flip": flip}
            params.update({k: v for k, v in strength_params.items() if v is not None})
            counts.update(rows=rows, distinct_pairs=distinct_pairs, picked_twice=rows - distinct_pairs,
                          picked_by={str(k): int(v) for k, v in by.items()})
            if ident or flipped:
                counts["flipped"] = flipped
            key = json.dumps([name, flt.sha256, params, branch, iteration, pairs_digest], sort_keys=True)
            subset_id = hashlib.sha256(key.encode()).hexdigest()[:16]
            created = utcnow()
            tx.remove("subsets", old := ws.files("subsets", key=name))
            tx.remove("subset_pairs", ws.files("subset_pairs", key=name))
            if rows:
                tx.copy("subset_pairs", con, "select $subset_id as subset_id, pair_id, rank, score, picked_by, "
                        "reason, flipped from picked order by rank, pair_id, picked_by", {"subset_id": subset_id},
                        key=name)
            tx.copy("subsets", con, "select $subset_id as subset_id, $name as name, $strategy as strategy, "
                    "$branch as branch, $iteration as iteration, $params as params, $sha as sql_sha256, "
                    "$counts as counts, cast($created as timestamp) as created_at",
                    {"subset_id": subset_id, "name": name, "strategy": strategy_name, "branch": branch,
                     "iteration": iteration, "params": json.dumps(params, sort_keys=True), "sha": flt.sha256,
                     "counts": json.dumps(counts, sort_keys=True), "created": created.replace("Z", "")},
                    key=name)
    from .provenance import versions

    manifest = ws.write_manifest("filter", subset_id, {
        "step": "filter", "subset_id": subset_id, "name": name, "strategy": strategy_name,
        "branch": branch, "iteration": iteration, "params": params, "bound": bound,
        "sql_file": str(flt.path), "sql_sha256": flt.sha256, "sql": flt.text, "header": flt.header,
        "embedding_model": model_row, "policies": policies, "counts": counts, "created_at": created,
        "strength": ident.record() if ident else None,
        "similarities_files": sorted(p.name for p in ws.files("similarities",
                                                                key=f"{branch}-it{iteration}-{model_id}"))
        if flt.reads_scores else [],
        "versions": versions(("duckdb",)),
    })
    return FilterResult(name, subset_id, strategy_name, branch, iteration, size if "size" in flt.params else None,
                        rows, distinct_pairs, counts, bool(old), time.perf_counter() - t0, str(manifest), params,
                        flt.reads_scores)


def _strength_counts(con: "duckdb.DuckDBPyConnection", identity: str) -> dict:
    """How many pref pairs the identity measured, and how many it did not (clean and flip leave those out)."""
    measured, unmeasured = con.execute(
        "select count(s.pair_id), count(*) - count(s.pair_id) from pairs p "
        "left join (select distinct pair_id from strength where identity = $i) s using (pair_id) "
        "where p.role = 'pref'", {"i": identity}).fetchall()[0]
    return {"measured": measured, "unmeasured": unmeasured}


def _cleaned_out(con: "duckdb.DuckDBPyConnection", reads_scores: bool, values: dict) -> int:
    """The weakest pairs --clean leaves out of the candidates: scored ones, or pref pairs for a filter without
    scores (before the candidate views are shadowed)."""
    if reads_scores:
        return con.execute("select count(distinct pair_id) from similarities where branch = $branch and "
                           "iteration = $iteration and model_id = $model_id and pair_id in "
                           "(select pair_id from strength_clean)",
                           {k: values[k] for k in ("branch", "iteration", "model_id")}).fetchall()[0][0]
    return con.execute("select count(*) from pairs where role = 'pref' and pair_id in "
                       "(select pair_id from strength_clean)").fetchall()[0][0]


def _conform(con: "duckdb.DuckDBPyConnection", path: Path) -> None:
    """Check the filter's result against the contract and make the temp table `picked` from it."""
    import duckdb

    cols = [r[0] for r in con.execute("describe picked_raw").fetchall()]
    if "pair_id" not in cols:
        raise CurateError(f"{path} returns columns {', '.join(cols) or '(none)'} but no pair_id: a filter must "
                          f"return pair_id (and may return {', '.join(RESULT_COLUMNS[1:])}).")
    extra = [c for c in cols if c not in RESULT_COLUMNS]
    if extra:
        raise CurateError(f"{path} returns column(s) {', '.join(extra)} that a filter may not: the contract is "
                          f"pair_id plus optional {', '.join(RESULT_COLUMNS[1:])}. Drop or rename them.")
    nulls = con.execute("select count(*) from picked_raw where pair_id is null").fetchall()[0][0]
    if nulls:
        raise CurateError(f"{path} returned {nulls} rows with a NULL pair_id.")
    rank = "rank" if "rank" in cols else "row_number() over ()"  # no rank: the order the filter returned
    exprs = [
        "cast(pair_id as varchar) as pair_id",
        f"cast({rank} as integer) as rank",
        f"cast({'score' if 'score' in cols else 'null'} as double) as score",
        f"cast({'picked_by' if 'picked_by' in cols else chr(39) + 'sql' + chr(39)} as varchar) as picked_by",
        f"cast({'reason' if 'reason' in cols else 'null'} as varchar) as reason",
        f"coalesce(cast({'flipped' if 'flipped' in cols else 'null'} as boolean), false) as flipped",
    ]
    try:
        con.execute(f"create temp table picked as select {', '.join(exprs)} from picked_raw")
    except duckdb.Error as e:
        raise CurateError(f"{path}: rank must be an integer and score a number ({str(e).strip()}).") from None
