# hexrl — the developer's verbs. `make run` and `make test` do all set-up on a fresh machine.
#
#   make install   .venv/ from requirements/dev.lock (hexrl with the extras workers,sim,dev, pinned with
#                  hashes; vllm is GPU-only: not installed), then hexrl itself editable
#   make lock      refresh requirements/*.lock from pyproject.toml (keeps current pins; LOCK_ARGS=--upgrade
#                  or LOCK_ARGS="--upgrade-package NAME" moves them); the lock tool is pinned too
#   make images    the workers, operator and pause OCI images for the real nodes (root; cached by content)
#   make binaries  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, kwokctl
#                  built from the Go module proxy once, cached in ~/.cache/hexrl/bin (first time ~30 min)
#   make run       the demo: a local control plane with simulated GPU pools and an RLJob
#   make test      install + binaries + ruff + import contracts + mypy + every pytest marker
#   make lint      ruff + import contracts + mypy
#   make typecheck mypy over every package of the operator and the workers (config: pyproject.toml)
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
LOCK := requirements/dev.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
# The locks are resolved for the machines we run on (Linux x86_64, CPython 3.11), whatever runs `make lock`.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/lock-tool.txt)
UV_HOME := $(or $(HEXRL_CACHE_DIR),$(HOME)/.cache/hexrl)/tools/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv

.PHONY: install lock images binaries run test test-unit test-e2e lint typecheck crds crds-check chart chart-tools train-local kind-up bench clean

install: $(STAMP)

# Re-runs only when pyproject.toml or the lock changed (the stamp's name is their hash), so `make test` stays
# quick. Everything comes from the lock, pip, setuptools and wheel included, hence --no-build-isolation for
# the project itself (an isolated build would fetch an unpinned setuptools).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	@# setuptools warns that an editable install sees folders of the working directory; that is the point.
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

# The dev lock (extras workers,sim,dev + pip/setuptools/wheel) first; the image locks (workers: the extra
# `workers`; operator: the base dependencies) take its versions as constraints, so every lock agrees.
# uv keeps the pins already in an output file unless LOCK_ARGS says --upgrade.
lock: $(UV)
	$(UV) pip compile -q $(LOCK_TARGET) --generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS) \
	  pyproject.toml requirements/build.in --extra workers --extra sim --extra dev -o $(LOCK)
	$(UV) pip compile -q $(LOCK_TARGET) --generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS) \
	  pyproject.toml --extra workers -c $(LOCK) -o requirements/workers.lock
	$(UV) pip compile -q $(LOCK_TARGET) --generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS) \
	  pyproject.toml -c $(LOCK) -o requirements/operator.lock

$(UV): requirements/lock-tool.txt
	rm -rf $(UV_HOME) && $(PY) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install -q --require-hashes -r requirements/lock-tool.txt
	@touch $@

# Needs root (debootstrap, chroot, overlay mounts) and debootstrap + gcc (`.ci/run` installs them).
images: install
	$(BIN)/hexrl cluster images

binaries: install
	$(BIN)/hexrl cluster build

lint: install
	$(BIN)/ruff check operator workers tests bench
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory typecheck

# Files and flags: pyproject.toml [tool.mypy]. From a cold cache ~90 s of CPU (mostly reading torch and
# transformers); with .mypy_cache warm a few seconds.
typecheck: install
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
	$(MAKE) --no-print-directory typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-e2e: install binaries
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

# RUN_ARGS=--keep leaves the cluster and the operator up and prints how to reach them.
run: install binaries
	$(BIN)/hexrl demo --inventory manifests/clusters/demo.yaml --job manifests/examples/rljob.yaml $(RUN_ARGS)

train-local: install
	$(BIN)/hexrl run manifests/examples/rljob-tiny.yaml --checkpoint-dir "$$(mktemp -d -t hexrl-tiny-XXXXXX)"

kind-up: chart-tools
	HELM=$$($(BIN)/python -m hexrl.devcluster.tools helm | cut -d' ' -f2) deploy/kind/kind-up.sh

bench: install
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
