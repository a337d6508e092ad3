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
	$(PY) -m ltkit demo --preset builtin

test: $(STAMP)
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m pytest -q

# everything but the tests marked slow (a browser, real processes, notebook main jobs)
test-quick: $(STAMP)
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m pytest -q -m "not slow"

# JupyterLab from the venv, its file browser on notebooks/ (the notebooks find the repository themselves)
lab: $(STAMP)
	$(PY) -m jupyter lab --ServerApp.root_dir=notebooks $(LAB_ARGS)

clean-figures:
	rm -f figures/*.png figures/*.pdf figures/summary.json
