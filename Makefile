# Fresh machine: `make quickstart` (install + main job), `make test` (install + tests), `make lint` (ruff),
# `make docs` (the docs site into docs/_build/html, strictly: any warning fails).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install quickstart test lint docs clean

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

DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

# -W: a warning fails (a broken link, a page in no table of contents); -n: so does a reference to a
# missing object; -E: every page is read again, so no warning hides in a cached page
docs: $(DOCS_STAMP)
	$(VENV)/bin/sphinx-build -E -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

lint: $(STAMP)
	$(VENV)/bin/ruff check vfn tests scripts docs

clean:
	rm -rf $(VENV) quickstart_run .pytest_cache docs/_build
