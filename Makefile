# Two commands a new user needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean chaos reliability

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

unit: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck unit

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "# $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# The crash harness at full size: 10,000 trials in pieces over 2 worker processes (prints
# trials, faults landed, failures, seconds), then a power cut at every byte of every save of
# a Nexus full, a Nexus small and an OpenPAYGO meter.
chaos: $(STAMP)
	$(BIN)/python -m field_lab.chaos.trials --cut 8000 --server-kills 1000 --handset-kills 1000 --workers 2
	$(BIN)/python -m field_lab.chaos.tearing

# RELIABILITY.md from one run of crash, network-fault, fuzz, brute-force and load figures.
reliability: $(STAMP)
	-$(BIN)/python -m pip install --quiet atheris || echo "atheris cannot be installed here: fuzzing with random bytes"
	$(BIN)/python -m field_lab.chaos.report --size chaos --out RELIABILITY.md
