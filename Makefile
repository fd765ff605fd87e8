# enclave-signer. `make dev` runs the local stack, `make test` the tests.
GO        ?= go
BIN       ?= bin
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME  ?= 20s
HTTP      ?= 127.0.0.1:8080
DIR       ?= .signer-dev

# Reproducible builds: the same source gives the same signerd bytes (and so
# the same PCR0) on every machine. No cgo, no paths (-trimpath), no VCS stamp,
# no build id, no timestamps; and nothing taken from the environment that
# changes the output: the toolchain is go.mod's `toolchain` line (downloaded
# through the module proxy if the local go is another version), GOFLAGS and
# GOEXPERIMENT are cleared, the CPU feature levels are pinned to each
# architecture's baseline. docs/image.md explains each setting.
GO_TOOLCHAIN := $(shell sed -n 's/^toolchain //p' go.mod)
PINNED_GO  = $(if $(GO_TOOLCHAIN),GOTOOLCHAIN=$(GO_TOOLCHAIN),$(error could not read the toolchain line of go.mod: the build would not be pinned))
REPRO_ENV  = CGO_ENABLED=0 GOFLAGS= GOEXPERIMENT= GOFIPS140=off GOAMD64=v1 GOARM64=v8.0 $(PINNED_GO)
GOBUILD    = $(REPRO_ENV) $(GO) build -trimpath -buildvcs=false -ldflags='-s -w -buildid='

# The enclave image. Nitro parents are x86_64 (the default here) or arm64
# (Graviton: ENCLAVE_GOARCH=arm64); the enclave runs the parent's
# architecture, and each architecture has its own PCR0.
ENCLAVE_GOARCH ?= amd64
ENCLAVE_BIN    := $(BIN)/linux_$(ENCLAVE_GOARCH)/signerd
IMAGE          ?= enclave-signer:latest
IMAGE_TAR      ?= $(BIN)/enclave-signer-$(ENCLAVE_GOARCH).tar
# The shim's image (Dockerfile.shim): signer, for the parent instance,
# which has the enclave's architecture.
SHIM_BIN       := $(BIN)/linux_$(ENCLAVE_GOARCH)/signer
SHIM_IMAGE     ?= enclave-signer-shim:latest
SHIM_IMAGE_TAR ?= $(BIN)/enclave-signer-shim-$(ENCLAVE_GOARCH).tar
# buildah builds the image without a daemon and without a registry (FROM
# scratch pulls nothing). BUILDAH_FLAGS are global flags, e.g.
# `--root DIR --runroot DIR` for a private store; vfs needs no kernel
# overlay support (set BUILDAH_DRIVER=overlay to share an overlay store).
BUILDAH        ?= buildah
BUILDAH_DRIVER ?= vfs
BUILDAH_FLAGS  ?=
BUILDAH_CMD    := $(BUILDAH) $(BUILDAH_FLAGS) --storage-driver $(BUILDAH_DRIVER)
# Every flag that fixes the image's bytes: OCI format (the docker format
# stores a random container id and hostname), creation time 0 for the
# image and its files, no buildah version label, no history, no cached
# layers, no pull.
BUD_FLAGS := --format oci --timestamp 0 --identity-label=false --omit-history \
	--layers=false --pull=never --isolation chroot --os linux --arch $(ENCLAVE_GOARCH)

# The pins (docs/image.md#pins): the KMS key ARNs an identity may be sealed
# under, and the keyring signers (with their threshold), comma-separated.
# They become the image's ENV, which PCR0 measures; empty means unpinned.
KMS_KEYS          ?=
KEYRING_SIGNERS   ?=
KEYRING_THRESHOLD ?=
# REQUIRE_AUTH=true: signerd refuses keyrings that declare no clients.
REQUIRE_AUTH      ?=
# AUDIT_OVERFLOW=drop: a full audit buffer records a gap entry and signing
# goes on (docs/audit.md); empty (the default) stops signing until drained.
AUDIT_OVERFLOW    ?=
PIN_ARGS = --build-arg 'KMS_KEYS=$(KMS_KEYS)' --build-arg 'KEYRING_SIGNERS=$(KEYRING_SIGNERS)' \
	--build-arg 'KEYRING_THRESHOLD=$(KEYRING_THRESHOLD)' --build-arg 'REQUIRE_AUTH=$(REQUIRE_AUTH)' \
	--build-arg 'AUDIT_OVERFLOW=$(AUDIT_OVERFLOW)'

