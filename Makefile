SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

CARGO ?= cargo
CLUSTER := e2e/cluster

.PHONY: test fmt-check clippy unit e2e cluster-up cluster-down demo crds helm lint-chart bench

## test: everything CI checks
test: fmt-check clippy unit e2e

## LOCAL_CLUSTER (shell): unless KUBECONFIG names a cluster, start the local one (e2e/cluster up) and point KUBECONFIG
## at it. K8S_VERSION picks its Kubernetes version (default: the one e2e/k8s/go.mod pins; e2e/cluster builds any other
## once, into ~/.cache/zenml-operator/k8s/<version>). A local cluster already up with another version is an error,
## never silently tested instead (`make cluster-down` first); without K8S_VERSION the running one's version is exported,
## so the tests' `e2e/cluster restart` starts the same binaries again.
LOCAL_CLUSTER = if [[ -z "$${KUBECONFIG:-}" ]]; then \
		running=; \
		if $(CLUSTER) status >/dev/null 2>&1; then \
			running=$$(readlink e2e/.cluster/kubectl | sed -n 's|.*/k8s/\([^/]*\)/bin/kubectl$$|\1|p'); \
		fi; \
		if [[ -n "$${K8S_VERSION:-}" && -n "$$running" && "$$running" != "$${K8S_VERSION\#v}" ]]; then \
			echo "the local cluster runs Kubernetes v$$running, not v$${K8S_VERSION\#v}: make cluster-down first" >&2; \
			exit 1; \
		fi; \
		export K8S_VERSION="$${K8S_VERSION:-$$running}"; \
		$(CLUSTER) up; eval "$$($(CLUSTER) env)"; \
	fi

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --exclude e2e

## e2e: end-to-end tests against $KUBECONFIG, or else the local cluster (started if needed
## and left running, so the next run starts instantly; `make cluster-down` stops it).
## Flux's controllers and Argo CD's health evaluation (e2e/tests/gitops) are built once and cached by e2e/gitops-tools,
## like helm; FLUX_CONTROLLERS and ARGOCD_HEALTH override them.
## Every operator runs as the Helm chart's ServiceAccount (impersonated), so a permission the chart
## lacks fails a test; ZENML_E2E_IMPERSONATE=0 runs them as cluster-admin instead.
## On the local cluster, `make demo`'s operator is stopped first (and says so): the tests' own operator,
## of this build, must lead. The kpt test removes the demo's examples if only the demo made them.
## --no-fail-fast: one failing test binary does not hide the results of the others (a run takes many minutes).
## K8S_VERSION=x.y.z (`make test K8S_VERSION=1.37.2`) runs them on another Kubernetes version: see LOCAL_CLUSTER.
ZENML_E2E_IMPERSONATE ?= 1
e2e:
	$(CARGO) build -p zenml-operator -p kubectl-zenml
	export HELM="$${HELM:-$$($(CLUSTER) helm)}"; \
	export FLUX_CONTROLLERS="$${FLUX_CONTROLLERS:-$$(e2e/gitops-tools flux)}"; \
	export ARGOCD_HEALTH="$${ARGOCD_HEALTH:-$$(e2e/gitops-tools argocd)}"; \
	$(LOCAL_CLUSTER); \
	e2e/demo stop; \
	ZENML_E2E_IMPERSONATE=$(ZENML_E2E_IMPERSONATE) $(CARGO) test -p e2e --no-fail-fast -- --test-threads=4

cluster-up:
	$(CLUSTER) up

cluster-down:
	$(CLUSTER) down

## demo: local cluster, CRDs, operator in the background (as the chart's ServiceAccount), examples applied, result
## shown. `make test` after it works as well as before it: see e2e/demo.
demo:
	e2e/demo

## crds: regenerate crds/ and the chart's copy from the Rust types
crds:
	$(CARGO) run --quiet -p zenml-operator -- crds --out-dir crds
	cp crds/*.yaml charts/zenml-operator/crds/

## helm: build (once) the pinned helm into the cache and print its path
helm:
	@$(CLUSTER) helm

## lint-chart: helm lint --strict of charts/zenml-operator
lint-chart:
	"$$($(CLUSTER) helm)" lint --strict charts/zenml-operator

## bench: the benchmark of docs/benchmarks.md with N projects (default 1000) against $KUBECONFIG, or else the local
## cluster (started if needed); the operator built as shipped (profile `production`), the benchmark in release.
## BENCH_ARGS adds flags, e.g. BENCH_ARGS="--idle-seconds 60" (see `cargo run --release -p e2e --bin bench -- --help`).
N ?= 1000
bench:
	$(CARGO) build --profile production -p zenml-operator
	$(LOCAL_CLUSTER); \
	ZENML_OPERATOR_BIN="$(CURDIR)/target/production/zenml-operator" \
		$(CARGO) run --release -p e2e --bin bench -- --projects $(N) $(BENCH_ARGS)
