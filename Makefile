# Everyday commands. `make run` starts the whole system; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install test lint run clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_DEBUG=1 $(BIN)/mypy

test: $(STAMP)
	./scripts/ensure-services.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=30

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .hypothesis

# The whole system on this machine: web, worker(s), beat, Flower and the NowPayments sandbox
# (README, "Run the whole system"). `make run VENV=...` reuses a venv. Ctrl-C stops everything
# and exits 0: on a terminal, run.py takes the foreground in a process group of its own, so make
# does not get the SIGINT (and die of it, "Error 130") while run.py stops its children.
run: $(STAMP)
	$(BIN)/python scripts/run.py

# Every script in benchmarks/, then one table of each figure beside its same-run baseline
# (benchmarks/README.md). `make bench QUICK=1`: the same rows at smaller sizes (< ~5 minutes).
bench: $(STAMP)
	./scripts/ensure-services.sh
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick,)
