# Two commands a new user needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-ray lint typecheck unit bench clean chaos reliability fuzz chromium screenshot equivalence

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plots]'
	@$(MAKE) --no-print-directory chromium
	touch $(STAMP)

# The report's browser test drives Chromium from the system's packages: installed here where
# setup may (root, with apt-get); elsewhere that one test is skipped and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for the report's browser test"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium chromium-driver >/dev/null; } \
		|| echo "chromium could not be installed: the report's browser test will be skipped"; \
	else \
		echo "no chromium, and setup cannot install it here (needs root and apt-get):" \
			"the report's browser test will be skipped"; \
	fi

run: $(STAMP)
	$(BIN)/field-lab run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite waits on sockets and subprocesses more than it computes: two workers halve its wall time.
PYTEST_WORKERS ?= 2

unit: $(STAMP) chromium
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not ray"

test: lint typecheck unit

# `field-lab run --ray` on a local two-node Ray cluster bound to 127.0.0.1 (CI runs it after
# `make test`): installs the ray extra (a 79 MB wheel, about 250 MB installed) into the venv first.
RAY_STAMP := $(VENV)/.installed-ray
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,plots,ray]'
	touch $(RAY_STAMP)

test-ray: $(RAY_STAMP)
	$(BIN)/python -c "import ray"  # the extra is there: the tests below must run, not skip
	$(BIN)/python -m pytest -m ray tests/field_lab/test_ray.py

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "# $$script"; $(BIN)/python $$script || exit 1; done

# Our Nexus and OpenPAYGO encoders against nexus-keycode and openpaygo on random messages
# (`make test` runs a small sample of the same comparison).
equivalence: $(STAMP)
	$(BIN)/python -m tests.equivalence --nexus 100000 --openpaygo 5000 --jobs 2

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
	-$(BIN)/python -m pip install --quiet atheris || echo "atheris cannot be installed here: fuzzing with our own mutator"
	$(BIN)/python -m field_lab.chaos.report --size chaos --out RELIABILITY.md

# The fuzz campaign alone (over a million inputs, 2 processes): per-target table; exit 1 on a
# crash or a 5xx.
fuzz: $(STAMP)
	-$(BIN)/python -m pip install --quiet atheris || echo "atheris cannot be installed here: fuzzing with our own mutator"
	$(BIN)/python -m field_lab.chaos.fuzz run --size chaos

# docs/report.png: the report.html of a short run as headless Chromium draws it (README).
SHOT := results/screenshot
screenshot: $(STAMP) chromium
	rm -rf $(SHOT)
	-$(BIN)/field-lab run --agents 40 --devices 400 --duration 45 --out $(SHOT) --quiet
	chromium --headless --disable-gpu --hide-scrollbars $$([ "$$(id -u)" = 0 ] && echo --no-sandbox) \
		--window-size=1100,2700 --screenshot=docs/report.png "file://$(CURDIR)/$(SHOT)/report.html"
