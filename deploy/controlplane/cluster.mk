# Local control plane targets; included from the top-level Makefile, which defines PY.
#   make cluster-binaries [K8S_VERSION=1.34.4]   build etcd, kwok and Kubernetes into ~/.cache/gpudra
#   make cluster-up [K8S_VERSION=...] [CLUSTER_DIR=...]   start a detached local cluster
#   make cluster-down [CLUSTER_DIR=...]            stop it (and check nothing is left)
PY ?= .venv/bin/python
CLUSTER_DIR ?= $(or $(GPUDRA_CACHE),$(HOME)/.cache/gpudra)/cluster
CONTROLPLANE_DIR := $(dir $(lastword $(MAKEFILE_LIST)))

.PHONY: cluster-binaries cluster-up cluster-down cluster-status

cluster-binaries:
	$(if $(K8S_VERSION),K8S_VERSION=$(K8S_VERSION)) $(CONTROLPLANE_DIR)build.sh all

cluster-up:
	$(PY) -m gpudra_testkit.localcluster up --dir "$(CLUSTER_DIR)" $(if $(K8S_VERSION),--version $(K8S_VERSION))

cluster-down:
	$(PY) -m gpudra_testkit.localcluster down --dir "$(CLUSTER_DIR)"

cluster-status:
	$(PY) -m gpudra_testkit.localcluster status --dir "$(CLUSTER_DIR)"
