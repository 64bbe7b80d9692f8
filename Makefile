# One-command set-up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SAMPLE ?= sample_data
RUNS   ?= runs/demo

.PHONY: help venv demo demo-all lint test test-fast bench sample clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed  ## create .venv and install requirements

sample: venv  ## generate the embedded sample dataset in $(SAMPLE)/
	$(PY) -m data.sample --root $(SAMPLE)

demo: venv  ## generate sample data and run the main job on it
	@test -f $(SAMPLE)/validation_observations.csv || $(PY) -m data.sample --root $(SAMPLE)
	$(PY) demo/run_demo.py --data $(SAMPLE) --out $(RUNS)

demo-all: demo  ## every downstream_eval_scripts/ setting as a 1-epoch smoke run on the sample data
	test -f $(RUNS)/resnet50_backbone/checkpoint_last.pth || $(PY) train_resnet_backbone.py --arch resnet50 \
		--train_dir $(SAMPLE) --epochs 1 --batch_size 8 --workers 0 --no-save_optimizer --output_dir $(RUNS)/resnet50_backbone
	DFC_ROOT=$(SAMPLE) SWIN_CHECKPOINT=$(RUNS)/swin_backbone/checkpoint_last.pth \
	RESNET50_CHECKPOINT=$(RUNS)/resnet50_backbone/checkpoint_last.pth \
	OUTPUT_ROOT=runs/demo-all EPOCHS=1 BATCH_SIZE=8 PYTHON=$(PY) downstream_eval_scripts/run_all.sh

lint: venv  ## ruff (settings in ruff.toml)
	$(VENV)/bin/ruff check .

test-fast: venv  ## lint, then the test suite without the slow (subprocess-heavy) tests
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow" tests

test: venv  ## lint, then the whole test suite
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

bench: venv  ## print the performance table
	$(PY) benchmarks/run.py

clean:  ## remove generated data and runs (keeps .venv)
	rm -rf $(SAMPLE) runs
