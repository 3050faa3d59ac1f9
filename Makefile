# must-gather-functions. `make help` lists the targets.

SHELL := /bin/bash
GO ?= go

# Pinned tools are built from source with `go install` into a cache folder
# outside the checkout, keyed by version, so fresh clones reuse them.
ifneq ($(MGF_TOOLS_DIR),)
TOOLS_DIR := $(MGF_TOOLS_DIR)
else ifneq ($(XDG_CACHE_HOME),)
TOOLS_DIR := $(XDG_CACHE_HOME)/must-gather-functions
else
TOOLS_DIR := $(HOME)/.cache/must-gather-functions
endif
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_BIN := $(TOOLS_DIR)/minio/$(MINIO_VERSION)/minio
GOLANGCI_VERSION := v2.15.0
GOLANGCI_BIN := $(TOOLS_DIR)/golangci-lint/$(GOLANGCI_VERSION)/golangci-lint
KO_VERSION := v0.19.1
KO_BIN := $(TOOLS_DIR)/ko/$(KO_VERSION)/ko
# ko's cache; its OCI layout img/ also holds the base image tools/kobase makes.
KOCACHE ?= $(TOOLS_DIR)/ko/cache
IMAGE_PLATFORMS := linux/amd64,linux/arm64
IMAGES_DIR := bin/images

export MINIO_BIN

# The browser of the web page's test (cmd/must-gather-functions/web_e2e_test.go):
# Debian's chromium package, which `make tools` installs when it is missing.
CHROMIUM_BIN ?= $(or $(shell command -v chromium 2>/dev/null),/usr/bin/chromium)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export CHROMIUM_BIN

TEST_FLAGS ?= -race -count=1 -timeout 25m

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run every function in one process: embedded NATS, local archives, API on 127.0.0.1:$PORT (8080).
	$(GO) run ./cmd/must-gather-functions

.PHONY: build
build: ## Build the binary into bin/.
	$(GO) build -trimpath -o bin/must-gather-functions ./cmd/must-gather-functions

.PHONY: generate
generate: ## Rewrite generated text: README's settings table from the code's (go generate).
	$(GO) generate ./...

.PHONY: tools
tools: $(MINIO_BIN) kube-tools chromium ## Install the pinned test tools (MinIO, kube-apiserver, etcd, kwok) into the cache folder, and Chromium.

.PHONY: chromium
chromium: ## Install Debian's chromium for the web page's browser test, unless there is one.
	@command -v chromium >/dev/null 2>&1 || test -x "$(CHROMIUM_BIN)" || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt="$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get"; \
	  $$apt install -y -qq chromium >/dev/null 2>&1 || { $$apt update -qq && $$apt install -y -qq chromium >/dev/null; }; }

$(MINIO_BIN):
	@echo "building MinIO $(MINIO_VERSION) into $(dir $@) (first time only; takes minutes)"
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d $(dir $@).tmp.XXXXXX) && \
	  GOBIN=$$tmp GOFLAGS=-trimpath $(GO) install github.com/minio/minio@$(MINIO_VERSION) && \
	  mv $$tmp/minio $@ && rmdir $$tmp

$(GOLANGCI_BIN):
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d $(dir $@).tmp.XXXXXX) && \
	  GOBIN=$$tmp $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION) && \
	  mv $$tmp/golangci-lint $@ && rmdir $$tmp

$(KO_BIN):
	@echo "building ko $(KO_VERSION) into $(dir $@) (first time only; about a minute)"
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d $(dir $@).tmp.XXXXXX) && \
	  GOBIN=$$tmp GOFLAGS=-trimpath $(GO) install github.com/google/ko@$(KO_VERSION) && \
	  mv $$tmp/ko $@ && rmdir $$tmp

