# Two commands for a new user: `make run` (install, build the seeds index if missing, serve)
# and `make test` (install, run the whole suite). Both create .venv in the repo.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch comes first; every later pip call is constrained to that version so
# nothing can swap it for the multi-GB CUDA build. PyTorch's CPU wheel index is added to your
# own pip index or mirror (pip.conf, PIP_INDEX_URL), never put in its place: pip prefers
# 2.13.0+cpu from it over PyPI's CUDA 2.13.0. TORCH_INDEX= (empty) asks only your own index
# (a mirror that carries the CPU wheel). Only torch itself is looked up there, once, without
# retries (TORCH_PIP_OPTS), so an unreachable index costs seconds; its dependencies come from
# your index in the next step. Nothing is fetched when this torch version is installed already.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIP_OPTS ?= --retries 0 --timeout 10
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
	$(BIN)/python -c "import importlib.metadata as m, sys; \
	  sys.exit(m.version('torch').split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null \
	  || $(BIN)/python -m pip install -q --no-deps $(TORCH_PIP_OPTS) \
	       $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "torch==$(TORCH_VERSION)"
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/qa index --if-missing
	$(BIN)/qa serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	bash scripts/ensure-browser.sh
	$(BIN)/python -m ruff check qa tests bench deploy
	$(BIN)/python -m pytest

bench: $(STAMP)
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python bench/run.py --quick

lint: $(STAMP)
	$(BIN)/python -m ruff check qa tests bench deploy

clean:
	rm -rf $(VENV) embeddings/*/
