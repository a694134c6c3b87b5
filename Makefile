# The two commands a newcomer needs: `make run` and `make test`. Both set up what they need first (idempotently).
PY := .venv/bin/python
ARGS ?= mic --demo

.PHONY: setup run test lint
setup:
	@bash scripts/setup.sh

run: setup
	$(PY) run_agent.py $(ARGS)

lint: setup
	$(PY) -m ruff check attune attune_lab tests examples run_agent.py
	$(PY) -m mypy

test: setup lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q
