# hexrl — the developer's verbs. `make run` and `make test` do all set-up on a fresh machine.
#
#   make install   .venv/ with hexrl and the extras workers,sim,dev (vllm is GPU-only: not installed)
#   make binaries  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, kwokctl
#                  built from the Go module proxy once, cached in ~/.cache/hexrl/bin (first time ~30 min)
#   make run       the demo: a local control plane with simulated GPU pools and an RLJob
#   make test      install + binaries + ruff + import contracts + every pytest marker
#   make lint      ruff + import contracts + mypy
#   make crds      regenerate crds/ from hexrl.api.models (a unit test fails when they drift), and the
#                  chart's copy in charts/hexrl/crds/ with the other generated chart files
#   make chart     build helm + ct (pinned, cached), regenerate the chart's derived files, helm lint
#   make train-local  the real asynchronous RL job on this machine (tiny model, CPU)
#   make kind-up   a kind cluster with GPU-labelled nodes and the chart installed (needs Docker; not run in CI)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
EXTRAS ?= workers,sim,dev
PYTEST_ARGS ?=

.PHONY: install binaries run test test-unit test-e2e lint crds crds-check chart chart-tools train-local kind-up bench clean

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
	$(BIN)/python scripts/gen_chart.py

crds-check: install
	$(BIN)/hexrl crds generate --out crds/ --check
	$(BIN)/python scripts/gen_chart.py --check

# helm and chart-testing built from the Go module proxy at pinned versions (cached in ~/.cache/hexrl/bin).
chart-tools: install
	$(BIN)/python -m hexrl.devcluster.tools helm ct

chart: chart-tools
	$(BIN)/python scripts/gen_chart.py
	$$($(BIN)/python -m hexrl.devcluster.tools helm | cut -d' ' -f2) lint --strict charts/hexrl --kube-version 1.34.4

# pytest's own exit code is kept: 5 (no tests collected) fails the target like any other failure.
test: install binaries chart-tools
	$(BIN)/ruff check operator workers tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-e2e: install binaries
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

# RUN_ARGS=--keep leaves the cluster and the operator up and prints how to reach them.
run: install binaries
	$(BIN)/hexrl demo --inventory manifests/clusters/hetero-3pool.yaml --job manifests/examples/rljob.yaml $(RUN_ARGS)

train-local: install
	$(BIN)/hexrl run manifests/examples/rljob-tiny.yaml

kind-up: chart-tools
	HELM=$$($(BIN)/python -m hexrl.devcluster.tools helm | cut -d' ' -f2) deploy/kind/kind-up.sh

bench: install
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
