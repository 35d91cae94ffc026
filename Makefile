# paddock — build, test, demo. See README.md.
GO      ?= go
BIN     := bin/paddock
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build test unit lab demo bench lint clean

all: build

# A static binary: the lab copies it into a busybox initramfs.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/paddock

# Everything CI runs: vet, unit + host /dev/kvm tests (race detector), and
# the nested-KVM lab tests.
test: lint
	$(GO) test -race -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean:
	rm -rf bin build
