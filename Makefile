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
# passed through: echo 'uname -a; poweroff -f' | make demo
demo: build
	@if $(BIN) doctor --quiet >/dev/null 2>&1; then \
		$(GO) run ./cmd/paddock-lab guest --out build/guest >/dev/null && $(BIN) run -f configs/examples/hello.yaml; \
	else \
		echo "this host's KVM cannot boot a stock kernel (see paddock doctor); running the demo inside the nested KVM lab" >&2; \
		PADDOCK_LAB_PADDOCK=$(CURDIR)/$(BIN) $(GO) run ./cmd/paddock-lab demo; \
	fi

clean:
	rm -rf bin build
