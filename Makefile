# pgshift — see README.md. Every target works on a fresh Debian machine with
# Go and Node.js; `make deps` installs the rest (idempotent, quick when done).

GO      ?= go
BIN     := bin/pgshift
PKGS    := ./...
# The whole suite, integration tests included, must stay well under CI's budget.
TEST_TIMEOUT ?= 25m

.PHONY: all deps build test test-short lint bench demo clean

all: build

deps:
	./scripts/install-deps

build:
	$(GO) build -o $(BIN) ./cmd/pgshift

# Every test, unit and integration, against real PostgreSQL, PgBouncer and HAProxy.
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# Unit tests only: no servers are started.
test-short:
	$(GO) test -count=1 -short $(PKGS)

lint:
	@out="$$(gofmt -l cmd engine steps schemas plans internal)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Speed numbers against real servers (a pgbench database of scale 20): each
# benchmark runs once and prints its durations and table sizes.
bench: deps
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/bench/

clean:
	rm -rf bin
