"""`curate strength`: how strongly each preference label holds (Secrets of RLHF II, section 2.2).

    from curate.strength import StrengthSettings, compute_strength
    r = compute_strength(Workspace("workspace"), StrengthSettings())           # the probe, out of fold
    r = compute_strength(ws, StrengthSettings(inject_flips=0.1, seed=0))       # how well does it find planted flips?

M models each score every pref pair, d = r(chosen) - r(rejected); the table `strength` keeps per pair the mean
and the population standard deviation of d (eq. 4), the mean's percentile and a category. The models are
`probe` (curate/strength/probe.py: bootstrapped Bradley-Terry heads on cached representations, seconds on a
CPU) or `ensemble` (curate/strength/ensemble.py: reward models trained by curate's own trainer, the paper's
procedure). Both score out of fold by default.

Rows are stored under an identity naming everything that made them (method, features or base model, M, K,
the regularisation, the seed and a digest of the pairs measured): the same settings on the same pairs reuse
the rows; other settings add rows under another identity and never replace any.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..errors import CurateError
from ..settings import setting
from ..workspace import Workspace, new_id, utcnow
from . import lm_features, stats
from .probe import ProbeSettings, cross_fit

METHODS = ("probe", "ensemble")


@dataclass
class StrengthSettings:
    """`curate strength`'s options."""

    method: str = setting("probe", "probe: Bradley-Terry heads on cached representations (seconds on a CPU); "
                          "ensemble: reward models trained by curate's trainer (the paper's; for a GPU).",
                          choices=METHODS)
    models: int = setting(10, "M: models per fold whose d = r(chosen) - r(rejected) are averaged.",
                          paper="Secrets of RLHF II, section 2.2: M = 10")
    folds: int = setting(5, "K: each pair is scored only by models fitted on the other K - 1 folds.")
    in_sample: bool = setting(False, "Score every pair with models fitted on all pairs, the paper's procedure "
                              "(hides the label errors it looks for; for comparison).", flag="--in-sample")
    features: str = setting("default", "probe: the sentence-transformers model whose response vectors it reads "
                            "(those of `curate embed`; 'default' is the packaged all-MiniLM-L6-v2), or lm:MODEL, a "
                            "causal LM's hidden states of prompt + response (lm:smollm2-135m, lm:checkpoints/sft).")
    l2: float = setting(ProbeSettings.l2, "probe: ridge penalty on each head, on features scaled to unit root mean "
                        "square.")
    base: str | None = setting(None, "ensemble: the model each reward model starts from (an SFT checkpoint, "
                               "smollm2-135m, a Hub id).", metavar="MODEL")
    lr: float = setting(5e-6, "ensemble: learning rate.", paper="Secrets of RLHF II, appendix: lr 5e-6")
    batch_size: int = setting(32, "ensemble: pairs per step.", paper="Secrets of RLHF II, appendix: batch 32")
    epochs: float = setting(1.0, "ensemble: epochs per reward model.", paper="Secrets of RLHF II: one epoch")
    ambiguous: float = setting(stats.AMBIGUOUS_BAND, "ambiguous: 0 <= mean < this many standard deviations of "
                               "the means over all pairs.")
    seed: int = setting(0, "Seed of the folds, the resamples and the planted flips.")
    inject_flips: float | None = setting(None, "Flip this fraction of the labels in a scratch copy, run the "
                                         "detector and report how well it finds them (nothing is stored).",
                                         metavar="F")

    def check(self) -> None:
        if self.method not in METHODS:
            raise CurateError(f"--method {self.method!r}: expected one of {', '.join(METHODS)}.")
        if self.models < 2:
            raise CurateError(f"--models {self.models}: the standard deviation needs at least 2 models (the paper "
                              "uses 10).")
        if not self.in_sample and self.folds < 2:
            raise CurateError(f"--folds {self.folds}: out-of-fold scoring needs at least 2 folds (5 is the "
                              "default); for the paper's in-sample scores pass --in-sample.")
        if self.inject_flips is not None and not 0 < self.inject_flips < 1:
            raise CurateError(f"--inject-flips {self.inject_flips}: give a fraction in (0, 1), e.g. 0.1.")
        if not self.l2 > 0:
            raise CurateError(f"--l2 {self.l2}: must be above 0.")
        if not self.ambiguous >= 0:
            raise CurateError(f"--ambiguous {self.ambiguous}: must be 0 or more.")
        if self.method == "ensemble" and not self.base:
            raise CurateError("--method ensemble trains reward models: name the model they start from with --base "
                              "(an SFT checkpoint, smollm2-135m or a Hub id).")

    @property
    def k(self) -> int:
        return 1 if self.in_sample else self.folds


