# pgshift — see README.md. Every target works on a fresh Debian machine with
# Go and Node.js; `make deps` installs the rest (idempotent, quick when done).

GO      ?= go
BIN     := bin/pgshift
PKGS    := ./...
# The whole suite, integration tests included, must stay well under CI's budget.
TEST_TIMEOUT ?= 25m

.PHONY: all deps build test test-short test-race lint bench bench-native bench-verify demo clean

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

# staticcheck at a pinned version, built by the go command on first use
# (cached after); both build tags in use are checked.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@out="$$(gofmt -l cmd engine spec steps schemas plans internal)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	$(STATICCHECK) -tags pgshift_teststeps $(PKGS)

# The race detector over the unit tests (-short: no servers), where the
# engine's walk, the state store and the pure logic run their goroutines.
test-race:
	$(GO) test -race -short -count=1 $(PKGS)

# Speed numbers against real servers, one run on one machine and the same
# data (docs/benchmarks.md): native subscription, pgshift's snapshot copy,
# pgcopydb, pg_dump | pg_restore and raw COPY, then verify against scan
# floors, printed as one table. BENCH_SCALE is the pgbench scale (70:
# pgbench_accounts over 1 GB); BENCH_ROWS picks rows (see internal/bench); clusters run durable
# (fsync, full_page_writes on) unless BENCH_DURABLE=0.
BENCH_SCALE ?= 70
BENCH_TIMEOUT ?= 180m
bench: deps
	BENCH_SCALE=$(BENCH_SCALE) $(GO) test -count=1 -run '^$$' -bench Compare -benchtime 1x -timeout $(BENCH_TIMEOUT) ./internal/bench/

# The native initial copy alone (scale 20), with and without green's keys.
bench-native: deps
	$(GO) test -count=1 -run '^$$' -bench InitialCopy -benchtime 1x -timeout 30m ./internal/bench/

# verify alone, in detail: count and checksum modes, 2 and 4 workers, row
# hash alternatives.
bench-verify: deps
	PGSHIFT_BENCH_SCALE=$(BENCH_SCALE) $(GO) test -count=1 -run '^$$' -bench Verify -benchtime 1x -v -timeout $(BENCH_TIMEOUT) ./internal/bench/verify/

clean:
	rm -rf bin

# Upgrades a generated database from PostgreSQL 13 to 17 with pgbench writing
# through PgBouncer all along: validate, plan, apply, apply --approve-cutover,
# status; prints the write pause, failed transactions (must be 0), the longest
# client latency and the verify result. Stops every server it started.
demo: deps build
	$(GO) run ./internal/demo -pgshift $(BIN)

# Cutover and rollback under pgbench -R 500 -c 8 through PgBouncer, 5 runs
# each, beside the same load without a cutover: pause, longest client latency,
# failed transactions, lost rows. Fails only on failed or lost > 0.
.PHONY: bench-cutover
bench-cutover: deps build
	$(GO) run ./internal/bench/cutover -pgshift $(BIN)
