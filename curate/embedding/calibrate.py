"""`--backend auto`: pick the embedding backend by measuring it on this machine, and remember the pick.

    from curate.embedding.calibrate import choose_backend
    from curate.embedding.model import CANDIDATES
    choice = choose_backend(ref, None, 32, texts, CANDIDATES)   # times torch, onnx, torch-bf16 on 64 texts
    choice.backend, choice.texts_per_s, choice.min_cosine, choice.measured

Why measure: ONNX Runtime was 1.89x torch on the CPU the benchmarks were tuned on and 0.81x naive torch on
an Intel Xeon with AMX (issue 15), where torch under bfloat16 autocast was the fast one. Each candidate
usable here encodes the same calibration sample at the run's batch size; its vectors must agree with
torch fp32's to cosine >= GATE on every text, and the fastest that does wins. The choice is cached as
JSON under curate.fingerprint.cache_dir() keyed by what decides it (CPU model, cores and vector flags, or
the GPU; the model's identity; device; batch size; torch and onnxruntime versions), so a later run on the
same machine skips the measurement.

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
from ..fingerprint import cache_dir

GATE = 0.999  # min cosine to torch fp32 over the sample; bf16 autocast measured 0.99992, bf16 weights 0.996
SAMPLE_SIZE = 64  # two batches of 32 of real lengths: about 2 s per candidate at 35 texts/s (2 busy cores)
REPEAT_UNDER_S = 1.0  # a pass faster than this is timed twice, best kept: short passes are the noisy ones
FORMAT = 1  # bump when what a cached choice means changes; older files are then measured again

# Tops up a job smaller than SAMPLE_SIZE, so a first run of a handful of texts does not pick (and cache)
# the backend from two tiny batches: response-like sentences, cut to a spread of lengths below.
_FILLER = (
    "Thanks for asking. The short answer is that it depends on what you already have at home, how much time "
    "you can spend on it each week, and whether anyone else in the house is willing to help. If you are just "
    "starting out, pick one small goal, write it down, and check after a month how far you got; most people "
    "find that a plan they can keep beats an ambitious one they drop. I can't help with anything that would "
    "hurt someone, but I am happy to suggest safer alternatives or point you to a professional who can. "
)


@dataclass(frozen=True)
class Candidate:
    """One embedding backend: how to load it (ref, device) -> Encoder, and why not to try it here (None: try it)."""

    load: Callable[[Any, str | None], Any]
    unusable: Callable[[Any, str | None], str | None] = lambda ref, device: None


@dataclass
class Measurement:
    """One candidate on the calibration sample: speed, agreement with torch fp32, and whether it passed."""

    backend: str
    texts_per_s: float | None = None
    min_cosine: float | None = None
    passed: bool = False
    error: str | None = None  # why it was not measured or failed to run


@dataclass
class Choice:
    backend: str
    texts_per_s: float
    min_cosine: float
    measured: bool  # True: measured in this run; False: read from the cache
    candidates: list[Measurement]
    key: dict
    sample_texts: int = 0
    created_at: str = ""
    encoder: Any = field(default=None, repr=False, compare=False)  # model.Encoder  # the winner, when measured now

    def manifest(self) -> dict:
        """What the embed manifest records about the choice."""
        return {
            "backend": self.backend,
            "source": "measured" if self.measured else "cached",
            "gate_min_cosine": GATE,
            "sample_texts": self.sample_texts,
            "chosen_at": self.created_at,
            "candidates": {m.backend: {k: v for k, v in asdict(m).items() if k != "backend"}
                           for m in self.candidates},
            "key": self.key,
        }


def cache_key(ref, device: str | None, batch_size: int) -> dict:
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
        "versions": {p: version(p) for p in ("torch", "onnxruntime", "sentence-transformers")},
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
    key = cache_key(ref, device, batch_size)
    try:
        data = json.loads(_cache_file(key).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if data.get("key") != key or data.get("backend") not in candidates:  # a digest collision or a removed backend
        return None
    data["candidates"] = [Measurement(**m) for m in data["candidates"]]
    return Choice(**{**data, "measured": False})


def calibration_sample(texts: list[str], n: int = SAMPLE_SIZE) -> list[str]:
    """n texts spread over the length distribution of `texts` (deterministic), topped up if there are fewer."""
    distinct = sorted(set(texts), key=lambda t: (len(t), t))
    if len(distinct) >= n:
        # evenly spaced ranks by length: the short, the typical and the long texts all count, as in the job
        return [distinct[round(i * (len(distinct) - 1) / (n - 1))] for i in range(n)]
    missing = n - len(distinct)
    filler = [_FILLER[: 20 + (len(_FILLER) - 20) * i // max(missing - 1, 1)] for i in range(missing)]
    return distinct + filler


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
    `recalibrate`. `candidates` and `clock` are the seams tests use for fake encoders and timings.
    """
    from ..workspace import utcnow

    key = cache_key(ref, device, batch_size)
    if cache and not recalibrate:
        hit = cached_choice(ref, device, batch_size, candidates)
        if hit is not None:
            return hit
    reference_name = next(iter(candidates))
    sample = calibration_sample(sample_texts)
    measurements: list[Measurement] = []
    encoders: dict[str, Any] = {}
    reference = None
    for name, cand in candidates.items():  # the reference first: the others are compared with its vectors
        m = Measurement(name)
        measurements.append(m)
        m.error = cand.unusable(ref, device)
        if m.error:
            continue
        try:
            enc = cand.load(ref, device)
            enc.encode(sample[:batch_size], batch_size=batch_size)  # warm-up (first-call allocations), the short texts
            t0 = clock()
            vecs = enc.encode(sample, batch_size=batch_size)
            best = clock() - t0
            if best < REPEAT_UNDER_S:
                t0 = clock()
                enc.encode(sample, batch_size=batch_size)
                best = min(best, clock() - t0)
        except Exception as e:  # a backend that fails here is not chosen; the reference failing is fatal below
            if name == reference_name:
                raise
            m.error = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            continue
        if name == reference_name:
            reference = vecs
        m.texts_per_s = round(len(sample) / max(best, 1e-9), 1)
        m.min_cosine = round(float((vecs * reference).sum(1).min()), 6)
        m.passed = m.min_cosine >= GATE
        encoders[name] = enc
    passing = [m for m in measurements if m.passed]
    best_m = max(passing, key=lambda m: m.texts_per_s)  # the reference always passes (cosine 1 with itself)
    for name in list(encoders):
        if name != best_m.backend:
            del encoders[name]  # free the losers' weights before the run
    choice = Choice(best_m.backend, best_m.texts_per_s, best_m.min_cosine, True, measurements, key,
                    sample_texts=len(sample), created_at=utcnow(), encoder=encoders[best_m.backend])
    if cache:
        data = {"backend": choice.backend, "texts_per_s": choice.texts_per_s, "min_cosine": choice.min_cosine,
                "candidates": [asdict(m) for m in measurements], "key": key, "sample_texts": choice.sample_texts,
                "created_at": choice.created_at}  # not asdict(choice): that would deep-copy the encoder
        write_text(_cache_file(key), json.dumps(data, indent=2))
    return choice