@dataclass
class StrengthResult:
    identity: str
    method: str
    features: str
    pairs: int
    reused: bool
    categories: dict = field(default_factory=dict)
    band: float = 0.0
    injected: dict | None = None
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    manifest: str = ""


def compute_strength(ws: Workspace, settings: StrengthSettings,
                     progress: Callable[[str, int], Callable[[int], None]] | None = None) -> StrengthResult:
    """Score every pref pair and store the strength rows (or, with inject_flips, only measure the detector)."""
    settings.check()
    ws.require()
    t0 = time.perf_counter()
    pair_ids, features_id = _identity_inputs(ws, settings)
    identity = make_identity(settings, features_id, pair_ids)
    # the ensemble's finished models' scores, so an interrupted run resumes model by model
    cache = ws.root / "strength" / identity
    if settings.inject_flips is None:
        with ws.connect() as con:
            stored = con.execute("select count(*) from strength where identity = $i",
                                 {"i": identity}).fetchall()[0][0]
        if stored == len(pair_ids):  # found before any vector is read: a rerun costs a query
            return _reused(ws, identity, settings, features_id, {"pairs": len(pair_ids)}, t0)
    x, loaded_ids, _, counts = _inputs(ws, settings, progress)
    if loaded_ids != pair_ids:  # pairs ingested meanwhile (a concurrent ingest): measure what was loaded
        pair_ids = loaded_ids
        identity = make_identity(settings, features_id, pair_ids)
        cache = ws.root / "strength" / identity
    if settings.inject_flips is not None:
        injected = inject_flips(x, settings, progress, cache.with_name(
            f"{identity}-flips{settings.inject_flips:g}-seed{settings.seed}"))
        return StrengthResult(identity, settings.method, features_id, len(pair_ids), False, injected=injected,
                              counts=counts, seconds=time.perf_counter() - t0)
    d = _scores(x, settings, progress, cache=cache)
    mean, std = stats.moments(d)
    upper = stats.band(mean, settings.ambiguous)
    cats = stats.categories(mean, upper)
    _store(ws, identity, settings, features_id, pair_ids, mean, std, cats)
    result = StrengthResult(identity, settings.method, features_id, len(pair_ids), False,
                            {c: int((cats == c).sum()) for c in stats.CATEGORIES}, upper, counts=counts,
                            seconds=time.perf_counter() - t0)
    result.manifest = str(ws.write_manifest("strength", new_id(), {
        "step": "strength", "identity": identity, "created_at": utcnow(), "settings": asdict(settings),
        "features": features_id, "pairs": len(pair_ids), "pairs_digest": _digest(pair_ids), "band": upper,
        "categories": result.categories, "counts": counts, "seconds": round(result.seconds, 3),
        "versions": _versions(),
    }))
    return result


def make_identity(settings: StrengthSettings, features_id: str, pair_ids: list[str]) -> str:
    """`<method>-<features>-M<m>-K<k>-<12 hex>`: readable where it can be, the hash covering every setting that
    changes the stored rows (the categories' band too), and the pairs measured, since the folds depend on them."""
    keyed = {"method": settings.method, "features": features_id, "models": settings.models, "folds": settings.k,
             "seed": settings.seed, "pairs": _digest(pair_ids), "ambiguous": settings.ambiguous}
    if settings.method == "probe":
        keyed["l2"] = settings.l2
    else:
        keyed.update(lr=settings.lr, batch_size=settings.batch_size, epochs=settings.epochs)
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]
    short = features_id.rsplit("/", 1)[-1]
    return f"{settings.method}-{short}-M{settings.models}-K{settings.k}-{digest}"


def inject_flips(x, settings: StrengthSettings, progress=None, cache=None) -> dict:
    """Flip a seeded `inject_flips` fraction of the labels of a scratch copy (a flip swaps chosen and rejected,
    so x -> -x), score it, and say how well -mean finds the flipped pairs: AUROC, average precision, and
    precision at k = the number flipped. The pairs that were mislabelled to begin with stay in the negatives,
    so the numbers are a floor on what the detector does on clean data."""
    n = len(x)  # x: the probe's features, or the ensemble's pairs
    k = max(1, int(round(settings.inject_flips * n)))
    if k >= n:
        raise CurateError(f"--inject-flips {settings.inject_flips} of {n} pairs flips them all: use a smaller "
                          "fraction.")
    flipped = np.zeros(n, dtype=bool)
    flipped[np.random.default_rng([settings.seed, 2]).choice(n, k, replace=False)] = True
    d = _scores(x, settings, progress, flipped, cache)
    mean, _ = stats.moments(d)
    return {"fraction": settings.inject_flips, "flipped": k, "pairs": n, "seed": settings.seed,
            "auroc": stats.auroc(flipped, -mean), "average_precision": stats.average_precision(flipped, -mean),
            "precision_at_k": stats.precision_at_k(flipped, -mean), "k": k,
            "base_rate": k / n, "in_sample": settings.in_sample}


