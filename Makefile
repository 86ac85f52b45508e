# Environment set-up lives here: every target builds .venv when needed.
# torch is installed first and explicitly, so pip never resolves a CUDA build
# on CPU machines. Override TORCH_SPEC for another build, e.g.
#   make test TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: venv demo test test-all lint format doc bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -c "import mne_mmnet; mne_mmnet.sys_info()"
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m mne_mmnet demo --out demo_output

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest tests

test-all: lint
	HYPOTHESIS_PROFILE=long $(PY) -m pytest tests -m "slow or not slow"

bench: $(STAMP)
	$(PY) -m mne_mmnet benchmark

doc:
	$(MAKE) EXTRAS=doc venv
	$(MAKE) -C doc html

clean:
	rm -rf $(VENV) build dist *.egg-info doc/_build doc/auto_tutorials
