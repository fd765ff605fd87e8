# enclave-signer. `make dev` runs the local stack, `make test` the tests.
GO        ?= go
BIN       ?= bin
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Reproducible builds: no cgo, no paths, no VCS stamp, no build id, so the
# same source gives the same signerd bytes (and so the same PCR0) anywhere.
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags='-s -w -buildid='
FUZZTIME  ?= 20s
HTTP      ?= 127.0.0.1:8080
DIR       ?= .signer-dev

.PHONY: all build test vet staticcheck fuzz bench dev clean

all: build

build:
	$(GOBUILD) -o $(BIN)/signerd ./enclave
	$(GOBUILD) -o $(BIN)/signer ./host

vet:
	$(GO) vet ./...
	GOOS=windows $(GO) build ./pkg/... ./host ./enclave

staticcheck:
	$(GO) run $(STATICCHECK) ./...

# The seed corpora of every fuzz target run as part of go test.
test: vet staticcheck
	$(GO) test -race -count=1 ./...

# Runs each fuzz target for FUZZTIME.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The whole stack on one machine (no AWS, no Nitro): make dev HTTP=ADDR DIR=DIR
dev: build
	$(BIN)/signer dev --dir $(DIR) --http $(HTTP)

clean:
	rm -rf $(BIN)