def _identity_inputs(ws, settings) -> tuple[list[str], str]:
    """The pref pairs' ids (in pair_id order, as the inputs are loaded) and the features' or base model's
    identity: all the identity needs, without reading a vector or loading a model."""
    with ws.connect() as con:
        pair_ids = [r[0] for r in con.execute("select pair_id from pairs where role = 'pref' order by pair_id")
                    .fetchall()]
    if not pair_ids:
        from .features import NO_PAIRS

        raise CurateError(NO_PAIRS)
    if settings.method == "probe" and settings.features.startswith(lm_features.PREFIX):
        ref = lm_features.resolve(settings.features[len(lm_features.PREFIX):])
        return pair_ids, lm_features.representation_id(ref)
    if settings.method == "probe":
        from ..embedding import resolve

        return pair_ids, resolve(settings.features).model_id
    from .ensemble import base_identity

    return pair_ids, base_identity(settings)


def _inputs(ws, settings, progress):
    if settings.method == "probe" and settings.features.startswith(lm_features.PREFIX):
        feats = lm_features.from_lm(ws, settings.features[len(lm_features.PREFIX):], progress)
        return feats.x, feats.pair_ids, feats.identity, feats.counts
    if settings.method == "probe":
        from .features import from_embeddings

        feats = from_embeddings(ws, settings.features,
                                progress=(lambda total: progress("embedding responses", total)) if progress else None)
        return feats.x, feats.pair_ids, feats.identity, feats.counts
    from .ensemble import pair_inputs

    return pair_inputs(ws, settings)


def _scores(x, settings: StrengthSettings, progress, flipped: np.ndarray | None = None, cache=None) -> np.ndarray:
    """d (M, n) of every pair, as labelled (or with the `flipped` pairs' chosen and rejected swapped)."""
    if settings.method == "ensemble":
        from .ensemble import ensemble_scores

        return ensemble_scores(x, settings, progress, flipped, cache)
    if flipped is not None:
        x = np.where(flipped[:, None], -x, x)  # swapping chosen and rejected negates phi(c) - phi(r)
    n = len(x)
    if n < 2 * settings.k:
        raise CurateError(f"{n} pref pairs are too few for {settings.k} folds: ingest more, or lower --folds.")
    advance = progress("fitting heads", settings.k * settings.models) if progress else None
    probe = ProbeSettings(models=settings.models, folds=settings.k, l2=settings.l2, seed=settings.seed)
    d, _ = cross_fit(np.asarray(x), probe, advance)
    return d


def _store(ws, identity, settings, features_id, pair_ids, mean, std, cats) -> None:
    import polars as pl

    frame = pl.DataFrame({
        "pair_id": pair_ids,
        "method": [settings.method] * len(pair_ids),
        "identity": [identity] * len(pair_ids),
        "n_models": pl.Series([settings.models] * len(pair_ids), dtype=pl.Int32),
        "folds": pl.Series([settings.k] * len(pair_ids), dtype=pl.Int32),
        "mean": mean, "std": std, "percentile": stats.percentile(mean), "category": cats.tolist(),
        "created_at": [_now()] * len(pair_ids),
        "features": [features_id] * len(pair_ids),
    })
    with ws.lock("curate strength"), ws.transaction("curate strength") as tx:
        tx.remove("strength", ws.files("strength", key=identity))  # a partial earlier run of the same identity
        tx.add("strength", frame, key=identity)


def _reused(ws, identity, settings, features_id, counts, t0) -> StrengthResult:
    with ws.connect() as con:
        cats = dict(con.execute("select category, count(*) from strength where identity = $i group by 1",
                                {"i": identity}).fetchall())
        n = sum(cats.values())
    return StrengthResult(identity, settings.method, features_id, n, True,
                          {c: int(cats.get(c, 0)) for c in stats.CATEGORIES}, counts=counts,
                          seconds=time.perf_counter() - t0)


def _digest(pair_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(pair_ids)).encode()).hexdigest()[:16]


def _now():
    """UTC now without a zone: the `created_at` TIMESTAMP the other tables store."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(tzinfo=None)


def _versions() -> dict:
    from ..provenance import versions

    return versions(("numpy", "scipy", "duckdb", "polars"))
