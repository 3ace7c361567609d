# Two commands: `make demo` and `make test`. Each builds .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean kenlm fairseq-ref

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first (this machine's CPU wheel), so nothing else pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xlsr demo --out demo_out

# The suite in TEST_WORKERS processes (pytest-xdist; tests handed out as workers free up): on the 2-core machine
# 340 s of tests against 611 s in one process (a fresh clone, back to back, 2026-12-07), since most of its time is
# tests starting processes (ranks, decoders, CLI runs) rather than computing.
# TEST_WORKERS=0 runs it in this process (one at a time, as before).
TEST_WORKERS ?= 2
test: $(STAMP) kenlm fairseq-ref
	OMP_NUM_THREADS=2 XLSR_FAIRSEQ_REF=tools/fairseq-ref $(BIN)/python -m pytest -m "not slow" \
		$(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist worksteal,-p no:xdist) tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow --timeout 0 tests

# KenLM's lmplz/build_binary for `xlsr lm build`, built from the PyPI source archive (once; cached in tools/).
kenlm: $(STAMP)
	bash scripts/build_kenlm.sh

# fairseq 0.12.2 and its pinned omegaconf/hydra, unpacked beside the project (never into .venv): the reference
# that tests/interop/test_fairseq_reference.py checks our fairseq import and export against.
fairseq-ref: $(STAMP)
	bash scripts/fairseq_reference.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo_out