.PHONY: images
images: $(KO_BIN) ## Build the image (linux/amd64, linux/arm64) with ko into bin/images/*.tar; with KO_DOCKER_REPO set, push it instead.
	@mkdir -p $(IMAGES_DIR)
	@base=$$($(GO) run ./tools/kobase -layout $(KOCACHE)/img) && echo "base image $$base (made locally, in $(KOCACHE)/img)" && \
	if [ -n "$$KO_DOCKER_REPO" ]; then \
	  ref=$$(KOCACHE=$(KOCACHE) KO_DEFAULTBASEIMAGE=$$base $(KO_BIN) build --bare \
	    --platform=$(IMAGE_PLATFORMS) ./cmd/must-gather-functions) && \
	  echo "$$ref" > $(IMAGES_DIR)/pushed && echo "pushed $$ref (in $(IMAGES_DIR)/pushed)"; \
	else \
	  platforms=$(IMAGE_PLATFORMS); for p in $${platforms//,/ }; do \
	    KOCACHE=$(KOCACHE) KO_DEFAULTBASEIMAGE=$$base KO_DOCKER_REPO=localhost/must-gather-functions $(KO_BIN) build --bare \
	      --push=false --sbom=none --platform=$$p --tarball=$(IMAGES_DIR)/must-gather-functions-$${p//\//-}.tar \
	      ./cmd/must-gather-functions || exit 1; \
	  done; \
	  ls -l $(IMAGES_DIR)/*.tar; \
	fi

.PHONY: test
test: tools ## Run every test with -race against real NATS and MinIO, and the Go client module's.
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...
	cd client && $(GO) vet ./... && $(GO) test $(TEST_FLAGS) ./...

.PHONY: e2e
e2e: tools ## The whole system (api, runner with the Kubernetes gatherer, recorder, MinIO) against a real kube-apiserver with kwok.
	$(GO) test $(TEST_FLAGS) -run 'TestTheWholeSystemGathersFromARealAPIServer|TestAGatheringWhoseRunnerIsKilledIsCarriedOnByAnotherRunner|TestARunnerKilledAtRandomPointsOfKubernetes|TestKube' ./cmd/... ./internal/testenv/kube

.PHONY: soak
soak: tools ## Long runs: SOAK_GATHERINGS (10000) gatherings on three runner processes, 100 kills of a runner (process and Kubernetes gatherers), S3 away for 2 minutes during an upload, and NATS restarted ten times mid-flow (5 more runs).
	MGF_SOAK=$(or $(SOAK_GATHERINGS),10000) MGF_SOAK_KILLS=$(or $(SOAK_KILLS),100) \
	  $(GO) test -race -count=1 -timeout 90m -v -run 'TestSoak' ./cmd/must-gather-functions 2>&1 | grep -v 'child: '
	MGF_S3_OUTAGE=2m $(GO) test -race -count=1 -timeout 20m -v -run 'TestAnUploadRidesOutAnS3Outage' ./internal/s3store
	MGF_NATS_RESTARTS=1 $(GO) test -race -count=5 -timeout 45m -v -run 'TestNATSRestartedTenTimesMidFlow' ./cmd/must-gather-functions 2>&1 | grep -v 'child: '

.PHONY: fuzz
fuzz: ## Fuzz every decoder and validator: each Fuzz target for FUZZTIME (default 30s). Their seeds run in `make test`.
	@set -e; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  dir=$$(dirname $$file); \
	  for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
	    echo "fuzz $$dir $$target for $(or $(FUZZTIME),30s)"; \
	    $(GO) test $$dir -run '^$$' -fuzz "^$$target\$$" -fuzztime $(or $(FUZZTIME),30s); \
	  done; \
	done

.PHONY: lint
lint: $(GOLANGCI_BIN) ## go vet and golangci-lint.
	$(GO) vet ./...
	$(GOLANGCI_BIN) run ./...
	cd client && $(GO) vet ./... && $(GOLANGCI_BIN) run ./...

.PHONY: bench
bench: tools ## Benchmarks, written to docs/benchmarks.md with charts (tools/benchreport; about 15 minutes on 2 cores). BENCH_QUICK=1: a few minutes, smaller sizes.
	$(GO) run ./tools/benchreport -run $(if $(BENCH_QUICK),-quick)

.PHONY: clean
clean: ## Remove build output and the local data folder of `make run`.
	rm -rf bin data

# The Kubernetes control plane that internal/testenv/kube runs for tests:
# kube-apiserver and etcd are built from tools/kube (its own modules, so the
# project does not depend on k8s.io/kubernetes); keep the versions in step
# with tools/kube/go.mod, tools/kube/cmd/etcd/go.mod and internal/testenv/kube
# (TestKubeVersionsMatchTheBuild checks).
KUBE_VERSION := v1.37.2
KUBE_APISERVER_BIN := $(TOOLS_DIR)/kube/$(KUBE_VERSION)/kube-apiserver
# What Kubernetes' own build sets, so that /version tells v1.37.2, not v0.0.0-master.
KUBE_VERSION_PKG := k8s.io/component-base/version
KUBE_VERSION_LDFLAGS := -X $(KUBE_VERSION_PKG).gitVersion=$(KUBE_VERSION) \
  -X $(KUBE_VERSION_PKG).gitMajor=$(patsubst v%,%,$(word 1,$(subst ., ,$(KUBE_VERSION)))) \
  -X $(KUBE_VERSION_PKG).gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION))) \
  -X $(KUBE_VERSION_PKG).gitTreeState=clean
ETCD_VERSION := v3.6.16
ETCD_BIN := $(TOOLS_DIR)/etcd/$(ETCD_VERSION)/etcd
KWOK_VERSION := v0.8.0
KWOK_BIN := $(TOOLS_DIR)/kwok/$(KWOK_VERSION)/kwok

# kwok's own stage and CRD manifests, taken from its module at the same
# version, next to the binary.
KWOK_MANIFESTS := $(TOOLS_DIR)/kwok/$(KWOK_VERSION)/manifests
KWOK_MANIFEST_FILES := stage/node/fast/node-initialize.yaml stage/pod/fast/pod-ready.yaml stage/pod/fast/pod-delete.yaml \
  crd/bases/kwok.x-k8s.io_clusterexecs.yaml crd/bases/kwok.x-k8s.io_clusterlogs.yaml

export KUBE_APISERVER_BIN ETCD_BIN KWOK_BIN KWOK_MANIFESTS

.PHONY: kube-tools
kube-tools: $(KUBE_APISERVER_BIN) $(ETCD_BIN) $(KWOK_BIN) $(KWOK_MANIFESTS)/.complete ## Build kube-apiserver, etcd and kwok into the cache folder (first time ~15 min).

$(KWOK_MANIFESTS)/.complete:
	@mkdir -p $(dir $(KWOK_MANIFESTS))
	@src=$$($(GO) mod download -json sigs.k8s.io/kwok@$(KWOK_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && \
	  test -n "$$src" && tmp=$$(mktemp -d $(KWOK_MANIFESTS).tmp.XXXXXX) && \
	  for f in $(KWOK_MANIFEST_FILES); do cp "$$src/kustomize/$$f" $$tmp/ || exit 1; done && \
	  chmod u+w $$tmp/* && touch $$tmp/.complete && rm -rf $(KWOK_MANIFESTS) && mv $$tmp $(KWOK_MANIFESTS)

$(KUBE_APISERVER_BIN):
	@echo "building kube-apiserver $(KUBE_VERSION) into $(dir $@) (first time only; takes ~10 minutes)"
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d $(abspath $(dir $@))/.tmp.XXXXXX) && \
	  $(GO) -C tools/kube build -trimpath -ldflags="-s -w $(KUBE_VERSION_LDFLAGS)" -o $$tmp/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver && \
	  mv $$tmp/kube-apiserver $@ && rmdir $$tmp

$(ETCD_BIN):
	@echo "building etcd $(ETCD_VERSION) into $(dir $@) (first time only)"
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d $(abspath $(dir $@))/.tmp.XXXXXX) && \
	  $(GO) -C tools/kube/cmd/etcd build -trimpath -ldflags="-s -w" -o $$tmp/etcd . && \
	  mv $$tmp/etcd $@ && rmdir $$tmp

$(KWOK_BIN):
	@echo "building kwok $(KWOK_VERSION) into $(dir $@) (first time only; takes minutes)"
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d $(abspath $(dir $@))/.tmp.XXXXXX) && \
	  GOBIN=$$tmp $(GO) install -trimpath -ldflags="-s -w" sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION) && \
	  mv $$tmp/kwok $@ && rmdir $$tmp
