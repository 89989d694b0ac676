# cloudfs Makefile. Run "make" for the list of targets.
#
# Every target takes these variables from the command line
# (make test PKG=./segment/... TESTFLAGS='-run Recover -v'):
#   TAGS       build tags, comma-separated (e.g. invariants)
#   PKG        packages (default ./...)
#   TESTFLAGS  extra flags for go test
#   FUZZTIME   time per fuzz target for "make fuzz" (default 30s)
#   BENCHFLAGS flags for the benchmark harness

# bash with -e and pipefail, so that a failing command inside a pipeline or a
# multi-line recipe fails the target.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
TAGS ?=
PKG ?= ./...
TESTFLAGS ?=
FUZZTIME ?= 30s
# Short fuzz pass of "make ci": every target runs this long.
CI_FUZZTIME ?= 5s
BENCHFLAGS ?=

GOTAGS := $(if $(TAGS),-tags '$(TAGS)')
comma := ,

# Tools are installed into the project, pinned, not into go.mod.
BIN := $(CURDIR)/.bin
GOLANGCI_LINT_VERSION := v2.15.0
# The version is in the file name, so changing it above reinstalls.
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# The e2e tests need root (/dev/ublk-control, loop devices, namespaces). As
# another user, go test builds the test binaries as that user and runs only
# them through sudo (-exec), so no root-owned files land in the build cache.
E2E_EXEC ?= $(if $(filter 0,$(shell id -u)),,sudo -E)

.PHONY: help
help: ## print this list of targets
	@echo 'usage: make <target> [TAGS=...] [PKG=./...] [TESTFLAGS=...] [FUZZTIME=30s] [BENCHFLAGS=...]'
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-z0-9-]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: build
build: ## build every package
	$(GO) build $(GOTAGS) $(PKG)

.PHONY: test
test: ## run the tests, skipping the long ones (-short)
	$(GO) test -short $(GOTAGS) $(TESTFLAGS) $(PKG)

# The second run with one P schedules goroutines differently and shakes out
# other orderings (go-fuse CI runs both). -count=1 because the test cache
# does not see GOMAXPROCS and would replay the first run's results.
.PHONY: test-race
test-race: ## run the tests under the race detector, then again with GOMAXPROCS=1
	$(GO) test -race $(GOTAGS) $(TESTFLAGS) $(PKG)
	GOMAXPROCS=1 $(GO) test -race -count=1 $(GOTAGS) $(TESTFLAGS) $(PKG)

# go test -exec runs every e2e test binary through testenv's runner
# (.bin/vmrun): a binary that calls testenv.RequireUblk boots a throw-away
# QEMU VM with Debian trixie's 6.12 kernel (ublk_drv) and runs inside it, one
# boot per package, with the package directory (testdata too), the CLOUDFS_*
# variables and the files of CLOUDFS_VM_FILES; any other binary runs on the
# host as before. vmrun -prepare installs qemu and the guest's programs with
# apt and fetches the kernel into /var/cache/cloudfs-testenv, once, before go
# test starts its parallel runs. The daemon goes into the guest as
# .bin/cloudfs, and tests find it through CLOUDFS_BIN. CGO_ENABLED=0 builds
# static binaries: the guest has no C library. go doc ./testenv/vm lists the
# CLOUDFS_VM_* knobs (memory, scratch disk, more programs, verbose timings).
VMRUN := $(BIN)/vmrun
.PHONY: test-e2e
test-e2e: ## run the e2e tests (root; ublk tests in a QEMU VM; -tags e2e)
	CGO_ENABLED=0 $(GO) build -o $(VMRUN) ./testenv/vmrun
	CGO_ENABLED=0 $(GO) build -o $(BIN)/cloudfs ./cmd/cloudfs
	$(E2E_EXEC) $(VMRUN) -prepare
	CGO_ENABLED=0 CLOUDFS_BIN=$(BIN)/cloudfs \
		CLOUDFS_VM_FILES=$(BIN)/cloudfs$(if $(CLOUDFS_VM_FILES),:$(CLOUDFS_VM_FILES)) \
		$(GO) test -tags 'e2e$(if $(TAGS),$(comma)$(TAGS))' -exec '$(strip $(E2E_EXEC) $(VMRUN))' $(TESTFLAGS) $(PKG)

# Fuzz targets are found by "go test -list", which prints each package's
# matching names followed by its "ok <pkg>" line. go test -fuzz takes one
# target of one package at a time. New crashers land in testdata/fuzz and
# are committed as regression tests. -fuzzminimizetime caps the minimisation
# of each new input (60 s by default), which stalls the store-level fuzzers.
.PHONY: fuzz
fuzz: ## run every Fuzz target for FUZZTIME each
	@targets=$$($(GO) test $(GOTAGS) -list '^Fuzz' $(PKG) | \
		awk '/^Fuzz/ { names[n++] = $$1; next } /^ok / { for (i = 0; i < n; i++) print $$2, names[i]; n = 0 }'); \
	if [ -z "$$targets" ]; then echo 'fuzz: no Fuzz targets'; exit 0; fi; \
	while read -r pkg name; do \
		echo "fuzz: $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test $(GOTAGS) -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s "$$pkg"; \
	done <<< "$$targets"