# On the parent instance (nitro-cli and Docker; not available in CI).
NITRO_CLI      ?= nitro-cli
EIF            ?= enclave-signer.eif
MEASUREMENTS   ?= measurements.json
ENCLAVE_NAME   ?= enclave-signer
ENCLAVE_CPUS   ?= 2
ENCLAVE_MEMORY ?= 512
# The shim's `enclave` address names this CID (vsock://16:5005); empty lets
# the driver pick one.
ENCLAVE_CID    ?= 16
RUN_FLAGS = --eif-path $(EIF) --cpu-count $(ENCLAVE_CPUS) --memory $(ENCLAVE_MEMORY) \
	$(if $(ENCLAVE_CID),--enclave-cid $(ENCLAVE_CID)) --enclave-name $(ENCLAVE_NAME)

# make policy: the key policy from the measurements (several files admit
# several images: POLICY_MEASUREMENTS="blue.json green.json").
SIGNER              ?= $(BIN)/signer
POLICY              ?= key-policy.json
POLICY_MEASUREMENTS ?= $(MEASUREMENTS)
ENCLAVE_ROLE        ?=
ENCRYPT_ROLE        ?=
ADMIN_ROLE          ?=
POLICY_FLAGS        ?=

.PHONY: all build test check-fmt check-tidy vet staticcheck fuzz bench dev clean \
	enclave-signerd image docker-image signer shim-signer image-shim images eif run-enclave run-debug stop policy

all: build

build:
	$(GOBUILD) -o $(BIN)/signerd ./enclave
	$(GOBUILD) -o $(BIN)/signer ./host

vet:
	$(GO) vet ./...
	GOOS=windows $(GO) build ./pkg/... ./internal/... ./host ./enclave

staticcheck:
	$(GO) run $(STATICCHECK) ./...

# Gates make test runs first; neither changes the tree. check-fmt: every Go
# file as gofmt (of the go in use) writes it. check-tidy: go.mod and go.sum
# as go mod tidy leaves them (go mod tidy -diff prints what it would change
# and fails).
check-fmt:
	@files=$$("$$($(GO) env GOROOT)/bin/gofmt" -l .) || exit 1; \
	 if [ -n "$$files" ]; then \
	   echo "make check-fmt: these Go files are not gofmt-formatted (run gofmt -w on them):" >&2; \
	   echo "$$files" | sed 's/^/  /' >&2; exit 1; \
	 fi

check-tidy:
	@$(GO) mod tidy -diff || { echo "make check-tidy: go mod tidy would change go.mod or go.sum as shown above, or could not run: run go mod tidy and commit the result" >&2; exit 1; }

# The seed corpora of every fuzz target run as part of go test.
test: check-fmt check-tidy vet staticcheck
	$(GO) test -race -count=1 ./...

