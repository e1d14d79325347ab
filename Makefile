# after-hf: every target installs what it needs the first time (apt packages, .venv, requirements).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := ffmpeg espeak-ng sox libsox-fmt-all chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Hub is not reachable here; run with HF_HUB_OFFLINE=0 to go online.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= $(HF_HUB_OFFLINE)
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1
DEMO_DIR ?= runs/demo

LINTED := after_hf tests benchmarks spaces_demo

.PHONY: help setup apt lint test test-fast demo demo-full demo-raters base bench space reproduce-paper \
	reproduce-paper-raters clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 24

setup: $(STAMP)  ## apt packages + .venv + pinned requirements + editable install (idempotent)

apt:  ## install the system packages that are missing (ffmpeg for torchcodec, espeak-ng + sox for the corpus, chromium for browser tests)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory apt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

lint: setup  ## ruff: pyflakes, pycodestyle (lines up to 120), bugbear (config in pyproject.toml)
	$(PY) -m ruff check $(LINTED)

test: setup  ## lint, then the whole test suite (offline)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 tests

test-fast: setup  ## the tests not marked slow
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

demo: setup  ## the main job on the embedded default: synth -> prepare -> TAPT -> AL vs random -> full-data baseline -> report
	$(VENV)/bin/after-hf experiment --config recipes/demo/demo.yaml --out $(DEMO_DIR)

demo-full: setup  ## AFTER's full-mode AL (re-fine-tune per round) on the demo pool: entropy vs random, 3 seeds (recipes/demo/full_mode.yaml; not in the 15 minutes of make demo)
	$(VENV)/bin/after-hf experiment --config recipes/demo/full_mode.yaml --out runs/demo_full

demo-raters: setup  ## rater answers to reach 97% of the full-data UA: {1, fixed 3, dynamic} raters per clip x {random, entropy, disagreement} x 3 seeds on the demo's simulated raters (recipes/demo/raters.yaml)
	$(VENV)/bin/after-hf experiment --config recipes/demo/raters.yaml --out runs/demo_raters

BASE_DIR ?= runs/base
base: setup  ## rebuild the demo's pre-trained base (recipes/demo/base_model) from generic generated speech; resumes; ~40 min on 2 quiet cores
	$(VENV)/bin/after-hf synth --profile recipes/demo/base_corpus.yaml --num_utterances 3000 --voices 160 --seed 1000 --out $(BASE_DIR)/corpus
	@[ -f $(BASE_DIR)/manifest/dataset_info.json ] || $(VENV)/bin/after-hf prepare --corpus cremad=$(BASE_DIR)/corpus --out $(BASE_DIR)/manifest --test_fraction 0 --validation_fraction 0
	$(VENV)/bin/after-hf tapt --config recipes/demo/base.yaml --manifest $(BASE_DIR)/manifest --output_dir $(BASE_DIR)/model $$([ -d $(BASE_DIR)/model/checkpoints ] && echo --resume)
	mkdir -p recipes/demo/base_model && cp $(BASE_DIR)/model/{config.json,model.safetensors,preprocessor_config.json,tapt_args.json} recipes/demo/base_model/
	@echo "recipes/demo/base_model rebuilt; git diff --stat shows whether it changed"

bench: setup  ## benchmarks: each prints one line of ratios (ours vs a named baseline)
	$(PY) benchmarks/run_all.py

AFTER_HF_MODEL ?= $(if $(wildcard $(DEMO_DIR)/final/model/config.json),$(DEMO_DIR)/final/model,spaces_demo/model)
AFTER_HF_RUN ?=
space: setup  ## serve spaces_demo/ on the demo model (runs/demo's, else the one shipped in spaces_demo/model; http://127.0.0.1:7860); AFTER_HF_RUN=RUN adds the Annotate tab for an `after-hf al --oracle human` run
	AFTER_HF_MODEL=$(AFTER_HF_MODEL) AFTER_HF_RUN=$(AFTER_HF_RUN) $(PY) spaces_demo/app.py

reproduce-paper: setup  ## AFTER's grid on real corpora (needs IEMOCAP=PATH, the Hub and a GPU); add DRY_RUN=1 to only print the plan
	@[ -n "$(IEMOCAP)" ] || { echo "usage: make reproduce-paper IEMOCAP=/path/to/IEMOCAP_full_release [MERGED='cremad=PATH ravdess=PATH ...'] [DRY_RUN=1]"; exit 2; }
	HF_HUB_OFFLINE=$(if $(DRY_RUN),1,0) HF_DATASETS_OFFLINE=$(if $(DRY_RUN),1,0) $(VENV)/bin/after-hf experiment --config recipes/paper/iemocap_grid.yaml \
	  --corpus iemocap=$(IEMOCAP) $(MERGED) $(if $(DRY_RUN),--dry_run) --out runs/paper

reproduce-paper-raters: setup  ## the rater-policy grid on IEMOCAP's evaluators (needs IEMOCAP=PATH, the Hub and a GPU); DRY_RUN=1 only prints the plan
	@[ -n "$(IEMOCAP)" ] || { echo "usage: make reproduce-paper-raters IEMOCAP=/path/to/IEMOCAP_full_release [DRY_RUN=1]"; exit 2; }
	HF_HUB_OFFLINE=$(if $(DRY_RUN),1,0) HF_DATASETS_OFFLINE=$(if $(DRY_RUN),1,0) $(VENV)/bin/after-hf experiment --config recipes/paper/iemocap_raters.yaml \
	  --corpus iemocap=$(IEMOCAP) $(if $(DRY_RUN),--dry_run) --out runs/paper_raters

clean:  ## remove run outputs (keeps .venv)
	rm -rf runs .pytest_cache
