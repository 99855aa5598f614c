# banger: disposable Linux sandboxes on microVMs.
#
#   make install   OS packages, build, install banger and bangerd
#   make test      unit, integration and end-to-end tests (root: namespaces, TAPs, VMs)

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib/banger
GO         ?= go
VERSION    ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -X banger/internal/cli.Version=$(VERSION) -X banger/internal/daemon.Version=$(VERSION)
GOFLAGS    ?=
E2E_TIMEOUT ?= 60m

# OS packages banger needs at run time and for its tests.
DEB_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap e2fsprogs nftables openssh-client iproute2 ca-certificates dnsmasq-base xfsprogs

.PHONY: all build deps install uninstall test test-unit test-integration test-e2e bench vet fmt clean

all: build

build:
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o bin/banger ./cmd/banger
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o bin/bangerd ./cmd/bangerd
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -trimpath -ldflags '-s -w' -o bin/banger-agent ./cmd/banger-agent

deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)
	@scripts/check-go.sh $(GO)
	$(GO) mod download

install: deps build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 bin/banger bin/bangerd $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(LIBDIR)
	install -m 0755 bin/banger-agent $(DESTDIR)$(LIBDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/banger $(DESTDIR)$(BINDIR)/bangerd $(DESTDIR)$(LIBDIR)/banger-agent

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) vet -tags e2e ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

test: deps vet test-unit test-integration test-e2e

test-unit:
	$(GO) test -count=1 ./...

test-integration:
	$(GO) test -count=1 -tags integration -p 1 ./internal/...

test-e2e: build
	$(GO) test -count=1 -tags e2e -timeout $(E2E_TIMEOUT) -v ./test/e2e/...

# Benchmarks recorded in docs/performance.md (root; boots real VMs).
bench: build
	$(GO) test -tags integration -run '^$$' -bench . -benchtime 20x ./internal/storage/
	$(GO) test -tags e2e -run '^$$' -bench CreateNoStart -benchtime 15x -timeout 30m ./test/e2e/
	$(GO) test -tags e2e -run '^$$' -bench BootRatio -benchtime 3x -timeout 30m ./test/e2e/
	$(GO) test -tags e2e -run '^$$' -bench Reconcile -benchtime 3x -timeout 30m ./test/e2e/
	$(GO) test -tags e2e -run '^$$' -bench WorkspacePrepare -benchtime 3x -timeout 30m ./test/e2e/
	$(GO) test -run '^$$' -bench Prepare -benchtime 10x ./internal/workspace/
	$(GO) test -tags integration -run '^$$' -bench DNSAgainstDnsmasq -benchtime 3x ./internal/dns/
	$(GO) test -tags e2e -run '^$$' -bench Ports -benchtime 30x -timeout 30m ./test/e2e/

clean:
	rm -rf bin