# Runs each fuzz target for FUZZTIME (CI: 10s each, after make test). The
# targets are found in the sources, so no package is compiled just to list
# them; a crash stops the run and leaves its input in the package's
# testdata/fuzz, to commit as a seed with the fix. Fuzzing runs on
# FUZZ_TOOLCHAIN (fetched through the module proxy, about 76 MB once):
# Go 1.26's fuzzing coordinator can fail a run that found nothing with
# "context deadline exceeded" when -fuzztime ends while a worker is busy
# (go.dev/issue/75804, fixed in Go 1.27), which a loaded CI machine hits.
# Builds and tests stay on go.mod's toolchain.
FUZZ_TOOLCHAIN ?= go1.27.3
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$dir/*_test.go); do \
	    echo "== $$dir $$f"; GOTOOLCHAIN=$(FUZZ_TOOLCHAIN) $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$dir; \
	  done; done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The whole stack on one machine (no AWS, no Nitro): make dev HTTP=ADDR DIR=DIR
dev: build
	$(BIN)/signer dev --dir $(DIR) --http $(HTTP)

clean:
	rm -rf $(BIN)

# signerd for the enclave: linux/ENCLAVE_GOARCH whatever the build machine.
# On linux/amd64 it is byte for byte the bin/signerd of `make build`.
enclave-signerd:
	GOOS=linux GOARCH=$(ENCLAVE_GOARCH) $(GOBUILD) -o $(ENCLAVE_BIN) ./enclave

# The enclave image, Dockerfile.enclave, as IMAGE in buildah's store and as
# a docker-archive (IMAGE_TAR, for `docker load` on another machine). Its
# id, the digest of its config, is the same on every machine.
image: enclave-signerd
	$(BUILDAH_CMD) bud $(BUD_FLAGS) --build-arg SIGNERD=$(ENCLAVE_BIN) $(PIN_ARGS) \
		--iidfile $(BIN)/image-id -f Dockerfile.enclave -t $(IMAGE) .
	rm -f $(IMAGE_TAR)
	$(BUILDAH_CMD) push $(IMAGE) docker-archive:$(IMAGE_TAR):$(IMAGE)
	@echo "image $(IMAGE): $$(cat $(BIN)/image-id), archive $(IMAGE_TAR), KMS_KEYS='$(KMS_KEYS)'"
	$(if $(strip $(KMS_KEYS)),,@echo "make image: warning: no KMS_KEYS: this image's signerd accepts an identity sealed under any KMS key, so root on the parent can provision keys of its own choosing (docs/image.md#pins)" >&2)

# signer for the shim's image: linux/ENCLAVE_GOARCH whatever the build
# machine. On linux/amd64 it is byte for byte the bin/signer of make build.
shim-signer:
	GOOS=linux GOARCH=$(ENCLAVE_GOARCH) $(GOBUILD) -o $(SHIM_BIN) ./host

# The shim's image, Dockerfile.shim, as SHIM_IMAGE in buildah's store and as
# a docker-archive (SHIM_IMAGE_TAR), with the enclave image's flags: its id
# is the same on every machine. Push it to a registry with buildah push
# (docs/image.md#the-shim-image).
image-shim: shim-signer
	$(BUILDAH_CMD) bud $(BUD_FLAGS) --build-arg SIGNER=$(SHIM_BIN) \
		--iidfile $(BIN)/shim-image-id -f Dockerfile.shim -t $(SHIM_IMAGE) .
	rm -f $(SHIM_IMAGE_TAR)
	$(BUILDAH_CMD) push $(SHIM_IMAGE) docker-archive:$(SHIM_IMAGE_TAR):$(SHIM_IMAGE)
	@echo "image $(SHIM_IMAGE): $$(cat $(BIN)/shim-image-id), archive $(SHIM_IMAGE_TAR)"

# Every image built here: the enclave's and the shim's. (The launcher image,
# with nitro-cli and vsock-proxy, is made on a parent instance from Amazon
# Linux's packages: docs/image.md#the-launcher-image.)
images: image image-shim

# nitro-cli build-enclave reads images from the Docker daemon.
docker-image:
	$(BUILDAH_CMD) push $(IMAGE) docker-daemon:$(IMAGE)

# signer alone, for make eif (make build builds it too).
signer:
	$(GOBUILD) -o $(BIN)/signer ./host

# The EIF and its measurements: nitro-cli prints progress on stderr and the
# measurements JSON on stdout, to which signer adds the image's id and pins
# (read back from IMAGE_TAR), so that signer policy update knows whether
# the image it admits is pinned.
eif: image docker-image signer
	$(NITRO_CLI) build-enclave --docker-uri $(IMAGE) --output-file $(EIF) > $(MEASUREMENTS).tmp
	$(SIGNER) image pins --measurements $(MEASUREMENTS).tmp $(IMAGE_TAR) > $(MEASUREMENTS).pins.tmp
	rm $(MEASUREMENTS).tmp
	mv $(MEASUREMENTS).pins.tmp $(MEASUREMENTS)
	@cat $(MEASUREMENTS)

run-enclave:
	$(NITRO_CLI) run-enclave $(RUN_FLAGS)

# Debug mode: the console is readable, and PCR0, 1 and 2 attest as zeros,
# so only a key policy rendered with --debug lets this enclave unseal.
run-debug:
	$(NITRO_CLI) run-enclave $(RUN_FLAGS) --debug-mode
	$(NITRO_CLI) console --enclave-name $(ENCLAVE_NAME)

stop:
	$(NITRO_CLI) terminate-enclave --enclave-name $(ENCLAVE_NAME)

policy:
	@missing=""; \
	 for v in ENCLAVE_ROLE=$(ENCLAVE_ROLE) ENCRYPT_ROLE=$(ENCRYPT_ROLE) ADMIN_ROLE=$(ADMIN_ROLE); do \
	   case $$v in *=) missing="$$missing $${v%=}";; esac; \
	 done; \
	 if [ -n "$$missing" ]; then \
	   echo "make policy: set$$missing (role ARNs, e.g. ENCLAVE_ROLE=arn:aws:iam::111122223333:role/NitroEnclaveInstanceRole)" >&2; exit 2; \
	 fi
	$(SIGNER) policy render $(foreach m,$(POLICY_MEASUREMENTS),--measurements $(m)) \
		--enclave-role '$(ENCLAVE_ROLE)' --encrypt-role '$(ENCRYPT_ROLE)' --admin-role '$(ADMIN_ROLE)' \
		$(POLICY_FLAGS) > $(POLICY).tmp
	mv $(POLICY).tmp $(POLICY)
	@echo "key policy written to $(POLICY)" >&2
