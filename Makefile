# Every target sets itself up on a fresh machine: a virtual environment in .venv,
# torch 2.13.0 first (a CPU wheel; a looser requirement resolved first could pull a
# multi-GB CUDA build), then the package with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# pytest workers; 2 matches the reference machine (2 cores)
WORKERS ?= 2

.PHONY: install test explore docs clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e '.[test,docs]'
	touch $@

install: $(VENV)/.installed

## make test: the whole test suite (hypothesis profile "ci": derandomized, bounded)
test: install
	HYPOTHESIS_PROFILE=ci $(VENV)/bin/pytest -n $(WORKERS) -p no:cacheprovider tests

## make explore: longer, randomized hypothesis search; run by hand, keep what it finds
explore: install
	HYPOTHESIS_PROFILE=explore $(VENV)/bin/pytest -n $(WORKERS) tests

## make docs: the documentation site, warnings are errors
docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .hypothesis
