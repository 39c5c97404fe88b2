"""`--backend auto`: pick the embedding backend by measuring it on this machine, and remember the pick.

    from curate.embedding.calibrate import choose_backend
    from curate.embedding.model import CANDIDATES
    choice = choose_backend(ref, None, 32, texts, CANDIDATES)   # torch, onnx, onnx-int8 (torch-bf16 where fast)
    choice.backend, choice.decision, choice.manifest()["candidates"]

Why measure: ONNX Runtime was 1.89x torch on the CPU the benchmarks were tuned on and 0.81x naive torch on
an Intel Xeon with AMX (issue 15), where torch under bfloat16 autocast was the fast one.

How, in a few seconds (issue 15):
- The sample comes from the texts about to be embedded. Timed: TIMED_TEXTS texts in batches of the run's
  batch size, each batch of neighbouring lengths taken at evenly spaced quantiles of the job's lengths,
  because the run itself batches texts sorted by length (a batch of mixed lengths would time padding).
  Warm-up: SPREAD texts from the shortest to the longest, one encode call, untimed; it pays the first-call
  allocations and its vectors join the gate.
- The gate: every candidate's vectors must agree with torch fp32's to cosine >= GATE on every sample text.
  torch fp32 is the first candidate, so its own warm-up and first timed round give the reference vectors:
  there is no separate reference pass.
- The timing is interleaved: up to ROUNDS rounds, each running every live candidate once, so a burst of
  load from another process hits all of them alike; a candidate's speed is its best round. After round 1
  a candidate below the gate, or a challenger DROP_SLOWER times slower than the fastest, is not timed
  again; the measuring stops when one candidate is left, or after round 2 when the leader's slowest
  round beats every other's fastest by MARGIN (the gap is wider than the noise).
- The pick: the fastest candidate through the gate, but it replaces the incumbent (the choice cached
  before for this key, else torch fp32) only if at least MARGIN faster. Two backends within noise of each
  other then give the same pick run after run, and the pick is never a bet on noise.

The choice is cached as JSON under curate.fingerprint.cache_dir() keyed by what decides it (cache_key),
with every measurement and the rule, so a later run on the same machine skips the measurement.

The registry of candidates (model.CANDIDATES) lives with the encoders; this module knows candidates only
as names and loaders, so model.load_encoder calls it without an import cycle.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..atomic import write_text
from ..errors import CurateError
from ..fingerprint import cache_dir

GATE = 0.999  # min cosine to torch fp32 over the sample; bf16 autocast measured 0.99992, bf16 weights 0.996
TIMED_TEXTS = 64  # per round: 2 batches of 32, about 0.5 s of MiniLM on 2 free cores
SPREAD = 4  # warm-up texts, the shortest to the longest: the gate sees both ends of the length range
ROUNDS = 3  # at most, interleaved; best of 3 is stable to a few % on a machine other processes share
MARGIN = 0.05  # a challenger must beat the incumbent by this much: torch and onnx measure within noise on some CPUs
DROP_SLOWER = 1.5  # after round 1: a candidate this much slower than the fastest cannot win, stop timing it
FORMAT = 2  # bump when what a cached choice means changes; older files are then measured again

# Tops up a job smaller than the sample, so a first run of a handful of texts does not pick (and cache)
# the backend from a few tiny texts: response-like sentences, cut to a spread of lengths below.
_FILLER = (
    "Thanks for asking. The short answer is that it depends on what you already have at home, how much time "
    "you can spend on it each week, and whether anyone else in the house is willing to help. If you are just "
    "starting out, pick one small goal, write it down, and check after a month how far you got; most people "
    "find that a plan they can keep beats an ambitious one they drop. I can't help with anything that would "
    "hurt someone, but I am happy to suggest safer alternatives or point you to a professional who can. "
)


@dataclass(frozen=True)
class Candidate:
    """One embedding backend: how to load it (ref, device) -> Encoder, and why not to try it here (None: try it).

    gated: its vectors are not the fp32 network's to rounding (reduced precision), so even when forced
    with --backend it must pass the gate before it writes vectors that share the fp32 cache key.
    """

    load: Callable[[Any, str | None], Any]
    unusable: Callable[[Any, str | None], str | None] = lambda ref, device: None
    gated: bool = False


@dataclass
class Measurement:
    """One candidate on the calibration sample: speed, agreement with torch fp32, and whether it passed."""

    backend: str
    texts_per_s: float | None = None  # best round
    min_cosine: float | None = None
    passed: bool = False
    error: str | None = None  # why it was not measured or failed to run
    round_seconds: list[float] = field(default_factory=list)  # every timed round, in order
    load_seconds: float | None = None
    dropped: str | None = None  # why it was timed for fewer rounds than the others


@dataclass
class Sample:
    timed: list[str]  # TIMED_TEXTS (at least one batch), in batches of neighbouring lengths
    spread: list[str]  # the warm-up, shortest to longest

    @property
    def texts(self) -> list[str]:
        return self.spread + self.timed


@dataclass
class Choice:
    backend: str
    source: str  # measured (now), cached (measured before on this machine), forced (--backend, gate checked)
    candidates: list[Measurement]
    key: dict
    incumbent: str = ""
    decision: str = ""
    seconds: float = 0.0  # the calibration's wall time, loads included
    gate_texts: int = 0
    timed_texts: int = 0
    created_at: str = ""
    encoder: Any = field(default=None, repr=False, compare=False)  # model.Encoder: the winner, when measured now

    def measurement(self, backend: str | None = None) -> Measurement:
        return next(m for m in self.candidates if m.backend == (backend or self.backend))

    @property
    def texts_per_s(self) -> float | None:
        return self.measurement().texts_per_s

    @property
    def min_cosine(self) -> float | None:
        return self.measurement().min_cosine

    def manifest(self) -> dict:
        """What the embed manifest records about the choice: the pick, why, and every measurement."""
        return {
            "backend": self.backend,
            "source": self.source,
            "decision": self.decision,
            "rule": rule(self.incumbent) if self.source != "forced" else FORCED_RULE,
            "gate_min_cosine": GATE,
            "calibration_seconds": self.seconds,
            "gate_texts": self.gate_texts,
            "timed_texts": self.timed_texts,
            "chosen_at": self.created_at,
            "candidates": {m.backend: {k: v for k, v in asdict(m).items() if k != "backend"}
                           for m in self.candidates},
            "key": self.key,
        }

    def data(self) -> dict:
        """The cache file's content (not asdict(self): that would deep-copy the encoder)."""
        return {k: getattr(self, k) for k in ("backend", "incumbent", "decision", "seconds", "gate_texts",
                                              "timed_texts", "created_at", "key")} | {
            "candidates": [asdict(m) for m in self.candidates]}


