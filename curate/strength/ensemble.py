"""`curate strength --method ensemble`: M reward models per fold, trained by curate's own trainer, the paper's
procedure (Secrets of RLHF II, section 2.2 and appendix: M = 10, one epoch, lr 5e-6, batch 32).

For each fold k (one fold holding every pair with --in-sample) and each model m, the pairs of the other folds are
written to `<cache>/fold{k}-train.parquet`, `curate.train.rm.train_rm` trains a reward model on them into
`<cache>/fold{k}-model{m}/`, and the held-out pairs get d = r(chosen) - r(rejected), saved (atomically) to
`<cache>/fold{k}-model{m}.npy`; the checkpoint is then deleted (ten 135M-parameter models for each of five folds
would take 25 GB). The M models of a fold train on the same pairs from seeds derived from (seed, k, m): their
reward heads start apart and they see the batches in other orders, as the paper's models do.

Resumable model by model: a finished model's .npy is read back instead of retrained, so rerunning the same
command after an interruption (Ctrl-C, a lost machine) continues with the first model that has none; a checkpoint
folder a killed run left behind is overwritten.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..atomic import remove, staged_file
from ..errors import CurateError
from .features import NO_PAIRS
from .probe import fold_of

if TYPE_CHECKING:
    import polars as pl

PAIRS_SQL = "select pair_id, prompt, chosen, rejected from pairs where role = 'pref' order by pair_id"
# rows longer than this are trained and scored with their prompt cut from the left, the same way in both, so no
# pair is left out of training silently and every pair gets a score (RMConfig's own default length)
MAX_LENGTH = 1024
LONG_ROWS = "truncate"


def base_identity(settings) -> str:
    """The model_id of the base every reward model starts from (resolved as `curate train rm --base` does)."""
    from ..models import resolve_model

    return resolve_model(settings.base, kind="rm-base").model_id


def pair_inputs(ws, settings) -> tuple["pl.DataFrame", list[str], str, dict]:
    """(pairs, pair_ids, features_id, counts): the pref pairs by pair_id (pair_id, prompt, chosen, rejected), and
    the identity of the base model every reward model starts from, resolved as `curate train rm --base` does."""
    from ..models import resolve_model
    from ..workspace import query_frame

    with ws.connect() as con:
        pairs = query_frame(con, PAIRS_SQL)
    if pairs.height == 0:
        raise CurateError(NO_PAIRS)
    base = resolve_model(settings.base, kind="rm-base")  # a wrong --base fails before any training
    counts = {"pairs": pairs.height, "base": base.name, "base_source": base.source, "base_revision": base.revision,
              "max_length": MAX_LENGTH, "long_rows": LONG_ROWS}
    return pairs, pairs["pair_id"].to_list(), base.model_id, counts


def ensemble_scores(pairs: "pl.DataFrame", settings, progress: Callable[[str, int], Callable[[int], None]] | None,
                    flipped: np.ndarray | None = None, cache: str | Path | None = None,
                    keep: bool = False) -> np.ndarray:
    """d (M, n): row m holds, for each pair, r(chosen) - r(rejected) by model m of the pair's own fold (out of fold
    unless settings.in_sample). flipped: pairs whose chosen and rejected are swapped in a scratch copy before
    anything, d then in that orientation (--inject-flips). cache: the folder of the finished models' scores, so a
    rerun resumes (None: a temporary one, no resume). keep: leave each reward model's checkpoint and the
    training pairs in the cache."""
    n, k_folds, models = pairs.height, settings.k, settings.models
    if n < 2 * k_folds:
        raise CurateError(f"{n} pref pairs are too few for {k_folds} folds: ingest more, or lower --folds.")
    scratch = _oriented(pairs, flipped)
    fold = fold_of(n, k_folds, settings.seed)
    d = np.empty((models, n))
    trained = 0
    place = tempfile.TemporaryDirectory(prefix="curate-strength-") if cache is None else contextlib.nullcontext(cache)
    with place as folder:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        advance = progress(f"reward models, {k_folds} fold(s) x {models} (rerun the same command to resume)",
                           k_folds * models) if progress else None
        for k in range(k_folds):
            held = np.flatnonzero(fold == k)
            train = np.flatnonzero(fold != k) if k_folds > 1 else np.arange(n)
            data = folder / f"fold{k}-train.parquet"
            for m in range(models):
                out = folder / f"fold{k}-model{m}.npy"
                scores = _finished(out, len(held))
                if scores is None:
                    if not data.is_file():
                        _write_pairs(scratch[train], data)
                    # transformers reports the fresh reward head of every model it loads: once is enough
                    with _load_reports(shown=trained == 0):
                        scores = _train_and_score(scratch[held], data, folder / f"fold{k}-model{m}", settings,
                                                  model_seed(settings.seed, k, m), keep)
                    trained += 1
                    _save(out, scores)
                d[m, held] = scores
                if advance:
                    advance(1)
            if not keep:
                remove(data)  # every model of the fold is done
    return d


def model_seed(seed: int, k: int, m: int) -> int:
    """The training seed of model m of fold k: the head's init and the batch order differ between the M models."""
    return int(np.random.default_rng([seed, 3, k, m]).integers(2**31 - 1))


