"""The table contract (shared/DESIGN.md): names and columns users' SQL relies on.

Each table is a view in the DuckDB catalog over Parquet files in the workspace. The column
lists here are the single source of truth for `curate tables`, for the typed empty views a
fresh workspace starts with, and for the schema every writer casts its rows to.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type
    doc: str


@dataclass(frozen=True)
class Table:
    name: str
    grain: str
    columns: tuple[Column, ...]
    issue: str = ""  # which step fills it

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


C = Column

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "pairs",
            "preference pair",
            (
                C("pair_id", "VARCHAR", "content hash of the normalised prompt, chosen and rejected (32 hex)"),
                C("prompt", "VARCHAR", "shared transcript up to and including the final '\\n\\nAssistant:'"),
                C("chosen", "VARCHAR", "preferred final response (prompt || chosen = chosen_full)"),
                C("rejected", "VARCHAR", "unfavored final response"),
                C("chosen_full", "VARCHAR", "original chosen transcript, where the source had one"),
                C("rejected_full", "VARCHAR", "original rejected transcript, where the source had one"),
                C("source", "VARCHAR", "input file path or hf:ID"),
                C("subset", "VARCHAR", "source subset (HH-RLHF data_dir, e.g. harmless-base)"),
                C("split", "VARCHAR", "source split (train/test)"),
                C("source_row", "BIGINT", "0-based row of the pair in its source"),
                C("role", "VARCHAR", "'sft' or 'pref' (assigned from pair_id and --seed)"),
                C("flags", "VARCHAR[]", "diverged_early, empty_response, identical_responses"),
                C("format", "VARCHAR", "input format: hh, explicit or conversational"),
                C("ingest_id", "VARCHAR", "ingest step that added the row (manifests/ingest-<id>.json)"),
            ),
            "ingest",
        ),
        Table(
            "rejects",
            "input row not ingested",
            (
                C("source", "VARCHAR", "input file path or hf:ID"),
                C("line", "BIGINT", "1-based line (row for non-line formats)"),
                C("reason", "VARCHAR", "stable reason code, e.g. invalid_json, missing_field:chosen"),
                C("detail", "VARCHAR", "human-readable explanation"),
                C("raw", "VARCHAR", "the raw input text of the row"),
                C("ingest_id", "VARCHAR", "ingest step that rejected the row"),
            ),
            "ingest",
        ),
        Table(
            "generations",
            "policy sample",
            (
                C("branch", "VARCHAR", "FRFT branch ('main' for plain commands)"),
                C("iteration", "INTEGER", "FRFT iteration (1-based)"),
                C("pair_id", "VARCHAR", "pair whose prompt was sampled"),
                C("sample", "INTEGER", "sample index for the prompt (0-based)"),
                C("text", "VARCHAR", "the policy's response"),
                C("policy", "VARCHAR", "policy name or checkpoint hash"),
                C("params", "VARCHAR", "sampling parameters as JSON"),
            ),
            "generations import / generate",
        ),
        Table(
            "embeddings",
            "(text, model)",
            (
                C("text_hash", "VARCHAR", "hash of the exact text"),
                C("model_id", "VARCHAR", "embedding model identity"),
                C("vector", "FLOAT[]", "normalised embedding (fixed size per model)"),
            ),
            "embed",
        ),
        Table(
            "embedding_models",
            "embedding model identity",
            (
                C("model_id", "VARCHAR", "name slug + hash of the identity below (the cache key with text_hash)"),
                C("name", "VARCHAR", "model name (Hub id, folder, or the packaged default)"),
                C("revision", "VARCHAR", "Hub commit, where known"),
                C("weights_sha256", "VARCHAR", "hash of the weight files"),
                C("pooling", "VARCHAR", "pooling mode (mean, cls, ...)"),
                C("max_seq_length", "INTEGER", "tokens per text before truncation"),
                C("dim", "INTEGER", "vector size"),
                C("identity", "VARCHAR", "the full identity as JSON"),
                C("created_at", "TIMESTAMP", "first embedding with this model (UTC)"),
            ),
            "embed",
        ),
        Table(
            "sample_similarities",
            "scored generation sample",
            (
                C("branch", "VARCHAR", "FRFT branch"),
                C("iteration", "INTEGER", "FRFT iteration"),
                C("pair_id", "VARCHAR", "scored pair"),
                C("sample", "INTEGER", "generation sample"),
                C("model_id", "VARCHAR", "embedding model identity"),
                C("pos_sim", "DOUBLE", "cos(chosen, this sample)"),
                C("neg_sim", "DOUBLE", "cos(rejected, this sample)"),
            ),
            "score",
        ),
        Table(
            "similarities",
            "scored pair",
            (
                C("branch", "VARCHAR", "FRFT branch"),
                C("iteration", "INTEGER", "FRFT iteration"),
                C("pair_id", "VARCHAR", "scored pair"),
                C("model_id", "VARCHAR", "embedding model identity"),
                C("pos_sim", "DOUBLE", "cos(chosen, generation), mean over samples"),
                C("neg_sim", "DOUBLE", "cos(rejected, generation), mean over samples"),
                C("pos_sim_max", "DOUBLE", "max over samples"),
                C("neg_sim_max", "DOUBLE", "max over samples"),
                C("n_samples", "INTEGER", "samples scored"),
            ),
            "score",
        ),
        Table(
            "subsets",
            "selection",
            (
                C("subset_id", "VARCHAR", "id of the selection"),
                C("name", "VARCHAR", "user-facing name"),
                C("strategy", "VARCHAR", "filter strategy"),
                C("branch", "VARCHAR", "FRFT branch"),
                C("iteration", "INTEGER", "FRFT iteration"),
                C("params", "VARCHAR", "bound parameters as JSON"),
                C("sql_sha256", "VARCHAR", "hash of the filter's SQL text"),
                C("counts", "VARCHAR", "counts as JSON"),
                C("created_at", "TIMESTAMP", "creation time (UTC)"),
            ),
            "filter",
        ),
        Table(
            "subset_pairs",
            "pair in a selection",
            (
                C("subset_id", "VARCHAR", "selection"),
                C("pair_id", "VARCHAR", "selected pair"),
                C("rank", "INTEGER", "rank within the selection"),
                C("score", "DOUBLE", "score the filter ranked by"),
                C("picked_by", "VARCHAR", "which rule picked it (e.g. pos or neg half)"),
                C("reason", "VARCHAR", "the filter's own explanation, where it returns one"),
                C("flipped", "BOOLEAN", "export and train it with chosen and rejected swapped (flip, --flip; "
                  "extension)"),
            ),
            "filter",
        ),
        Table(
            "strength",
            "preference strength of a pair under one method and identity",
            (
                C("pair_id", "VARCHAR", "the pair"),
                C("method", "VARCHAR", "probe (Bradley-Terry heads on frozen representations) or ensemble (reward "
                  "models)"),
                C("identity", "VARCHAR", "what made the scores: method, features or base model, M, K, seed (a "
                  "rerun with the same identity reuses them)"),
                C("n_models", "INTEGER", "M: models whose d = r(chosen) - r(rejected) the mean and std are over"),
                C("folds", "INTEGER", "K: cross-fitting folds (each pair scored by models that never saw it); 1 "
                  "for --in-sample"),
                C("mean", "DOUBLE", "mean of d over the M models (Secrets of RLHF II, eq. 4)"),
                C("std", "DOUBLE", "population standard deviation of d over the M models (eq. 4)"),
                C("percentile", "DOUBLE", "rank of mean among this identity's pairs in [0, 1] (0: weakest)"),
                C("category", "VARCHAR", "incorrect (mean < 0), ambiguous (0 <= mean < the band), strong"),
                C("created_at", "TIMESTAMP", "when it was computed (UTC)"),
                C("features", "VARCHAR", "representation or base model the models read (extension)"),
            ),
            "strength",
        ),
        Table(
            "runs",
            "step of a run",
            (
                C("run_id", "VARCHAR", "run"),
                C("step", "VARCHAR", "step name"),
                C("branch", "VARCHAR", "FRFT branch"),
                C("iteration", "INTEGER", "FRFT iteration"),
                C("status", "VARCHAR", "running, done, failed, interrupted"),
                C("inputs", "VARCHAR", "inputs as JSON"),
                C("outputs", "VARCHAR", "outputs as JSON"),
                C("config_sha256", "VARCHAR", "hash of the resolved config"),
                C("started_at", "TIMESTAMP", "start (UTC)"),
                C("finished_at", "TIMESTAMP", "end (UTC)"),
                C("seconds", "DOUBLE", "wall time of the step (extension)"),
                C("error", "VARCHAR", "why a failed or interrupted step stopped (extension)"),
            ),
            "run",
        ),
        Table(
            "judgments",
            "one judge verdict on two responses in one order",
            (
                C("judge_id", "VARCHAR", "judge identity: openai:MODEL@HOST, hf:<model_id>, rm:<model_id>"),
                C("template_sha256", "VARCHAR", "hash of the judge template ('' for a reward-model judge)"),
                C("prompt_hash", "VARCHAR", "md5 of the prompt as the policies saw it"),
                C("a_hash", "VARCHAR", "md5 of policy a's response"),
                C("b_hash", "VARCHAR", "md5 of policy b's response"),
                C("order", "VARCHAR", "'ab': a's response shown as A; 'ba': b's shown as A"),
                C("raw", "VARCHAR", "the judge's answer (text, or its probabilities / rewards as JSON)"),
                C("verdict", "VARCHAR", "the label chosen: A (shown first), B, tie or invalid"),
                C("created_at", "TIMESTAMP", "when the verdict was made (UTC)"),
                C("a_policy", "VARCHAR", "policy id of response a (extension)"),
                C("b_policy", "VARCHAR", "policy id of response b (extension)"),
                C("attempts", "INTEGER", "requests made: 2 when an invalid answer was retried (extension)"),
            ),
            "eval winrate",
        ),
        Table(
            "winrates",
            "comparison of two policies by one judge (extension)",
            (
                C("comparison_id", "VARCHAR", "hash of what was compared: policies, prompts, judge, template, params"),
                C("name", "VARCHAR", "user-facing name (a run's: <run>-<strategy>-it<k>-vs-<baseline>)"),
                C("run_id", "VARCHAR", "the run whose eval step made it (null for `curate eval winrate`)"),
                C("strategy", "VARCHAR", "the run's strategy of policy a"),
                C("baseline", "VARCHAR", "the run's strategy of policy b"),
                C("iteration", "INTEGER", "FRFT iteration of the policies (null outside a run)"),
                C("a_policy", "VARCHAR", "policy a's id"),
                C("b_policy", "VARCHAR", "policy b's id"),
                C("judge_id", "VARCHAR", "judge identity"),
                C("template_sha256", "VARCHAR", "hash of the judge template"),
                C("prompts", "INTEGER", "prompts compared"),
                C("judged", "INTEGER", "prompts with a valid verdict in both orders"),
                C("wins", "INTEGER", "a preferred in both orders"),
                C("losses", "INTEGER", "b preferred in both orders"),
                C("ties", "INTEGER", "the verdict changed with the order (or the judge scored both the same)"),
                C("invalid", "INTEGER", "prompts with an answer that was neither A nor B after a retry"),
                C("win_rate", "DOUBLE", "(wins + ties / 2) / judged"),
                C("ci_low", "DOUBLE", "95% bootstrap interval, low"),
                C("ci_high", "DOUBLE", "95% bootstrap interval, high"),
                C("wilson_low", "DOUBLE", "95% Wilson interval, low"),
                C("wilson_high", "DOUBLE", "95% Wilson interval, high"),
                C("lc_win_rate", "DOUBLE", "length-controlled win rate (logistic fit at zero length difference)"),
                C("consistency", "DOUBLE", "position-consistency rate of the judge"),
                C("stats", "VARCHAR", "every statistic as JSON (by-length split, mean lengths, intervals)"),
                C("created_at", "TIMESTAMP", "when it was computed (UTC)"),
            ),
            "eval winrate",
        ),
    )
}


def empty_select(table: Table) -> str:
    """A typed, empty SELECT for a table with no files yet, so users' SQL works from day one."""
    cols = ", ".join(f"CAST(NULL AS {c.type}) AS {c.name}" for c in table.columns)
    return f"SELECT {cols} WHERE false"
