# Fresh machine: `make quickstart` (install + main job), `make test` (install + tests), `make lint` (ruff).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quickstart test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/vfn quickstart --workdir quickstart_run

# two test processes (each with its own local Ray): one keeps the CPUs busy while the other's Ray
# test waits on process start-up; TEST_WORKERS=0 runs everything in one process
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15 tests

lint: $(STAMP)
	$(VENV)/bin/ruff check vfn tests scripts

clean:
	rm -rf $(VENV) quickstart_run .pytest_cache
