# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Nothing clever here: a venv, the package installed editable, papermill runs.
PYTHON ?= python3
# OpenMP threads busy-wait by default; on a small shared machine that costs up to 3x in training.
export OMP_WAIT_POLICY ?= PASSIVE
VENV := .venv
PY := $(VENV)/bin/python
PAPERMILL := $(VENV)/bin/papermill
DEMO_DIR := runs/demo
# Notebooks that `make demo` executes, in order (each with params/demo/<name>.yaml).
DEMO_NOTEBOOKS := 01_data_prep 02_tokenizer 03_train 04_generate 05_evaluate 06_studio

.PHONY: setup demo test lint docs clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# the CPU build of torch, pinned: any other spec pulls gigabytes of CUDA wheels
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[test]'
	# the audio previews' synthesizer, without its pyaudio dependency (live playback only, fails to build
	# without PortAudio); where it cannot install, the previews fall back to the fluidsynth program
	$(PY) -m pip install --no-deps 'tinysoundfont>=0.3.7,<0.4' || echo 'tinysoundfont not installed: audio previews need fluidsynth'
	touch $@

demo: setup
	mkdir -p $(DEMO_DIR)
	@for nb in $(DEMO_NOTEBOOKS); do \
		echo "=== $$nb ==="; \
		$(PAPERMILL) notebooks/$$nb.ipynb $(DEMO_DIR)/$$nb.ipynb \
			-f params/demo/$$nb.yaml --progress-bar || exit 1; \
	done
	# a notebook cannot convert itself while papermill writes it: the HTML report comes after
	$(PY) -m mmmlib evaluate report $(DEMO_DIR)/05_evaluate.ipynb $(DEMO_DIR)/evaluate/report.html
	@$(PY) -m mmmlib demo-summary $(DEMO_DIR)

test: setup
	$(PY) -m pytest -q

# The documentation site: docs/_build/html/index.html (warnings are errors, as in tests/test_docs.py).
docs: setup
	$(PY) -m sphinx -b html -W --keep-going -d docs/_build/doctrees docs docs/_build/html
	@echo "Documentation: docs/_build/html/index.html"

lint: setup
	$(VENV)/bin/ruff check mmmlib tests benchmarks notebooks

clean-demo:
	rm -rf $(DEMO_DIR)