# The harness lives in bench/cloudfs-bench: it runs the benchmarks and prints
# each result as a ratio against this machine's raw device (DESIGN.md §9).
.PHONY: bench
bench: ## run the benchmark harness (BENCHFLAGS are passed to it)
	@test -d bench/cloudfs-bench || { echo 'bench: the harness bench/cloudfs-bench does not exist yet' >&2; exit 1; }
	$(GO) run $(GOTAGS) ./bench/cloudfs-bench $(BENCHFLAGS)

# fio on a cloudfs volume's ublk device beside a loop device over a plain
# file (bench/ublk-bench; BENCHFLAGS are passed to it). A host without
# /dev/ublk-control runs it in testenv's VM (.bin/vmrun -mode vm, as root
# through E2E_EXEC), which emulates the CPU, so its figures say nothing about
# speed and the output says so; a host whose kernel has ublk runs the same
# binary directly. CGO_ENABLED=0: the guest has no C library. In the VM the
# program's files stay there (--json too).
.PHONY: bench-ublk
bench-ublk: ## fio on a ublk volume beside a loop device, as ratios (in the VM if the host has no ublk)
	CGO_ENABLED=0 $(GO) build -o $(VMRUN) ./testenv/vmrun
	CGO_ENABLED=0 $(GO) build -o $(BIN)/cloudfs ./cmd/cloudfs
	CGO_ENABLED=0 $(GO) build $(GOTAGS) -o $(BIN)/ublk-bench ./bench/ublk-bench
	if [ -e /dev/ublk-control ]; then \
		$(E2E_EXEC) env CLOUDFS_BIN=$(BIN)/cloudfs $(BIN)/ublk-bench $(BENCHFLAGS); \
	else \
		echo 'bench-ublk: no /dev/ublk-control on this host: running in the ublk test VM (software emulation)'; \
		$(E2E_EXEC) $(VMRUN) -prepare; \
		CLOUDFS_BIN=$(BIN)/cloudfs CLOUDFS_VM_FILES=$(BIN)/cloudfs \
			$(E2E_EXEC) $(VMRUN) -mode vm $(BIN)/ublk-bench $(BENCHFLAGS); \
	fi

.PHONY: fmt
fmt: ## check that gofmt leaves every file of the tree as it is (ignores PKG)
	@files=$$(find . -name '*.go' -not -path './.*' -not -path '*/testdata/*' -exec gofmt -l {} +); \
	if [ -n "$$files" ]; then echo "gofmt -w these files:"; echo "$$files"; exit 1; fi

.PHONY: vet
vet: ## run go vet
	$(GO) vet $(GOTAGS) $(PKG)

.PHONY: lint
lint: fmt vet $(GOLANGCI_LINT) ## gofmt, go vet and golangci-lint (.golangci.yml)
	$(GOLANGCI_LINT) run $(if $(TAGS),--build-tags '$(TAGS)') $(PKG)

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $@
	ln -sf $(notdir $@) $(BIN)/golangci-lint

.PHONY: check
check: fmt vet lint test ## fmt, vet, lint and test

# The test command of README.md, run by .ci/run on a fresh machine: the
# e2e suite too, so that the ublk tests run in the VM on every submission.
.PHONY: ci
ci: lint ## lint, the race tests, a short fuzz pass (CI_FUZZTIME per target), the e2e tests
	$(GO) test -race $(GOTAGS) $(TESTFLAGS) $(PKG)
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(CI_FUZZTIME)
	$(MAKE) --no-print-directory test-e2e

.PHONY: generate
generate: ## run go generate
	$(GO) generate $(GOTAGS) $(PKG)

.PHONY: tidy
tidy: ## go mod tidy
	$(GO) mod tidy

# -coverpkg counts code covered by any package's tests, not only its own.
.PHONY: cover
cover: ## test with coverage into cover.out and print the total
	$(GO) test -short $(GOTAGS) -coverprofile=cover.out -coverpkg=$(PKG) $(TESTFLAGS) $(PKG)
	$(GO) tool cover -func=cover.out | tail -n 1

# .bin is kept: reinstalling golangci-lint takes a minute. rm -rf .bin for that.
.PHONY: clean
clean: ## remove test binaries, coverage and benchmark output, and the test cache
	rm -f cover.out *.test
	rm -rf bench/out
	$(GO) clean -testcache
