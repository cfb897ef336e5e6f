# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test test-fast venv clean readme-numbers

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Train the default job (digits, CPU or GPU) and print where its run record is.
run: $(STAMP)
	$(PY) run.py $(ARGS)

# The whole suite, slow tests included (SLURM tests start their own cluster).
# pytest exits 5 when it collects no test: make treats that as a failure like any non-zero code.
# JOBS xdist workers (default: one per core); --dist loadgroup keeps the SLURM tests in one worker;
# --durations=30 lists the slowest tests, to keep the suite under its 30-minute budget.
JOBS ?= $(shell env -u OMP_NUM_THREADS nproc 2>/dev/null || echo 1)
test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist loadgroup --durations=30 $(ARGS)

# Everything but the slow and SLURM tests, for the edit-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not slurm" $(ARGS)

# Re-make the README's numbers (every single-run command it quotes, 1 CPU thread) into
# benchmarks/readme_numbers.json; ARGS="--only default reducenet" for some of them.
readme-numbers: $(STAMP)
	$(PY) -m benchmarks.readme $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