def _oriented(pairs: "pl.DataFrame", flipped: np.ndarray | None) -> "pl.DataFrame":
    """The pairs with chosen and rejected swapped where `flipped` (a scratch copy; the workspace is not touched)."""
    import polars as pl

    frame = pairs.select("pair_id", "prompt", "chosen", "rejected")
    if flipped is None:
        return frame
    flip = pl.Series(np.asarray(flipped, dtype=bool))
    if len(flip) != frame.height:
        raise ValueError(f"flipped has {len(flip)} entries for {frame.height} pairs")
    return frame.with_columns(chosen=pl.when(flip).then(pl.col("rejected")).otherwise(pl.col("chosen")),
                              rejected=pl.when(flip).then(pl.col("chosen")).otherwise(pl.col("rejected")))


def _write_pairs(frame: "pl.DataFrame", path: Path) -> None:
    """The training pairs as the trainer's --data reads them (prompt, chosen, rejected; pair_id for its messages)."""
    with staged_file(path) as tmp:
        frame.write_parquet(tmp)


def _finished(path: Path, n: int) -> np.ndarray | None:
    """A finished model's scores, or None when it has none (or a file of another length, which is retrained)."""
    if not path.is_file():
        return None
    try:
        scores = np.load(path)
    except (OSError, ValueError):
        return None
    return scores if scores.shape == (n,) else None


def _save(path: Path, scores: np.ndarray) -> None:
    with staged_file(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(scores, dtype=np.float64))


def _train_and_score(held: "pl.DataFrame", data: Path, folder: Path, settings, seed: int, keep: bool) -> np.ndarray:
    """Train one reward model on `data` into `folder` and return d of the `held` pairs."""
    from ..train.evaluate import score_pairs
    from ..train.rm import RMConfig, train_rm

    _clear_partial(folder)
    config = RMConfig(base=settings.base, data=str(data), output=str(folder), lr=settings.lr,
                      epochs=settings.epochs, batch_size=settings.batch_size, max_length=MAX_LENGTH,
                      long_rows=LONG_ROWS, margin="none", seed=seed, overwrite=True, quiet=True)
    result = train_rm(config)
    rows = {c: held[c].to_list() for c in ("prompt", "chosen", "rejected")}
    rc, rr = score_pairs(str(result.output), rows, batch_size=settings.batch_size, max_length=MAX_LENGTH)
    if not keep:
        remove(folder)
    _free_memory()
    return np.asarray(rc, dtype=np.float64) - np.asarray(rr, dtype=np.float64)


@contextlib.contextmanager
def _load_reports(shown: bool):
    """transformers' loading warnings (the report "score.weight | MISSING": the new reward head) shown, or silenced
    for a block: every model of the ensemble loads the same base, so what the first showed holds for all."""
    logger = logging.getLogger("transformers.modeling_utils")  # a standard logger: no transformers import
    level = logger.level
    if not shown:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _clear_partial(folder: Path) -> None:
    """Remove what a killed run left of this model: its checkpoint folder and the trainer's staging folders
    (`.fold0-model0.<id>.tmp`, curate/atomic.py), each as large as the model."""
    remove(folder)
    for staged in folder.parent.glob(f".{folder.name}.*.tmp"):
        remove(staged)


def _free_memory() -> None:
    """Release the trained model before the next one loads (one model on the GPU at a time)."""
    gc.collect()
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
