"""`--backend auto`'s measured choice: fake encoders on a fake clock, so the rules are tested without timing noise.

The real model's calibration runs end to end in tests/test_embed.py (test_auto_records_its_measured_choice).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from curate.embedding import calibrate
from curate.embedding.calibrate import GATE, MARGIN, ROUNDS, Candidate, calibration_sample, check_forced
from curate.embedding.calibrate import choose_backend as choose
from curate.embedding.model import Encoder, ModelRef
from curate.errors import CurateError

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
    """Takes `seconds_per_text` on the fake clock (times `slowdown[i]` on its i-th call, the warm-up being call 0);
    `noise` bends its vectors away from the true ones."""

    def __init__(self, name: str, clock: Clock, seconds_per_text: float, noise: float = 0.0, slowdown=()):
        self.backend, self.clock, self.cost, self.noise = name, clock, seconds_per_text, noise
        self.slowdown, self.calls = list(slowdown), 0

    def encode(self, texts, batch_size=32, on_batch=None):
        factor = self.slowdown[self.calls] if self.calls < len(self.slowdown) else 1.0
        self.calls += 1
        self.clock.now += self.cost * factor * len(texts)
        v = true_vectors(texts)
        v[:, 0] += self.noise
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def fakes(clock: Clock, loads: list[str] | None = None, **specs) -> dict[str, Candidate]:
    """Candidates from name=(seconds_per_text, noise[, slowdown per call]); every load is appended to `loads`."""
    def loader(name, spec):
        def load(ref, device):
            if loads is not None:
                loads.append(name)
            return FakeEncoder(name, clock, *spec)
        return load

    return {name.replace("_", "-"): Candidate(loader(name.replace("_", "-"), spec), gated=name != "torch")
            for name, spec in specs.items()}


def ref(model_id: str = "fake-0123456789") -> ModelRef:
    return ModelRef("fake", Path("."), "local", None, identity={}, model_id=model_id)


TEXTS = [f"text number {i} " * (1 + i % 7) for i in range(200)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def by_name(choice) -> dict:
    return {m.backend: m for m in choice.candidates}


def test_the_fastest_passing_candidate_is_chosen():
    clock = Clock()
    c = choose(ref(), None, 16, TEXTS, clock=clock,
               candidates=fakes(clock, torch=(0.010, 0.0), onnx=(0.004, 1e-4), torch_bf16=(0.005, 1e-4)))
    assert (c.backend, c.source) == ("onnx", "measured")
    speeds = {m.backend: m.texts_per_s for m in c.candidates}
    assert speeds == {"torch": pytest.approx(100, rel=1e-3), "onnx": pytest.approx(250, rel=1e-3),
                      "torch-bf16": pytest.approx(200, rel=1e-3)}
    assert c.texts_per_s == speeds["onnx"] and all(m.passed for m in c.candidates)
    assert c.min_cosine >= GATE and by_name(c)["torch"].min_cosine == pytest.approx(1)
    # none was out after round 1, all were timed alike; after round 2 onnx's slowest round beat bf16's fastest
    # by more than the margin: settled, no round 3
    assert all(len(m.round_seconds) == 2 for m in c.candidates)
    assert c.decision == "onnx is 150% faster than torch, the incumbent"
    assert c.encoder.backend == "onnx"  # the measured winner is handed over, not loaded twice
    # the calibration's own time, on the fake clock: 3 warm-ups of the spread and 2 rounds of 64 texts each
    assert c.seconds == pytest.approx(0.019 * (calibrate.SPREAD + 2 * c.timed_texts), abs=0.01)
    m = c.manifest()
    assert m["rule"].startswith(f"fastest candidate whose vectors agree with torch fp32 to cosine >= {GATE}")
    assert "only if at least 5% faster" in m["rule"] and m["calibration_seconds"] == c.seconds
    assert m["candidates"]["onnx"]["round_seconds"] == [pytest.approx(0.256)] * 2


def test_a_candidate_below_the_cosine_gate_is_refused_even_if_faster():
    clock = Clock()
    # noise 0.2 on one coordinate of a unit vector: cosines around 0.98, well under the gate
    c = choose(ref(), None, 16, TEXTS, clock=clock,
               candidates=fakes(clock, torch=(0.010, 0.0), onnx=(0.008, 0.0), onnx_int8=(0.001, 0.2)))
    bad = by_name(c)["onnx-int8"]
    assert not bad.passed and bad.min_cosine < GATE and bad.texts_per_s > c.texts_per_s
    assert c.backend == "onnx"
    assert len(bad.round_seconds) == 1 and bad.dropped.startswith("below the gate (min cosine 0.9")
    assert c.manifest()["candidates"]["onnx-int8"]["passed"] is False


def test_a_challenger_within_the_margin_keeps_the_incumbent():
    clock = Clock()
    close = 0.010 / (1 + MARGIN / 2)  # half the margin faster: within noise
    c = choose(ref(), None, 16, TEXTS, clock=clock, cache=False,
               candidates=fakes(clock, torch=(0.010, 0.0), onnx=(close, 0.0)))
    assert c.backend == "torch" and by_name(c)["onnx"].texts_per_s > by_name(c)["torch"].texts_per_s
    assert c.decision == "onnx is only 2% faster than torch, under the 5% margin: kept torch"
    clear = 0.010 / (1 + 2 * MARGIN)
    c = choose(ref(), None, 16, TEXTS, clock=clock, cache=False,
               candidates=fakes(clock, torch=(0.010, 0.0), onnx=(clear, 0.0)))
    assert c.backend == "onnx" and c.decision == "onnx is 10% faster than torch, the incumbent"


def test_a_burst_of_load_in_one_round_does_not_flip_the_pick():
    clock = Clock()
    # torch's round 2 runs 3x slower (another process woke up); interleaved best-of-3 still sees its speed
    c = choose(ref(), None, 16, TEXTS, clock=clock, cache=False,
               candidates=fakes(clock, torch=(0.010, 0.0, [1, 1, 3, 1]), onnx=(0.0099, 0.0)))
    t = by_name(c)["torch"]
    assert t.round_seconds[1] == pytest.approx(3 * t.round_seconds[0]) and t.texts_per_s == pytest.approx(100)
    assert c.backend == "torch" and len(t.round_seconds) == ROUNDS  # within noise: every round is run


def test_a_clearly_slower_challenger_is_timed_once_but_the_incumbent_always_in_full():
    clock = Clock()
    c = choose(ref(), None, 16, TEXTS, clock=clock,
               candidates=fakes(clock, torch=(0.010, 0.0), onnx=(0.004, 0.0), torch_bf16=(0.030, 0.0)))
    m = by_name(c)
    assert len(m["torch-bf16"].round_seconds) == 1 and m["torch-bf16"].dropped == (
        "7.5x slower than the fastest after round 1")
    # 2.5x slower than onnx, but the incumbent: timed until the pick was settled (round 2)
    assert len(m["torch"].round_seconds) == 2 and m["torch"].dropped is None
    assert c.backend == "onnx"


def test_recalibrating_keeps_the_cached_pick_unless_clearly_beaten():
    clock = Clock()
    first = choose(ref(), None, 16, TEXTS, clock=clock, candidates=fakes(clock, torch=(0.010, 0.0),
                                                                         onnx=(0.008, 0.0)))
    assert first.backend == "onnx"
    # torch now measures 3% faster than onnx: within noise of the incumbent, so the pick does not flip
    again = choose(ref(), None, 16, TEXTS, clock=clock, recalibrate=True,
                   candidates=fakes(clock, torch=(0.008 / 1.03, 0.0), onnx=(0.008, 0.0)))
    assert (again.backend, again.incumbent, again.source) == ("onnx", "onnx", "measured")
    assert "margin: kept onnx" in again.decision and again.manifest()["rule"].count("incumbent (onnx)") == 1


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
    assert len(by_name(c)["torch"].round_seconds) == 1  # alone: more rounds would change nothing


def test_the_cached_choice_is_reused_and_a_new_cpu_model_or_batch_size_measures_again(cache, monkeypatch):
    clock, loads = Clock(), []
    cands = fakes(clock, loads, torch=(0.010, 0.0), onnx=(0.004, 0.0))
    first = choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert first.source == "measured" and loads == ["torch", "onnx"]
    assert len(list((cache / "backend-choice").glob("*.json"))) == 1

    again = choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert loads == ["torch", "onnx"]  # nothing loaded, nothing timed
    assert (again.backend, again.source, again.texts_per_s) == ("onnx", "cached", first.texts_per_s)
    assert again.manifest()["source"] == "cached" and again.encoder is None
    assert again.manifest()["candidates"] == first.manifest()["candidates"]
    assert (again.decision, again.seconds) == (first.decision, first.seconds)

    for changed in ({"model": "fake-9999999999"}, {"batch_size": 64}, {"recalibrate": True}):
        loads.clear()
        choose(ref(changed.get("model", "fake-0123456789")), None, changed.get("batch_size", 16), TEXTS,
               clock=clock, candidates=cands, recalibrate=changed.get("recalibrate", False))
        assert loads == ["torch", "onnx"], changed

    loads.clear()
    monkeypatch.setattr("curate.hardware.cpu_model", lambda: "Some Other CPU")
    other = choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert other.source == "measured" and loads == ["torch", "onnx"] and other.key["cpu"]["model"] == "Some Other CPU"
    monkeypatch.setattr("curate.hardware.cpu_flags", lambda: {"avx512f", "amx_bf16"})
    loads.clear()
    choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    assert loads == ["torch", "onnx"]  # same model name, other instruction sets: measured again
    loads.clear()
    choose(ref(), None, 16, TEXTS, clock=clock, candidates={**cands, **fakes(clock, loads, onnx_int8=(0.001, 0.2))})
    assert loads == ["torch", "onnx", "onnx-int8"]  # a backend added to the registry: measured again
    assert set(other.key) == {"format", "cpu", "model_id", "device", "batch_size", "candidates", "versions"}
    assert set(other.key["versions"]) == {"torch", "onnxruntime", "sentence-transformers", "transformers"}


def test_a_corrupt_cache_file_is_measured_again(cache):
    clock, loads = Clock(), []
    cands = fakes(clock, loads, torch=(0.010, 0.0))
    choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)
    (f,) = (cache / "backend-choice").glob("*.json")
    f.write_text("{not json")
    assert choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands).source == "measured"
    assert loads == ["torch", "torch"]


def test_a_forced_reduced_precision_backend_must_pass_the_gate():
    clock, loads = Clock(), []
    cands = fakes(clock, loads, torch=(0.010, 0.0), onnx_int8=(0.001, 0.2), torch_bf16=(0.005, 1e-4))
    with pytest.raises(CurateError, match=r"--backend onnx-int8: its vectors agree with torch fp32 only to "
                                          r"cosine 0\.9\d+ on this job's calibration sample, under the 0.999 gate"):
        check_forced(ref(), None, 16, TEXTS, cands, "onnx-int8", clock=clock)
    ok = check_forced(ref(), None, 16, TEXTS, cands, "torch-bf16", clock=clock)
    assert (ok.backend, ok.source, ok.encoder.backend) == ("torch-bf16", "forced", "torch-bf16")
    assert ok.manifest()["rule"].startswith("forced with --backend") and ok.min_cosine >= GATE
    assert loads == ["torch", "onnx-int8", "torch", "torch-bf16"]  # one round against a fresh reference each
    choose(ref(), None, 16, TEXTS, clock=clock, candidates=cands)  # a calibration measured both
    loads.clear()
    assert check_forced(ref(), None, 16, TEXTS, cands, "torch-bf16", clock=clock).encoder is None
    assert loads == []  # the cached calibration answered


def test_the_sample_spans_the_lengths_and_is_deterministic():
    texts = [f"w{i} " * i for i in range(1, 501)]
    s = calibration_sample(texts, 32)
    assert len(s.timed) == calibrate.TIMED_TEXTS and s == calibration_sample(list(reversed(texts)), 32)
    # two batches of neighbouring lengths, around the 25th and 75th percentiles, as the run batches them
    assert s.timed[:32] == texts[109:141] and s.timed[32:] == texts[359:391]
    assert s.spread[0] == texts[0] and s.spread[-1] == texts[-1]  # the gate sees the shortest and the longest
    assert len(calibration_sample(texts, 128).timed) == 128  # at least one batch of the run's size
    small = calibration_sample(["a", "b", "a"], 32)
    assert len(set(small.timed)) == calibrate.TIMED_TEXTS and {"a", "b"} <= set(small.texts)  # topped up
    assert len({len(t) for t in small.timed}) > 10  # of many lengths
