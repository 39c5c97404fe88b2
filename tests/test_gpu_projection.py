"""The GPU benchmark's projection of one FRFT iteration (benchmarks/gpu_projection.py), the rates it reads
(benchmarks/bench_gpu.py) and the GPU its record names, on fixed numbers: the arithmetic, never the machine's time."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_gpu  # noqa: E402
import gpu_projection  # noqa: E402

SIZES = dict(pairs=1000, prompts_per_pair=0.5, texts_per_pair=3, subset=200, rm_epochs=1, ppo_steps=10, ppo_batch=8,
             branches=2)


def test_projection_adds_each_step_and_multiplies_the_branch_steps():
    rates = {"generate_prompts_per_s": 10, "embed_texts_per_s": 1000, "rm_pairs_per_s": 20, "ppo_prompts_per_s": 8}
    p = gpu_projection.project_iteration(rates, **SIZES)
    # 500 prompts / 10 + 3,000 texts / 1,000 + 200 pairs / 20 + 10 steps x 8 prompts / 8
    assert p["seconds"] == {"generate": 50.0, "embed": 3.0, "rm": 10.0, "ppo": 10.0}
    assert p["one_branch_seconds"] == 73.0
    assert p["all_branches_seconds"] == 50 + 3 + 2 * (10 + 10)
    assert p["complete"] and p["missing"] == []
    assert p["inputs"]["prompts"] == 500 and p["inputs"]["texts"] == 3000
    assert "one FRFT iteration over 1,000 pairs" in gpu_projection.describe(p)


def test_a_section_that_did_not_run_is_named_not_guessed():
    p = gpu_projection.project_iteration({"generate_prompts_per_s": 10, "embed_texts_per_s": 1000}, **SIZES)
    assert p["seconds"]["rm"] is None and p["seconds"]["ppo"] is None
    assert not p["complete"] and p["missing"] == ["rm", "ppo"]
    assert p["one_branch_seconds"] == p["all_branches_seconds"] == 53.0
    assert "without rm, ppo" in gpu_projection.describe(p)


def test_rates_come_from_the_raw_counts_and_ppo_leaves_out_its_warm_up_step():
    ppo = bench_gpu.Side("ppo", "ppo", "ppo", {"knobs": {"batch_size": 64}}, 1,
                         result={"step_s": [30.0, 8.0, 6.0, 7.0]})
    assert bench_gpu.rates(ppo) == {"seconds_per_step": 7.0, "prompts_per_s": round(64 / 7, 3)}
    gen = bench_gpu.Side("gen", "gen/m/transformers", "gen_curate", {}, 1,
                         result={"prompts": 100, "new_tokens": 5000, "generate_s": 10.0})
    assert bench_gpu.rates(gen) == {"tokens_per_s": 500.0, "prompts_per_s": 10.0}
    cut = bench_gpu.Side("embed", "embed/naive", "embed_naive", {}, 1, result={"status": "partial"})
    assert bench_gpu.rates(cut) == {"texts_per_s": None}  # killed before any batch: no rate, not zero


def test_the_gpu_is_recorded_from_nvidia_smi_without_torch(tmp_path, monkeypatch):
    from curate.hardware import gpu_summary

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771, 580.159.03'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # a CPU benchmark's parent never imported it
    assert gpu_summary() == {"devices": [{"name": "NVIDIA H200", "memory_mib": 143771}], "driver": "580.159.03"}
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert gpu_summary() is None
