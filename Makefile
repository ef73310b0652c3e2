# hexrl — the developer's verbs. `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
EXTRAS ?= workers,sim,dev

.PHONY: install run test test-unit lint crds bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-* && touch $@

lint: install
	$(BIN)/ruff check operator workers tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

crds: install
	$(BIN)/hexrl crds generate --out crds/

test: install
	$(BIN)/pytest

run: install
	$(BIN)/hexrl --help

bench: install
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
