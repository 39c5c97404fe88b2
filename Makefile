# Two commands do everything on a fresh machine:  make demo  |  make test
# Both create the virtual environment in .venv (once) from pyproject.toml + constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CURATE := $(VENV)/bin/curate
STAMP  := $(VENV)/.installed-stamp
DATA   ?= ../shared/data/hh-rlhf/harmless-base/test.jsonl.gz
DEMO_WS ?= workspace

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[hub,dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(CURATE) ingest $(DATA) --workspace $(DEMO_WS) --sft-fraction 0.5
	$(CURATE) info --workspace $(DEMO_WS)
	$(CURATE) sql --workspace $(DEMO_WS) "select role, count(*) as pairs, count(*) filter (where len(flags) > 0) as flagged from pairs group by role order by role"

bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .bench
