# Two commands a new user needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean chaos reliability fuzz

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# nexus-keycode hard-depends on the enum34/typing backports; on Python 3 they only shadow
	@# the stdlib when site-packages comes first, so remove them from our environment.
	$(BIN)/python -m pip uninstall --quiet -y enum34 typing
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

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# The crash harness at full size: 1,000 trials; prints trials, faults landed and failures.
chaos: $(STAMP)
	$(BIN)/python -m field_lab.chaos.crash --cut 800 --server-kills 100 --handset-kills 100

# RELIABILITY.md from one run of crash, network-fault, fuzz, brute-force and load figures.
reliability: $(STAMP)
	-$(BIN)/python -m pip install --quiet atheris || echo "atheris cannot be installed here: fuzzing with our own mutator"
	$(BIN)/python -m field_lab.chaos.report --size chaos --out RELIABILITY.md

# The fuzz campaign alone (over a million inputs, 2 processes): per-target table; exit 1 on a
# crash or a 5xx.
fuzz: $(STAMP)
	-$(BIN)/python -m pip install --quiet atheris || echo "atheris cannot be installed here: fuzzing with our own mutator"
	$(BIN)/python -m field_lab.chaos.fuzz run --size chaos
