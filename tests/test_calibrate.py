"""`--backend auto`'s measured choice: fake encoders on a fake clock, so the rules are tested without timing noise.

The real model's calibration runs end to end in tests/test_embed.py (test_auto_records_its_measured_choice).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from curate.embedding import calibrate
from curate.embedding.calibrate import GATE, Candidate, calibration_sample
from curate.embedding.calibrate import choose_backend as choose
from curate.embedding.model import Encoder, ModelRef

DIM = 8


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def true_vectors(texts: list[str]) -> np.ndarray:
    """What 'torch fp32' returns: a fixed unit vector per text."""
    rng = [np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16)).normal(size=DIM) for t in texts]
    v = np.array(rng, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class FakeEncoder(Encoder):
    """Takes `seconds_per_text` on the fake clock; `noise` bends its vectors away from the true ones."""

    def __init__(self, name: str, clock: Clock, seconds_per_text: float, noise: float = 0.0):
        self.backend, self.clock, self.cost, self.noise = name, clock, seconds_per_text, noise

    def encode(self, texts, batch_size=32, on_batch=None):
        self.clock.now += self.cost * len(texts)
        v = true_vectors(texts)
        v[:, 0] += self.noise
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def fakes(clock: Clock, loads: list[str] | None = None, **specs) -> dict[str, Candidate]:
    """Candidates from name=(seconds_per_text, noise); every load is appended to `loads`."""
    def loader(name, cost, noise):
        def load(ref, device):
            if loads is not None:
                loads.append(name)
            return FakeEncoder(name, clock, cost, noise)
        return load

    return {name.replace("_", "-"): Candidate(loader(name.replace("_", "-"), cost, noise))
            for name, (cost, noise) in specs.items()}


def ref(model_id: str = "fake-0123456789") -> ModelRef:
    return ModelRef("fake", Path("."), "local", None, identity={}, model_id=model_id)


TEXTS = [f"text number {i} " * (1 + i % 7) for i in range(200)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_fastest_passing_candidate_is_chosen():
    clock = Clock()
    c = choose(ref(), None, 16, TEXTS, clock=clock,
                       candidates=fakes(clock, torch=(0.010, 0.0), onnx=(0.004, 1e-4), torch_bf16=(0.005, 1e-4)))
    assert (c.backend, c.measured) == ("onnx", True)
    speeds = {m.backend: m.texts_per_s for m in c.candidates}
    assert speeds == {"torch": pytest.approx(100, rel=1e-3), "onnx": pytest.approx(250, rel=1e-3),
                      "torch-bf16": pytest.approx(200, rel=1e-3)}
    assert c.texts_per_s == speeds["onnx"] and all(m.passed for m in c.candidates)
    assert c.min_cosine >= GATE and next(m for m in c.candidates if m.backend == "torch").min_cosine == pytest.approx(1)
    assert c.encoder.backend == "onnx"  # the measured winner is handed over, not loaded twice


def test_a_candidate_below_the_cosine_gate_is_refused_even_if_faster():
    clock = Clock()
    # noise 0.2 on one coordinate of a unit vector: cosines around 0.98, well under the gate
    c = choose(ref(), None, 16, TEXTS, clock=clock,
                       candidates=fakes(clock, torch=(0.010, 0.0), onnx=(0.008, 0.0), torch_bf16=(0.001, 0.2)))
    bad = next(m for m in c.candidates if m.backend == "torch-bf16")
    assert not bad.passed and bad.min_cosine < GATE and bad.texts_per_s > c.texts_per_s
    assert c.backend == "onnx"
    assert c.manifest()["candidates"]["torch-bf16"]["passed"] is False


def test_unusable_and_failing_candidates_are_recorded_and_skipped():
    clock = Clock()
    cands = fakes(clock, torch=(0.010, 0.0))

    def broken(ref, device):
        raise RuntimeError("no kernel for this op")

    cands["onnx"] = Candidate(broken)
    cands["torch-bf16"] = Candidate(lambda r, d: FakeEncoder("torch-bf16", clock, 0.001), lambda r, d: "no bf16 here")
    c = choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    errors = {m.backend: m.error for m in c.candidates}
    assert c.backend == "torch"
    assert errors == {"torch": None, "onnx": "RuntimeError: no kernel for this op", "torch-bf16": "no bf16 here"}


def test_the_cached_choice_is_reused_and_a_new_cpu_model_or_batch_size_measures_again(cache, monkeypatch):
    clock, loads = Clock(), []
    cands = fakes(clock, loads, torch=(0.010, 0.0), onnx=(0.004, 0.0))
    first = choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert first.measured and loads == ["torch", "onnx"]
    assert len(list((cache / "backend-choice").glob("*.json"))) == 1

    again = choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert loads == ["torch", "onnx"]  # nothing loaded, nothing timed
    assert (again.backend, again.measured, again.texts_per_s) == ("onnx", False, first.texts_per_s)
    assert again.manifest()["source"] == "cached" and again.encoder is None
    assert [m.texts_per_s for m in again.candidates] == [m.texts_per_s for m in first.candidates]

    for changed in ({"model": "fake-9999999999"}, {"batch_size": 64}, {"recalibrate": True}):
        loads.clear()
        choose(ref(changed.get("model", "fake-0123456789")), None, changed.get("batch_size", 16), TEXTS,
                       clock=clock, candidates=cands, recalibrate=changed.get("recalibrate", False))
        assert loads == ["torch", "onnx"], changed

    loads.clear()
    monkeypatch.setattr("curate.hardware.cpu_model", lambda: "Some Other CPU")
    other = choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert other.measured and loads == ["torch", "onnx"] and other.key["cpu"]["model"] == "Some Other CPU"
    monkeypatch.setattr("curate.hardware.cpu_flags", lambda: {"avx512f", "amx_bf16"})
    loads.clear()
    choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert loads == ["torch", "onnx"]  # same model name, other instruction sets: measured again


def test_a_corrupt_cache_file_is_measured_again(cache):
    clock, loads = Clock(), []
    cands = fakes(clock, loads, torch=(0.010, 0.0))
    choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    (f,) = (cache / "backend-choice").glob("*.json")
    f.write_text("{not json")
    assert choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands).measured
    assert loads == ["torch", "torch"]


def test_the_sample_spans_the_lengths_and_is_deterministic():
    texts = [f"w{i} " * i for i in range(1, 501)]
    s = calibration_sample(texts)
    assert len(s) == calibrate.SAMPLE_SIZE and s == calibration_sample(list(reversed(texts)))
    assert s[0] == texts[0] and s[-1] == texts[-1]  # the shortest and the longest are both timed
    small = calibration_sample(["a", "b", "a"])
    assert small[:2] == ["a", "b"] and len(small) == calibrate.SAMPLE_SIZE  # topped up to a real sample
    assert len({len(t) for t in small[2:]}) > 10  # of many lengths
