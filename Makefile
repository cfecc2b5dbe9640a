# Tandem — build, test and run. `make help` lists the targets.

# Image names used by docker-build and deploy.
IMG_INJECTOR ?= ghcr.io/tandem-mesh/injector:latest
IMG_AGENT ?= ghcr.io/tandem-mesh/agent:latest
IMG_PROXY ?= envoyproxy/envoy:v1.40.0
# CAPTURE=cni deploys the tandem-cni DaemonSet (config/cni) and makes CNI
# mode the injector's default.
CAPTURE ?= init
CONTAINER_TOOL ?= docker

GO ?= go
GOTEST_FLAGS ?= -timeout 45m
BENCH ?= .
BENCHTIME ?= 1s

# Control-plane binaries for tests and the demo: kube-apiserver, etcd and
# kube-controller-manager, built from Go modules once (see hack/envtest).
ENVTEST_ASSETS = hack/envtest/assets.sh --with-controller-manager

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs (config/crd) and the injector ClusterRole (config/rbac) from kubebuilder markers.
	$(GO) tool controller-gen rbac:roleName=tandem-injector crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate DeepCopy methods for the API types and the Go code of the discovery protobuf.
	$(GO) tool controller-gen object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	@command -v protoc >/dev/null || { echo "protoc missing: installing Debian's protobuf-compiler"; \
	  { apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null; } || { echo "install protoc (package protobuf-compiler)"; exit 1; }; }
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	protoc --plugin=protoc-gen-go=bin/protoc-gen-go --go_out=. --go_opt=paths=source_relative internal/discovery/discoverypb/*.proto

# The Gateway API CRDs of config/gateway-api, from the module go.mod pins.
GATEWAY_API_CRDS = httproutes grpcroutes

.PHONY: gateway-api-crds
gateway-api-crds: ## Copy the standard-channel HTTPRoute and GRPCRoute CRDs of the pinned sigs.k8s.io/gateway-api into config/gateway-api.
	@dir=$$($(GO) list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api); \
	  for k in $(GATEWAY_API_CRDS); do \
	    install -m 0644 "$$dir/config/crd/standard/gateway.networking.k8s.io_$$k.yaml" config/gateway-api/; \
	  done

.PHONY: fmt
fmt: ## Run gofmt on the project's Go files.
	gofmt -l -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: policy
policy: ## Generate the admission policies of config/policy from the templates and the injector's defaults.
	$(GO) run ./cmd/injector policy > config/policy/policies.yaml

.PHONY: charts
charts: manifests policy ## Generate the charts' files made from config/ and the injector (CRDs, the injector's role, the admission policies) and docs/helm.md's value tables.
	$(GO) run ./hack/charts generate

.PHONY: verify
verify: manifests generate policy gateway-api-crds charts ## Fail when generated files or formatting are out of date.
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on: $$out"; exit 1; fi
	@if ! git diff --quiet -- api config internal/discovery/discoverypb charts docs/helm.md || \
	    [ -n "$$(git ls-files --others --exclude-standard -- charts config)" ]; then \
	  echo "generated files are stale; run 'make manifests generate policy gateway-api-crds charts' and commit:"; \
	  git status --short -- api config internal/discovery/discoverypb charts docs/helm.md; exit 1; fi

.PHONY: envtest
envtest: ## Prepare kube-apiserver, etcd and kube-controller-manager (built from Go modules when offline).
	@$(ENVTEST_ASSETS) >/dev/null

.PHONY: test
test: verify vet envtest ## Run all tests against a real API server.
	KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS))" $(GO) test $(GOTEST_FLAGS) ./...

.PHONY: bench
bench: envtest ## Run the benchmarks with memory statistics.
	KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS))" $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./...

.PHONY: scale
scale: ## Measure discovery with real agent processes (API-server cost, propagation, memory, restart); takes minutes.
	KUBEBUILDER_ASSETS="$$(hack/envtest/assets.sh)" $(GO) run ./hack/scale $(SCALE_FLAGS)

.PHONY: balance
balance: ## Measure balancing with one slow server (calls per server, p50/p99/p99.9) without Tandem and with it; needs root or user namespaces, takes minutes; writes bin/balance.json.
	@for b in greeter-server:./examples/greeter/cmd/greeter-server balance:./hack/balance; do \
	  CGO_ENABLED=0 GO="$(GO)" hack/gobuild.sh "bin/$${b%%:*}" -trimpath -o "bin/$${b%%:*}" "$${b#*:}"; \
	done
	@bin/balance --bin-dir bin --json bin/balance.json $(BALANCE_FLAGS)

.PHONY: admission-latency
admission-latency: envtest ## Pod-creation latency through the webhook and through the admission policies, side by side (500 pods each).
	KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS))" $(GO) run ./hack/admission-latency

##@ Helm

# Charts' version for helm-package: the project's (e.g. 0.2.0); empty keeps Chart.yaml's.
VERSION ?=
CHARTS_DIR ?= bin/charts

.PHONY: helm-lint
helm-lint: ## helm lint --strict of the three charts (Helm's Go packages, no helm binary), with each values file they ship.
	$(GO) run ./hack/charts lint

.PHONY: helm-package
helm-package: ## Package the charts into bin/charts (VERSION=0.2.0 sets their version, and v0.2.0 as appVersion, the images' default tag).
	$(GO) run ./hack/charts package $(CHARTS_DIR) $(VERSION)

##@ Build

.PHONY: build
build: ## Build bin/injector, bin/agent and bin/kubectl-tandem (the kubectl plugin: put it on PATH for `kubectl tandem`).
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/injector ./cmd/injector
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/agent ./cmd/agent
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/kubectl-tandem ./cmd/kubectl-tandem

# How make demo injects pods: webhook (the injector's webhook) or policy (admission policies).
INJECTION ?= webhook

.PHONY: demo
demo: ## Run the seed experiment: real control plane, injector, agent and gRPC greeter, without and with Tandem (INJECTION=webhook|policy).
	@echo "Preparing kube-apiserver, etcd and kube-controller-manager (a first run builds them: several minutes)..."
	@$(ENVTEST_ASSETS) >/dev/null
	@echo "Building the injector, the agent, the greeter client and the demo (a first build compiles some 1200 packages: minutes on 2 cores)..."
	@for b in injector:./cmd/injector agent:./cmd/agent greeter-client:./examples/greeter/cmd/greeter-client demo:./hack/demo; do \
	  CGO_ENABLED=0 GO="$(GO)" hack/gobuild.sh "bin/$${b%%:*}" -trimpath -o "bin/$${b%%:*}" "$${b#*:}"; \
	done
	@echo "Injection: $(INJECTION) (make demo INJECTION=webhook|policy)"
	@KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS))" bin/demo --bin-dir bin --injection $(INJECTION)

.PHONY: docker-build
docker-build: ## Build the injector and agent images (IMG_INJECTOR, IMG_AGENT).
	$(CONTAINER_TOOL) build --target injector -t $(IMG_INJECTOR) .
	$(CONTAINER_TOOL) build --target agent -t $(IMG_AGENT) .

.PHONY: docker-push
docker-push: ## Push the injector and agent images.
	$(CONTAINER_TOOL) push $(IMG_INJECTOR)
	$(CONTAINER_TOOL) push $(IMG_AGENT)

##@ Deployment

# deploy writes an overlay that sets the three images, of config/default
# (MODE=default: the webhook) or config/policy (MODE=policy: admission
# policies, Kubernetes 1.36+, no webhook).
DEPLOY_DIR = bin/deploy
MODE ?= default

.PHONY: deploy
deploy: ## Install Tandem into the cluster of the current kubeconfig (needs kubectl).
	hack/deploy-overlay.sh $(DEPLOY_DIR) $(IMG_INJECTOR) $(IMG_AGENT) $(IMG_PROXY) $(MODE) $(CAPTURE)
	kubectl apply --server-side -k $(DEPLOY_DIR)

.PHONY: undeploy
undeploy: ## Remove Tandem from the cluster of the current kubeconfig.
	kubectl delete --ignore-not-found -k config/$(MODE)
	kubectl delete --ignore-not-found -k config/cni
	kubectl delete --ignore-not-found clusterrolebindings -l app.kubernetes.io/managed-by=tandem-injector
