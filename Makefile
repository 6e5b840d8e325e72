# rils-bench: every target that needs the environment depends on `setup`, so a clean clone works
# with `make test` alone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3.11
VENV       := .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
CONSTRAINT := requirements/constraints.txt
# Outside the repo so that a new clone on the same machine reuses the compiled mmcv wheel.
WHEELHOUSE ?= $(HOME)/.cache/rils_bench/wheels
STAMP      := $(VENV)/.setup-stamp
export HF_HUB_OFFLINE := 1

# `make pretrain METHOD=semmim` (rils, clip, mae, mae_clip, semmim) picks that method's tiny built-in config.
METHOD          ?= rils
PRETRAIN_CONFIG ?= configs/pretrain/$(subst _,-,$(METHOD))_vit-tiny-p8_builtin.py
STUDY_CONFIG    ?= configs/study/default.py

.PHONY: help setup data pretrain study study-dense study-quick tables eval-coco eval-ade test lint format clean

help:  ## list every target with a one-line description
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv: torch, mmcv built with ops (cached wheel), the stack and rils-bench (editable)

$(STAMP): pyproject.toml $(CONSTRAINT) tools/build_mmcv.sh
	@start=$$SECONDS; \
	set -euo pipefail; \
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV); \
	$(PIP) install -q -c $(CONSTRAINT) torch==2.14.1 torchvision==0.29.1 setuptools; \
	wheeldir=$$(tools/build_mmcv.sh $(PY) $(WHEELHOUSE) | tail -n 1); \
	$(PIP) install -q -c $(CONSTRAINT) --find-links "$$wheeldir" -e '.[dev]'; \
	$(PY) -c 'import mmcv.ops' ; \
	touch $(STAMP); \
	echo "setup: done in $$((SECONDS - start)) s"

data: setup  ## prepare every built-in dataset (sha256-verified downloads) under RILS_BENCH_DATA (default ~/.cache/rils_bench/data)
	$(VENV)/bin/rils-bench data prepare all

pretrain: setup  ## pre-train ViT-tiny on the built-in pairs [METHOD=rils|clip|mae|mae_clip|semmim] (CPU, <15 min)
	$(VENV)/bin/rils-bench pretrain $(PRETRAIN_CONFIG) $(if $(WORK_DIR),--work-dir $(WORK_DIR)) $(if $(FORCE),--force)

study: setup  ## the comparison study: pre-train every method x 2 seeds, evaluate them and the floors, tables (resumable)
	$(VENV)/bin/rils-bench study $(STUDY_CONFIG)

study-dense: setup  ## the study's dense stage: coco + ade fine-tuning of every study checkpoint, then the tables
	$(VENV)/bin/rils-bench study $(STUDY_CONFIG) --stages dense,tables

study-quick: setup  ## every study stage and method at the smallest size, results under ~/.cache (what CI runs)
	$(VENV)/bin/rils-bench study $(STUDY_CONFIG) --quick --dense

eval-coco: setup  ## fine-tune + evaluate Mask R-CNN from CKPT= (path or random:<arch>) [CONFIG=] [DATA_ROOT=]; writes a record
	@test -n "$(CKPT)" || { echo "usage: make eval-coco CKPT=path/to/pretrained.pth [CONFIG=...] [DATA_ROOT=...]" >&2; exit 2; }
	$(VENV)/bin/rils-bench dense --task coco --ckpt $(CKPT) $(if $(CONFIG),--config $(CONFIG)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

eval-ade: setup  ## fine-tune + evaluate UperNet from CKPT= (path or random:<arch>) [CONFIG=] [DATA_ROOT=]; writes a record
	@test -n "$(CKPT)" || { echo "usage: make eval-ade CKPT=path/to/pretrained.pth [CONFIG=...] [DATA_ROOT=...]" >&2; exit 2; }
	$(VENV)/bin/rils-bench dense --task ade --ckpt $(CKPT) $(if $(CONFIG),--config $(CONFIG)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

tables: setup  ## build results/*.md, *.csv, fewshot.png and README.md from results/records
	$(VENV)/bin/rils-bench table

test: setup  ## run the whole test suite, slow tests included (what CI runs)
	$(PY) -m pytest -q

lint: setup  ## ruff format check + ruff lint
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: setup  ## rewrite files with ruff format and apply safe lint fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:  ## remove .venv and caches in the repo (the mmcv wheel cache outside the repo stays)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