def rule(incumbent: str) -> str:
    return (f"fastest candidate whose vectors agree with torch fp32 to cosine >= {GATE} on every sample text; "
            f"it replaces the incumbent ({incumbent}) only if at least {MARGIN:.0%} faster; speed is the best of up "
            f"to {ROUNDS} interleaved rounds, fewer once the leader's slowest round beats every other's fastest by "
            f"the margin; a challenger {DROP_SLOWER}x slower than the fastest (or below the gate) after round 1 is "
            "not timed again")


FORCED_RULE = (f"forced with --backend; a reduced-precision backend must still agree with torch fp32 to cosine >= "
               f"{GATE} on every sample text")


def cache_key(ref, device: str | None, batch_size: int, candidates: dict[str, Candidate]) -> dict:
    """What decides the fastest backend: the hardware, the model, the batch shape, the library versions."""
    from importlib import metadata

    from ..hardware import cpu_summary

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    key = {
        "format": FORMAT,
        "cpu": cpu_summary(),  # model, cores (ONNX Runtime and torch use them all) and vector flags
        "model_id": ref.model_id,
        "device": device or "cpu",
        "batch_size": batch_size,
        "candidates": list(candidates),  # a backend added to the registry is measured, not ignored
        "versions": {p: version(p) for p in ("torch", "onnxruntime", "sentence-transformers", "transformers")},
    }
    if device not in (None, "cpu"):
        import torch

        if torch.cuda.is_available() and device.startswith("cuda"):
            key["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return key


def _cache_file(key: dict):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "backend-choice" / f"{key['model_id']}-{digest}.json"


def cached_choice(ref, device: str | None, batch_size: int, candidates: dict[str, Candidate]) -> Choice | None:
    """The choice measured before for this key (a model.ModelRef's model_id, ...), or None."""
    key = cache_key(ref, device, batch_size, candidates)
    try:
        data = json.loads(_cache_file(key).read_text(encoding="utf-8"))
        if data.get("key") != key or data.get("backend") not in candidates:  # a digest collision, a removed backend
            return None
        data["candidates"] = [Measurement(**m) for m in data["candidates"]]
        return Choice(**data, source="cached")
    except (FileNotFoundError, ValueError, TypeError, KeyError):  # absent, corrupt, or an older layout
        return None


def calibration_sample(texts: list[str], batch_size: int, n: int = TIMED_TEXTS, spread: int = SPREAD) -> Sample:
    """The timed batches and the warm-up spread, drawn from `texts` by length (deterministic), topped up if few."""
    per_batch = batch_size
    batches = max(1, n // per_batch)
    by_length = lambda t: (len(t), t)  # noqa: E731
    pool = sorted(set(texts), key=by_length)
    missing = batches * per_batch - len(pool)
    if missing > 0:  # numbered, so each filler text is distinct however many are needed
        pool = sorted(pool + [f"{i}. {_FILLER[:20 + (len(_FILLER) - 20) * i // max(missing - 1, 1)]}"
                              for i in range(missing)], key=by_length)
    timed = []
    for b in range(batches):  # neighbouring lengths around quantile (b + 0.5) / batches: a batch of the run
        start = min(max(round((b + 0.5) * len(pool) / batches - per_batch / 2), 0), len(pool) - per_batch)
        timed += pool[start:start + per_batch]
    spread_texts = [pool[round(i * (len(pool) - 1) / (spread - 1))] for i in range(spread)] if spread > 1 else []
    return Sample(timed, spread_texts)


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def measure(
    ref,
    device: str | None,
    batch_size: int,
    sample: Sample,
    candidates: dict[str, Candidate],
    *,
    rounds: int = ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
    force: str | None = None,
    incumbent: str | None = None,
) -> tuple[list[Measurement], dict[str, Any]]:
    """Every candidate's speed and agreement with the first (torch fp32), timed in interleaved rounds.

    Returns the measurements and the encoders still loaded (those that ran); `force` names a candidate to
    try even where its `unusable` says not to (--backend forced it). The incumbent (default: the first) is
    never dropped early, so one noisy first round cannot unseat it.
    """
    reference_name = next(iter(candidates))
    incumbent = incumbent or reference_name
    found = {name: Measurement(name) for name in candidates}
    encoders: dict[str, Any] = {}
    warm: dict[str, Any] = {}
    for name, cand in candidates.items():  # load and warm up; the reference first, its vectors are the gate's
        m = found[name]
        m.error = None if name == force else cand.unusable(ref, device)
        if m.error:
            continue
        try:
            t0 = clock()
            enc = cand.load(ref, device)
            m.load_seconds = round(clock() - t0, 3)
            warm[name] = enc.encode(sample.spread, batch_size=batch_size) if sample.spread else None
        except Exception as e:  # a backend that fails here is not chosen; the reference failing is fatal
            if name == reference_name:
                raise
            m.error = _error(e)
            continue
        encoders[name] = enc
    reference = None
    for r in range(rounds):
        for name, enc in list(encoders.items()):
            m = found[name]
            if m.dropped:
                continue
            try:
                t0 = clock()
                vecs = enc.encode(sample.timed, batch_size=batch_size)
                m.round_seconds.append(round(clock() - t0, 4))
            except Exception as e:
                if name == reference_name:
                    raise
                m.error, m.passed = _error(e), False
                del encoders[name]
                continue
            if r == 0:  # the vectors are the same every round: the gate needs only the first
                every = vecs if warm[name] is None else _stack(warm[name], vecs)
                if name == reference_name:
                    reference = every
                m.min_cosine = round(float((every * reference).sum(1).min()), 6)
                m.passed = m.min_cosine >= GATE
            m.texts_per_s = round(len(sample.timed) / max(min(m.round_seconds), 1e-9), 1)
        if r == 0:
            fastest = max((found[n].texts_per_s for n in encoders if found[n].passed), default=None)
            for name in encoders:
                m = found[name]
                if not m.passed:
                    m.dropped = f"below the gate (min cosine {m.min_cosine}) after round 1"
                elif name != incumbent and fastest and m.texts_per_s * DROP_SLOWER < fastest:
                    m.dropped = f"{fastest / m.texts_per_s:.1f}x slower than the fastest after round 1"
        live = [found[n] for n in encoders if not found[n].dropped]
        if len(live) <= 1 or (r >= 1 and _clear(live, incumbent)):
            break  # one candidate left, or a leader whose slowest round beats every other's fastest
    return list(found.values()), encoders


def _clear(live: list[Measurement], incumbent: str) -> bool:
    """Whether the pick is settled: its slowest round still beats every other's fastest by the margin.

    The gap is then wider than the noise seen in the leader's own rounds, and a further round is unlikely
    to change the pick; candidates within noise of each other run the full ROUNDS.
    """
    leader = next(m for m in live if m.backend == pick(live, incumbent)[0])
    return all(max(leader.round_seconds) * (1 + MARGIN) <= min(m.round_seconds) for m in live if m is not leader)


def _stack(a, b):
    import numpy as np

    return np.concatenate([a, b])


def pick(measurements: list[Measurement], incumbent: str) -> tuple[str, str]:
    """The chosen backend and why: the fastest through the gate, unless within MARGIN of the incumbent."""
    passing = [m for m in measurements if m.passed and m.texts_per_s]
    best = max(passing, key=lambda m: m.texts_per_s)  # the reference always passes (cosine 1 with itself)
    inc = next((m for m in passing if m.backend == incumbent), None)
    if inc is None or best is inc:
        return best.backend, f"{best.backend} is the fastest through the gate ({best.texts_per_s} texts/s)"
    gain = best.texts_per_s / inc.texts_per_s - 1
    if gain >= MARGIN:
        return best.backend, f"{best.backend} is {gain:.0%} faster than {inc.backend}, the incumbent"
    return inc.backend, (f"{best.backend} is only {gain:.0%} faster than {inc.backend}, under the {MARGIN:.0%} "
                         f"margin: kept {inc.backend}")


def choose_backend(
    ref,
    device: str | None,
    batch_size: int,
    sample_texts: list[str],
    candidates: dict[str, Candidate],
    *,
    clock: Callable[[], float] = time.perf_counter,
    recalibrate: bool = False,
    cache: bool = True,
) -> Choice:
    """The fastest candidate whose vectors agree with torch fp32's (min cosine >= GATE) on a sample of the texts.

    `ref` is a model.ModelRef; `candidates` maps backend names to loaders, the first being the reference
    (model.CANDIDATES: torch fp32). A cached choice for the same key is returned without measuring unless
    `recalibrate`; then the cached pick is the incumbent. `candidates` and `clock` are the seams tests use
    for fake encoders and timings.
    """
    from ..workspace import utcnow

    key = cache_key(ref, device, batch_size, candidates)
    previous = cached_choice(ref, device, batch_size, candidates) if cache else None
    if previous is not None and not recalibrate:
        return previous
    incumbent = previous.backend if previous is not None else next(iter(candidates))
    t0 = clock()
    sample = calibration_sample(sample_texts, batch_size)
    measurements, encoders = measure(ref, device, batch_size, sample, candidates, clock=clock, incumbent=incumbent)
    backend, decision = pick(measurements, incumbent)
    for name in list(encoders):
        if name != backend:
            del encoders[name]  # free the losers' weights before the run
    choice = Choice(backend, "measured", measurements, key, incumbent, decision, round(clock() - t0, 2),
                    gate_texts=len(set(sample.texts)), timed_texts=len(sample.timed), created_at=utcnow(),
                    encoder=encoders[backend])
    if cache:
        write_text(_cache_file(key), json.dumps(choice.data(), indent=2))
    return choice


def check_forced(
    ref,
    device: str | None,
    batch_size: int,
    sample_texts: list[str],
    candidates: dict[str, Candidate],
    backend: str,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Choice:
    """A forced gated backend's agreement with torch fp32 on this job's sample; raises if below the gate.

    The cached calibration answers when it measured that backend; otherwise the reference and the backend
    run one round on the sample (not cached: it is not a full calibration).
    """
    from ..workspace import utcnow

    reference_name = next(iter(candidates))
    cached = cached_choice(ref, device, batch_size, candidates)
    m = next((c for c in cached.candidates if c.backend == backend), None) if cached else None
    t0 = clock()
    if m is not None and m.min_cosine is not None:
        measurements, encoder, sample = [m], None, None
    else:
        sample = calibration_sample(sample_texts, batch_size)
        pair = {reference_name: candidates[reference_name], backend: candidates[backend]}
        measurements, encoders = measure(ref, device, batch_size, sample, pair, rounds=1, clock=clock, force=backend)
        m, encoder = measurements[1], encoders.get(backend)
    if m.error:
        raise CurateError(f"--backend {backend} failed to run here: {m.error}")
    if not m.passed:
        raise CurateError(
            f"--backend {backend}: its vectors agree with torch fp32 only to cosine {m.min_cosine} on this job's "
            f"calibration sample, under the {GATE} gate. Vectors share one cache per model whatever the backend "
            "(README, Embeddings), so a lossy backend may not write them; use --backend auto or torch."
        )
    return Choice(backend, "forced", measurements, cached.key if sample is None else
                  cache_key(ref, device, batch_size, candidates), decision=f"forced; min cosine {m.min_cosine}",
                  seconds=round(clock() - t0, 2), gate_texts=len(set(sample.texts)) if sample else 0,
                  timed_texts=len(sample.timed) if sample else 0, created_at=utcnow(), encoder=encoder)
