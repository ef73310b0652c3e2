# hexrl — the developer's verbs. `make run` and `make test` do all set-up on a fresh machine.
#
#   make install   .venv/ with hexrl and the extras workers,sim,dev (vllm is GPU-only: not installed)
#   make binaries  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, kwokctl
#                  built from the Go module proxy once, cached in ~/.cache/hexrl/bin (first time ~30 min)
#   make run       the demo: a local control plane with simulated GPU pools and an RLJob
#   make test      install + binaries + ruff + import contracts + every pytest marker
#   make lint      ruff + import contracts + mypy
#   make crds      regenerate crds/ from hexrl.api.models (a unit test fails when they drift)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
EXTRAS ?= workers,sim,dev
PYTEST_ARGS ?=

.PHONY: install binaries run test test-unit test-e2e lint crds crds-check bench clean

install: $(STAMP)

# Re-runs only when pyproject.toml changed (the stamp's name is its hash), so `make test` stays quick.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-* && touch $@

binaries: install
	$(BIN)/hexrl cluster build

lint: install
	$(BIN)/ruff check operator workers tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

crds: install
	$(BIN)/hexrl crds generate --out crds/

crds-check: install
	$(BIN)/hexrl crds generate --out crds/ --check

# pytest's own exit code is kept: 5 (no tests collected) fails the target like any other failure.
test: install binaries
	$(BIN)/ruff check operator workers tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-e2e: install binaries
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

run: install binaries
	$(BIN)/hexrl cluster demo --inventory manifests/clusters/hetero-3pool.yaml --job manifests/examples/rljob.yaml

bench: install
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
