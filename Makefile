# Two commands do everything on a fresh machine: `make demo` and `make test`; `make lab` opens the notebooks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick lab clean-figures

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(PY) -m ltkit demo --preset builtin

# The suite on TEST_WORKERS processes (pytest-xdist; tests sharing a session fixture stay on one worker, see
# tests/conftest.py), one torch thread each. Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set:
# every Python process the suite starts (workers, kernels, trainings, DDP ranks, JupyterLab) would otherwise
# compile torch's sources again, about 10 s of CPU each.
TEST_WORKERS ?= 2
TEST_ENV := PYTHONDONTWRITEBYTECODE= OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test: $(STAMP)
	$(TEST_ENV) $(PYTEST)

# everything but the tests marked slow (a browser, real processes, notebook main jobs)
test-quick: $(STAMP)
	$(TEST_ENV) $(PYTEST) -m "not slow"

# JupyterLab from the venv, its file browser on notebooks/ (the notebooks find the repository themselves)
lab: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(PY) -m jupyter lab --ServerApp.root_dir=notebooks $(LAB_ARGS)

clean-figures:
	rm -f figures/*.png figures/*.pdf figures/summary.json
