# paddock — build, test, demo. See README.md.
GO      ?= go
BIN     := bin/paddock
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
MODIFIED = $(shell git diff --quiet HEAD 2>/dev/null || echo true)
LDFLAGS = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.modified=$(MODIFIED)

.PHONY: all build setup test unit lab demo bench lint fuzz clean

all: build

# The Debian packages the demo and the tests need (scripts/setup): as root
# it installs what is missing, otherwise it names the command to run. On a
# machine that has everything it returns at once.
setup:
	@scripts/setup

# A static binary: the lab copies it into a busybox initramfs.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/paddock

# Everything CI runs: gofmt + vet; unit, host /dev/kvm, nested-KVM lab and
# oracle tests under the race detector; then every fuzz target briefly.
# internal/testreport shows go test's usual lines (failed tests' output,
# ok/FAIL per package), then how many tests ran, failed and were skipped
# in each layer, the fuzz count, the skipped tests with their reasons, and
# the lab tests whose L1 was booted again after the emulator failed.
# It exits with go test's status; under CI=true a skipped test fails the
# run (docs/architecture.md, "Tests").
test: setup lint
	@$(GO) build -o bin/testreport ./internal/testreport
	@bin/testreport -fuzz '$(MAKE) --no-print-directory fuzz' -- \
		$(GO) test -race -count=1 -timeout 45m -json ./...

# Run each fuzz target (func FuzzXxx in a _test.go file) for FUZZTIME and
# print each target's executions per second (scripts/fuzz), so that a
# stalled target shows. Go fuzzes one target per invocation. The budget is
# a count of executions, not a duration: Go 1.26's coordinator can report a
# spurious "context deadline exceeded" failure when a duration ends
# (golang/go#75804). FUZZMINIMIZE bounds the minimization of each new
# interesting input (Go's default, up to 60 s each, stalled FuzzOpenImage).
# The last line, "fuzz: N targets, M executions", is what make test's
# summary counts.
FUZZTIME ?= 200000x
FUZZMINIMIZE ?= 100x
fuzz:
	@GO='$(GO)' FUZZTIME='$(FUZZTIME)' FUZZMINIMIZE='$(FUZZMINIMIZE)' scripts/fuzz

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

# qcow2 engine vs qemu-img bench / qemu-img convert, side by side in one
# run on the same file system ($$PADDOCK_BENCH_DIR, default the temporary
# directory), same image layouts and request patterns; medians of 3 runs.
# ratio = paddock/qemu speed (> 1: paddock is faster).
.PHONY: bench-disk
bench-disk:
	@$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./disk/... | awk ' \
	BEGIN { printf "%-22s %14s %14s %8s\n", "benchmark", "paddock", "qemu-img", "ratio" } \
	/^Benchmark/ { name = $$1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$$/, "", name); \
		for (i = 3; i < NF; i += 2) v[$$(i + 1)] = $$i; \
		if ("paddock-MB/s" in v) printf "%-22s %9.1f MB/s %9.1f MB/s %8.2f\n", name, v["paddock-MB/s"], v["qemu-MB/s"], v["ratio"]; \
		else printf "%-22s %12.3f s %12.3f s %8.2f\n", name, v["paddock-s"], v["qemu-s"], v["ratio"]; \
		split("", v) } \
	/^(FAIL|--- FAIL|panic)/ { print; failed = 1 } \
	END { exit failed }'

# The demo guest: Debian's stock kernel (bzImage, and its ELF vmlinux for
# PVH boot) and the hello initramfs, in build/guest/, where
# configs/examples/hello.yaml looks for them. Downloads are cached
# ($$PADDOCK_CACHE, else ~/.cache/paddock).
.PHONY: guest
guest:
	$(GO) run ./cmd/paddock-lab guest --out build/guest

# The nested KVM lab tests: QEMU (TCG, emulated AMD-V) boots an L1 VM where
# kvm-amd gives a real /dev/kvm, and paddock and QEMU boot stock kernels in it.
LAB_PKGS := ./test/lab/... $(if $(wildcard test/e2e),./test/e2e/...)
lab:
	$(GO) test -count=1 -timeout 40m $(LAB_PKGS)

# Boot the hello VM: directly when this host's KVM can boot a stock kernel
# (paddock doctor), else with paddock inside the nested KVM lab. stdin is
# passed through: echo 'uname -a; poweroff -f' | make demo. paddock's exit
# status comes through (go run would turn it into 1).
demo: setup build
	@if $(BIN) doctor --quiet >/dev/null 2>&1; then \
		$(GO) run ./cmd/paddock-lab guest --out build/guest >/dev/null && $(BIN) run -f configs/examples/hello.yaml; \
	else \
		echo "this host's KVM cannot boot a stock kernel (see paddock doctor); running the demo inside the nested KVM lab" >&2; \
		$(GO) build -o bin/paddock-lab ./cmd/paddock-lab && \
		PADDOCK_LAB_PADDOCK=$(CURDIR)/$(BIN) bin/paddock-lab demo; \
	fi

clean:
	rm -rf bin build
