# Two commands a new user needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean chaos reliability equivalence

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plots]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/field-lab run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite waits on sockets and subprocesses more than it computes: two workers halve its wall time.
PYTEST_WORKERS ?= 2

unit: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)

test: lint typecheck unit

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "# $$script"; $(BIN)/python $$script || exit 1; done

# Our Nexus and OpenPAYGO encoders against nexus-keycode and openpaygo on random messages
# (`make test` runs a small sample of the same comparison).
equivalence: $(STAMP)
	$(BIN)/python -m tests.equivalence --nexus 100000 --openpaygo 5000 --jobs 2

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# The crash harness at full size: 1,000 trials; prints trials, faults landed and failures.
chaos: $(STAMP)
	$(BIN)/python -m field_lab.chaos.crash --cut 800 --server-kills 100 --handset-kills 100

# RELIABILITY.md from one run of crash, network-fault, fuzz, brute-force and load figures.
reliability: $(STAMP)
	-$(BIN)/python -m pip install --quiet atheris || echo "atheris cannot be installed here: fuzzing with random bytes"
	$(BIN)/python -m field_lab.chaos.report --size chaos --out RELIABILITY.md
