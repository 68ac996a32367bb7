# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed before the project so that pip reuses it instead of resolving the
# project's wide `torch>=2.4` range to a multi-GB CUDA build. Override on GPU machines,
# e.g. `make install TORCH=torch==2.9.1`.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: help install demo test sync-check test-nbs test-py gate test-slow test-browser test-all lab readme bench bench-gpu clean

help:
	@echo "make demo   install into $(VENV) and run the main job on the embedded default"
	@echo "make test   install if needed, then run every default test (what CI runs)"
	@echo "make lab    JupyterLab on 127.0.0.1 (with a token) in the project's kernel, opening nbs/index.ipynb"
	@echo "make gate   the evaluation gate: built-in models against the baselines in ci/ (exit 1 if one got worse)"
	@echo "make bench-gpu   SASRec, batch scoring and fresh-history serving on CUDA next to the CPU (exit 2 without CUDA)"
	@echo "make test-slow / test-browser / test-all / readme / bench / clean"

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (recsys_lib)" >/dev/null
	touch $@

# JupyterLab defaults for this project: open a notebook straight into its kernel (no kernel dialog), and never
# fetch Jupyter's news feed or check for updates (no traffic beyond 127.0.0.1).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_OVERRIDES): Makefile $(STAMP)
	mkdir -p $(dir $@)
	echo '{"@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": true}, "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' > $@

demo: install
	$(BIN)/recsys demo

test: install sync-check test-nbs test-py

# Notebooks are the source of truth: cleaning and exporting them must change nothing.
# Locally only changes made by these two commands count: to tracked files, and untracked files in nbs/ and
# recsys_lib/ (where the two write), so an unrelated folder in the checkout (a second venv) is not read. In CI
# (CI=true) the tree must be clean.
SYNCED := nbs recsys_lib
sync-check: install
	@snapshot() { git status --porcelain --untracked-files=all -- $(SYNCED); git diff | sha1sum; \
	  git ls-files -o --exclude-standard -z -- $(SYNCED) | xargs -0 -r sha1sum; }; \
	before="$$(snapshot)"; \
	$(BIN)/nbdev-clean; \
	$(BIN)/nbdev-export; \
	after="$$(snapshot)"; \
	if [ "$$before" != "$$after" ] || { [ -n "$${CI:-}" ] && [ -n "$$(git status --porcelain --untracked-files=all)" ]; }; then \
	  echo "nbdev-clean/nbdev-export changed the tree: commit the cleaned notebooks and exported modules."; \
	  git status --porcelain --untracked-files=all; exit 1; \
	fi; \
	echo "notebooks and recsys_lib/ are in sync"

test-nbs: install
	$(BIN)/nbdev-test --n-workers 2

test-py: install
	$(BIN)/pytest

# The evaluation gate of pull requests (ci/evaluation.yaml): each built-in model trained from this tree on frozen splits of
# the synthetic presets, compared user by user with the committed baselines in ci/baselines/; exit 1 when one is
# significantly worse. A few seconds on 2 cores. The report and JSON result go to GATE_OUT (and $GITHUB_STEP_SUMMARY).
# After an intended change: `$(BIN)/recsys gate --update-baseline`, and commit ci/baselines/.
GATE_OUT ?= .recsys/gate
gate: install
	$(BIN)/recsys gate ci/evaluation.yaml --report $(GATE_OUT)/report.md --json $(GATE_OUT)/result.json

# Only the notebooks that hold `slow` or `spark` cells run again with those flags: the rest ran in test-nbs.
FLAGGED_NBS = $(shell grep -l '"\#| \(slow\|spark\)' nbs/*.ipynb | xargs -n1 basename | paste -sd'|')
test-slow: install
	$(BIN)/nbdev-test --n-workers 2 --flags "slow spark" --file-re '^($(FLAGGED_NBS))$$'
	$(BIN)/pytest -m "slow or spark_heavy" --durations=10

# The quickstart in a real JupyterLab, driven by Playwright in Debian's Chromium (no browser download).
test-browser: install $(LAB_OVERRIDES)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/pytest -m browser

test-all: test test-slow test-browser

# JupyterLab binds to 127.0.0.1 only and prints its URL with a fresh token; the notebooks run in the
# "Python 3 (recsys_lib)" kernel that `install` registers inside .venv. The kernel websocket uses the JSON protocol:
# with the binary one, jupyter_server 2.21 failed to parse some of Lab 4.6's messages (`struct.error`) and the cells
# queued by "Run All" were lost.
lab: install $(LAB_OVERRIDES)
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ZMQChannelsWebsocketConnection.kernel_ws_protocol= \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) nbs/index.ipynb

# README.md is generated from nbs/index.ipynb; tests/test_docs.py fails when they disagree.
readme: install
	$(BIN)/python tests/test_docs.py

# Performance figures (minutes; see benchmarks/README.md). Not part of `make test`.
# The GPU paths in one command (benchmarks/bench_gpu.py): within 8 minutes on one GPU; exit 2 with one line without CUDA.
bench-gpu: install
	$(BIN)/python benchmarks/bench_gpu.py

bench: install
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_sasrec.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
