SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

CARGO ?= cargo
CLUSTER := e2e/cluster

.PHONY: test fmt-check clippy unit e2e cluster-up cluster-down demo crds

## test: everything CI checks
test: fmt-check clippy unit e2e

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test -p zenml-operator

## e2e: end-to-end tests against $KUBECONFIG, or else the local cluster (started if needed
## and left running, so the next run starts instantly; `make cluster-down` stops it)
e2e:
	$(CARGO) build -p zenml-operator
	if [[ -z "$${KUBECONFIG:-}" ]]; then $(CLUSTER) up; eval "$$($(CLUSTER) env)"; fi; \
	$(CARGO) test -p e2e -- --test-threads=4

cluster-up:
	$(CLUSTER) up

cluster-down:
	$(CLUSTER) down

## demo: local cluster, CRDs, operator in the background, examples applied, result shown
demo:
	e2e/demo

## crds: regenerate crds/ and the chart's copy from the Rust types
crds:
	$(CARGO) run --quiet -p zenml-operator -- crds --out-dir crds
	cp crds/*.yaml charts/zenml-operator/crds/
