# longlink: the two commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest jstest browsertest bench bench-setup fuzz clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# The distribution was called "longlink" before it became longlink-server: drop its traces.
	$(BIN)/python -m pip uninstall --quiet --yes longlink 2>/dev/null || true
	rm -rf src/longlink.egg-info
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Demo mode: /v1/connect takes a bare user name; API key demo-key; tickets signed with the demo
# ticket secret are taken too (longlink ticket USER). Never for production (docs/operations.md).
run: $(STAMP)
	LONGLINK_DEMO=1 LONGLINK_API_KEY=$${LONGLINK_API_KEY:-demo-key} \
	LONGLINK_TICKET_SECRET=$${LONGLINK_TICKET_SECRET:-demo-ticket-secret-0123456789abcdef} \
	$(BIN)/longlink serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src/longlink
	$(BIN)/mypy bench

pytest: $(STAMP)
	$(BIN)/pytest -q

# The JavaScript SDK's tests (node --test, Node 20+; end-to-end ones start .venv/bin/longlink).
# Node 20 has a global WebSocket only behind --experimental-websocket; later versions by default.
NODE ?= node
jstest: $(STAMP)
	@$(NODE) -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
		|| { echo "make jstest needs Node.js 20 or later as '$(NODE)'"; exit 1; }
	$(NODE) $$($(NODE) -e 'typeof WebSocket === "function" || console.log("--experimental-websocket")') \
		--test tests/js/

# The pages in headless Chromium (part of pytest too): Debian's chromium, driven by Playwright.
browsertest: $(STAMP)
	$(BIN)/pytest -q tests/browser

test: lint typecheck pytest jstest

# `make bench`: every scenario of docs/benchmarks.md in one run (~10 minutes): results
# in bench/results/, plots in docs/img/, tables in docs/benchmarks.md. BENCH_ARGS go to
# bench/run.py (e.g. BENCH_ARGS="--quick --no-doc"). The peers are installed into
# bench/.peers/ (git-ignored): a venv from PyPI, node_modules from npm, the load
# generator (bench/loadgen/) and the flood server built with gcc.
PEERS := bench/.peers
BENCH_STAMP := $(VENV)/.bench-installed

bench: bench-setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-setup: $(BENCH_STAMP) $(PEERS)/bin/loadgen $(PEERS)/bin/flood $(PEERS)/venv/.installed
	@$(MAKE) --no-print-directory $(PEERS)/node/.installed \
		|| echo "make bench: the Node peers could not be installed; they are reported as missing"

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

LOADGEN_C := bench/loadgen/main.c bench/loadgen/wire.c bench/loadgen/reconnect.c

$(PEERS)/bin/loadgen: $(LOADGEN_C) bench/loadgen/loadgen.h
	@test -f /usr/include/zlib.h -a -f /usr/include/brotli/decode.h \
		|| apt-get install -y -q zlib1g-dev libbrotli-dev
	@mkdir -p $(PEERS)/bin
	gcc -O2 -Wall -Wextra -o $@ $(LOADGEN_C) -lz -lbrotlidec

$(PEERS)/bin/flood: bench/peers/flood.c
	@mkdir -p $(PEERS)/bin
	gcc -O2 -Wall -Wextra -o $@ $<

$(PEERS)/venv/.installed: bench/peers/requirements.txt
	@test -x $(PEERS)/venv/bin/python || $(PYTHON) -m venv $(PEERS)/venv
	$(PEERS)/venv/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	@touch $@

$(PEERS)/node/.installed: bench/peers/package.json bench/peers/package-lock.json
	@mkdir -p $(PEERS)/node
	cp bench/peers/package.json bench/peers/package-lock.json $(PEERS)/node/
	cd $(PEERS)/node && npm ci --no-audit --no-fund --silent
	@touch $@

# Coverage-guided fuzzing (atheris): FUZZ_RUNS inputs per parser of untrusted bytes
# (fuzz/targets.py); inputs reaching new code are added to fuzz/corpus/TARGET (commit them).
# A crash, hang or runaway allocation stops the run and leaves crash-*/timeout-*/oom-* files.
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS ?= frame stream batch ws upgrade session json http
fuzz: $(STAMP)
	@set -e; for target in $(FUZZ_TARGETS); do \
		echo "fuzz $$target: $(FUZZ_RUNS) inputs"; \
		if ! $(BIN)/python fuzz/run.py $$target -runs=$(FUZZ_RUNS) -max_len=4096 -timeout=10 \
			-rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1 \
			-artifact_prefix=fuzz/ fuzz/corpus/$$target > fuzz/$$target.log 2>&1; then \
			tail -40 fuzz/$$target.log; exit 1; \
		fi; \
		grep -E "^Done|number_of_executed_units|peak_rss" fuzz/$$target.log; \
	done

clean:
	rm -rf $(VENV) $(PEERS) build *.egg-info src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
