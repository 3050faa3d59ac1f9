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

export MINIO_BIN

TEST_FLAGS ?= -race -count=1 -timeout 25m
BENCH_FLAGS ?= -benchmem -count=1 -timeout 30m

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run every function in one process: embedded NATS, local archives, API on 127.0.0.1:$PORT (8080).
	$(GO) run ./cmd/must-gather-functions

.PHONY: build
build: ## Build the binary into bin/.
	$(GO) build -trimpath -o bin/must-gather-functions ./cmd/must-gather-functions

.PHONY: tools
tools: $(MINIO_BIN) ## Install the pinned test tools (MinIO) into the cache folder.

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

.PHONY: test
test: tools ## Run every test with -race against real NATS and MinIO.
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Fuzz the request decoder for FUZZTIME (default 30s).
	$(GO) test ./functions/api -run '^$$' -fuzz FuzzDecodeRequest -fuzztime $(or $(FUZZTIME),30s)

.PHONY: lint
lint: $(GOLANGCI_BIN) ## go vet and golangci-lint.
	$(GO) vet ./...
	$(GOLANGCI_BIN) run ./...

.PHONY: bench
bench: tools ## Benchmarks: API with 10,000 records, archive streaming vs raw PutObject (each in its own process for peak RSS).
	$(GO) test -run '^$$' -bench . $(BENCH_FLAGS) ./internal/jsstore ./functions/api
	$(GO) test -run '^$$' -bench 'BenchmarkArchiveStream/pipeline' -benchtime 3x $(BENCH_FLAGS) ./internal/s3store | tee /tmp/mgf-bench-pipeline.txt
	$(GO) test -run '^$$' -bench 'BenchmarkArchiveStream/raw' -benchtime 3x $(BENCH_FLAGS) ./internal/s3store | tee /tmp/mgf-bench-raw.txt
	@awk '/^BenchmarkArchiveStream/ {for (i = 1; i <= NF; i++) if ($$(i+1) == "MB/s") mbs[FILENAME] = $$i} \
	  END {p = mbs["/tmp/mgf-bench-pipeline.txt"]; r = mbs["/tmp/mgf-bench-raw.txt"]; \
	  if (r > 0) printf "archive streaming: pipeline %.1f MB/s, raw PutObject %.1f MB/s, ratio %.2f\n", p, r, p / r}' \
	  /tmp/mgf-bench-pipeline.txt /tmp/mgf-bench-raw.txt

.PHONY: clean
clean: ## Remove build output and the local data folder of `make run`.
	rm -rf bin data
