# Two commands for a new user: `make run` (install, build the seeds index if missing, serve)
# and `make test` (install, run the whole suite). Both create .venv in the repo.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch comes first, from PyTorch's CPU wheel index; every later pip call is
# constrained to that version so nothing can swap it for the multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint bench clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	echo "torch==$(TORCH_VERSION)" > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --retries 2 --index-url $(TORCH_INDEX) "torch==$(TORCH_VERSION)"
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/qa index --if-missing
	$(BIN)/qa serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	bash scripts/ensure-browser.sh
	$(BIN)/python -m ruff check qa tests bench
	$(BIN)/python -m pytest

bench: $(STAMP)
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run.py --quick

lint: $(STAMP)
	$(BIN)/python -m ruff check qa tests bench

clean:
	rm -rf $(VENV) embeddings/*/
