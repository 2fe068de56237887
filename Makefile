# gpudra developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
IMAGE ?= gpudra:e2e
KIND_CLUSTER ?= gpudra
OLDEST_K8S := $(shell sed -n 's/^OLDEST_K8S_VERSION=//p' deploy/controlplane/versions.env)

.DEFAULT_GOAL := help
.PHONY: help install test test-oldest unit lint fmt proto gpu-check demo demo-real bench shape clean \
	image image-local chart-lint kind-up kind-e2e kind-down node-prereqs

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install gpudra (with its dev tools) and the test kit, editable

$(VENV)/.installed: pyproject.toml testkit/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e ./testkit
	touch $@

test: install cluster-binaries node-prereqs ## the full test suite: unit + integration (kwok and a real kubelet node)
	$(PY) -m pytest -q

test-oldest: install node-prereqs ## integration tests on the oldest supported Kubernetes (1.34)
	$(MAKE) cluster-binaries K8S_VERSION=$(OLDEST_K8S)
	GPUDRA_K8S_VERSION=$(OLDEST_K8S) $(PY) -m pytest -q -m integration tests/integration

unit: install ## unit tests only (no control plane)
	$(PY) -m pytest -q tests/unit

proto: install ## regenerate src/gpudra/_proto from proto/ (generated files are committed)
	$(PY) proto/generate.py
	@git diff --quiet -- src/gpudra/_proto || echo "src/gpudra/_proto changed: commit it"

lint: install ## ruff, formatting, mypy --strict, import-linter contracts, generated stubs current
	$(BIN)/ruff check src testkit/src tests deploy bench
	$(BIN)/ruff format --check src testkit/src tests deploy bench
	$(BIN)/mypy src testkit/src
	$(BIN)/lint-imports
	$(PY) proto/generate.py && git diff --exit-code --stat -- src/gpudra/_proto

fmt: install ## format and autofix
	$(BIN)/ruff format src testkit/src tests deploy bench
	$(BIN)/ruff check --fix src testkit/src tests deploy bench

gpu-check: install ## on a GPU machine: real NVML discovery vs nvidia-smi (read-only)
	$(PY) tests/gpu/gpu_check.py

demo: install cluster-binaries ## end to end on a local control plane with mock GPUs (no hardware)
	$(PY) deploy/demo.py

demo-real: install cluster-binaries node-prereqs ## the examples as real containers on a real kubelet + containerd node (root)
	$(PY) deploy/demo_real.py

node-prereqs: ## host packages of the real node: runc, CNI plugins, static busybox, iptables, nft (root; apt)
	deploy/realnode/prereqs.sh

bench: install cluster-binaries ## allocator vs upstream's (in process), end to end vs kube-scheduler, node daemon; writes bench/RESULTS.md and bench/*.png
	$(BIN)/pip install -q -e '.[dev,bench]'
	PYTHONUNBUFFERED=1 $(PY) -m bench.allocator.compare
	PYTHONUNBUFFERED=1 $(PY) -m bench.node.run
	PYTHONUNBUFFERED=1 $(PY) -m bench.e2e.run
	PYTHONUNBUFFERED=1 $(PY) -m bench.e2e.growth
	PYTHONUNBUFFERED=1 $(PY) -m bench.e2e.scale
	PYTHONUNBUFFERED=1 $(PY) -m bench.allocator.run
	PYTHONUNBUFFERED=1 $(PY) -m bench.preferred.run

shape: install ## the code's shape: layer contracts, lines per package, longest functions, big modules
	$(PY) -m bench.shape.run
	duplicates --repo src --most 200 2>/dev/null | head -1 || echo "(the duplicates tool is not installed here)"

image: ## build the container image $(IMAGE) from the Dockerfile (needs Docker)
	docker build -t $(IMAGE) .

image-local: install ## build the image without Docker (OCI tarball; root): what the real-node chart test installs
	$(PY) deploy/image/build.py

chart-lint: ## helm lint + template of charts/gpudra (helm built from the Go module proxy)
	H=$$(deploy/controlplane/build.sh helm | tail -1)/helm && $$H lint --strict charts/gpudra \
	  && $$H lint --strict charts/gpudra --set mock.enabled=true \
	  && $$H template gpudra charts/gpudra --set mock.enabled=true >/dev/null

kind-up: ## create the kind cluster (fake-GPU workers, CDI on); KIND_NODE_IMAGE=... (needs Docker)
	K=$$(deploy/controlplane/build.sh kind | tail -1)/kind && $$K create cluster \
	  --name $(KIND_CLUSTER) --config deploy/kind/cluster.yaml \
	  $(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE))

kind-e2e: install ## build the image, install the chart in mock mode on kind, run deploy/examples
	$(MAKE) image IMAGE=gpudra:e2e
	$(PY) deploy/kind/e2e.py --cluster $(KIND_CLUSTER)

kind-down: ## delete the kind cluster
	K=$$(deploy/controlplane/build.sh kind | tail -1)/kind && $$K delete cluster --name $(KIND_CLUSTER)

clean: ## remove build outputs (not the cached control-plane binaries)
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis src/*.egg-info testkit/src/*.egg-info

-include deploy/controlplane/cluster.mk
