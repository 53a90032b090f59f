# blindspot: build, run, test and benchmark.
#
#   make run      build the agent and run it as root (starts the built-in demo
#                 workload when no other Go program is running)
#   make test     install what the tests need, then run the whole suite as root
#   make bench    measure the agent's overhead against a baseline in one run
#                 and write docs/performance.md (make bench-quick: a smoke test)
#   make soak     the long churn, overflow, fault and load tests (test/e2e
#                 TestSoak*, short versions of which run in make test)
#   make generate regenerate the committed BPF objects (installs Debian clang-19)
#   make image    build the container image (Dockerfile) with docker or podman

GO        ?= go
BPF_CLANG ?= clang-19
BIN       ?= /tmp/blindspot-build/blindspot
LISTEN    ?= :9464
IMAGE     ?= ghcr.io/blindspot-dev/blindspot
VERSION   ?= dev
# What --version and blindspot_build_info report (prometheus/common/version,
# set at link time as every Prometheus exporter's build does).
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH     ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
BUILD_USER ?= $(shell id -un 2>/dev/null || echo unknown)@$(shell hostname 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS   := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) \
	-X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildUser=$(BUILD_USER) \
	-X $(VERSION_PKG).BuildDate=$(BUILD_DATE)
CONTAINER ?= $(shell command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && echo docker || echo podman)
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)
APT       := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: all build run demo test vet generate bench bench-quick soak deps test-deps generate-deps image

all: build

deps:
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/dl/"; exit 1; }
	$(GO) mod download

build: deps
	@mkdir -p $(dir $(BIN))
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/agent

run: build
	$(SUDO) $(BIN) --web.listen-address $(LISTEN) --demo=auto

demo: build
	$(SUDO) $(BIN) --web.listen-address $(LISTEN) --demo=on

# The container image: the static binary `build` made and the host's CA
# certificates, staged as the build context (FROM scratch: nothing to pull).
# CONTAINER is docker when a Docker engine answers, else podman (Debian's
# podman or buildah build it offline). podman 4.3 (buildah 1.28) reuses a
# cached LABEL layer whatever the build arguments, so it builds without
# intermediate layers (--layers=false; nothing cached, nothing left over):
# two COPY steps, a second or two.
IMAGE_CONTEXT := $(dir $(BIN))image
IMAGE_BUILD_FLAGS ?= $(if $(filter podman buildah,$(notdir $(CONTAINER))),--layers=false)
image: build
	@command -v $(CONTAINER) >/dev/null || { echo "make image needs docker or podman (apt-get install podman)"; exit 1; }
	rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT)
	cp $(BIN) $(IMAGE_CONTEXT)/blindspot
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_CONTEXT)/ca-certificates.crt
	cp Dockerfile $(IMAGE_CONTEXT)/Dockerfile
	$(SUDO) $(CONTAINER) build $(IMAGE_BUILD_FLAGS) --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) \
		-t $(IMAGE):$(VERSION) $(IMAGE_CONTEXT)

# Debian packages the tests need (Go 1.19 to build old targets), and the
# other Go releases of the test matrix.
TEST_PACKAGES := golang-1.19-go postgresql prometheus chromium systemd util-linux podman runc
TEST_GO_RELEASES := 1.19 1.21 1.22 1.23 1.24
TEST_GO_NEXT := go1.27.3
test-deps: deps
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(APT) update -qq && $(APT) install -y -qq $$missing; fi
	@# Every Go release the tests build targets with (cached under
	@# /var/cache/blindspot; Go 1.27 through the module proxy).
	@for v in $(TEST_GO_RELEASES); do $(SUDO) bash test/toolchains/fetch.sh go $$v >/dev/null || exit 1; done
	GOTOOLCHAIN=$(TEST_GO_NEXT) $(GO) version

vet:
	$(GO) vet ./...
	GOARCH=arm64 $(GO) build -o /dev/null ./cmd/agent

test: test-deps vet
	$(SUDO) env "PATH=$$PATH" CI="$${CI:-}" $(GO) test -count=1 -timeout 80m ./...

bench: build
	$(SUDO) env "PATH=$$PATH" $(GO) run ./test/bench

bench-quick: build
	$(SUDO) env "PATH=$$PATH" $(GO) run ./test/bench -quick

# The long versions of test/e2e's TestSoak* (500 short-lived programs,
# minutes of held load, repeated agent kills); figures are in the -v log.
soak: test-deps
	$(SUDO) env "PATH=$$PATH" CI="$${CI:-}" BLINDSPOT_SOAK=1 $(GO) test -count=1 -timeout 30m -v -run 'TestSoak' ./test/e2e

# Debian's clang-19 (llvm-19): clang 14 emits code the verifier rejects for
# the user-function programs (a modified context pointer).
generate-deps:
	@command -v $(BPF_CLANG) >/dev/null && test -f /usr/include/bpf/bpf_helpers.h || { $(APT) update -qq && $(APT) install -y -qq clang-19 llvm-19 libbpf-dev; }

generate: generate-deps
	PATH=/usr/lib/llvm-19/bin:$$PATH BPF_CLANG=$(BPF_CLANG) $(GO) generate ./...
