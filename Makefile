# rwkvfusion: language- and mask-guided image fusion. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch: with no NVIDIA GPU the CPU build from TORCH_CPU_INDEX (the default index when that is unreachable),
# with one the default index's build; an explicit TORCH_SPEC is installed as given, e.g.
# make install TORCH_SPEC="torch==2.13.0 --index-url <cuda index>"
TORCH_SPEC ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# seconds to wait for TORCH_CPU_INDEX before using the default index
TORCH_INDEX_TIMEOUT ?= 5
# 1 when an NVIDIA GPU driver is present (nvidia-smi or /proc/driver/nvidia); override with HAVE_NVIDIA=0/1
HAVE_NVIDIA ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 || test -e /proc/driver/nvidia; then echo 1; else echo 0; fi)
# DRY_RUN=1: `make install-torch` prints the pip command it chose instead of running it
DRY_RUN ?=
TASK ?= mef
DEMO_DIR ?= demo_data
DATA ?=
MANIFEST ?=
# training recipe (fusion.config.get_recipe): paper (Table 1, default with DATA) or cpu (2-core budget)
RECIPE ?=
OUT ?=
CHECKPOINT ?= runs/$(TASK)/checkpoint.pt
A ?=
B ?=
METHOD ?= model
NPROC ?= 1
# extra options passed through to the underlying command, e.g. ARGS="--model-dir models --split test"
ARGS ?=
export OMP_NUM_THREADS ?= 2
# idle OpenMP workers sleep instead of spinning (a busy-waiting pool is ~5x slower on a loaded 2-core machine)
export OMP_WAIT_POLICY ?= PASSIVE
# glibc hands every large tensor back to the OS and page-faults it in again on the next allocation; keeping
# freed memory in the heap makes CPU forward passes linear in pixels (VIF model at 1024^2: 20 s -> 8 s)
export MALLOC_MMAP_THRESHOLD_ ?= 4294967296
export MALLOC_TRIM_THRESHOLD_ ?= 68719476736
export MALLOC_TOP_PAD_ ?= 1073741824
# one process by default; NPROC>1 launches torchrun (DDP for training, one shard per rank for annotation)
LAUNCH = $(if $(filter 1,$(NPROC)),$(PY),$(VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC))

.PHONY: help install install-torch test test-fast lint demo-data demo annotate annotate-smoke train evaluate fuse bench bench-kernels clean

help:
	@echo "install        create $(VENV), install torch (CPU build without an NVIDIA GPU) then this project (editable, dev extras)"
	@echo "install-torch  only the torch step of install (DRY_RUN=1 prints the chosen command)"
	@echo "test           run the test suite (what CI runs)"
	@echo "lint           ruff check"
	@echo "demo-data      build the embedded demo datasets into DEMO_DIR=$(DEMO_DIR)"
	@echo "demo           bundled models vs classical baselines on real test pairs (or demo pairs): runs/demo/report.html"
	@echo "annotate       TASK=vif DATA=dir OUT=dir  caption/detect/segment a dataset into Parquet manifests"
	@echo "annotate-smoke OUT=dir  offline install check with tiny random-weight models"
	@echo "train          TASK=<vif|mif|mef|mff|pan|hmif> [DATA='dir ...' RECIPE=paper|cpu MANIFEST=dir OUT=dir NPROC=n]"
	@echo "evaluate       TASK=... CHECKPOINT=... [DATA=dir]"
	@echo "fuse           CHECKPOINT=... A=path B=path OUT=path [METHOD=name]"
	@echo "bench          speed, memory scaling and quality report in bench/"
	@echo "bench-kernels  Bi-WKV / cross-scan scaling table in bench/kernels.json"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

install: $(PY)
	@$(MAKE) --no-print-directory install-torch
	$(PY) -m pip install -e '.[dev]'

# Picks where torch comes from and says so; see TORCH_SPEC / TORCH_CPU_INDEX / HAVE_NVIDIA above.
install-torch:
	@run() { echo "+ $$*"; if [ -z "$(DRY_RUN)" ]; then "$$@"; fi; }; \
	if [ "$(origin TORCH_SPEC)" != file ]; then \
	  echo "torch: installing TORCH_SPEC as given: $(TORCH_SPEC)"; \
	  run $(PY) -m pip install $(TORCH_SPEC); \
	elif [ "$(HAVE_NVIDIA)" = 1 ]; then \
	  echo "torch: NVIDIA GPU found; installing $(TORCH_SPEC) from the default package index (CUDA build)"; \
	  run $(PY) -m pip install $(TORCH_SPEC); \
	elif $(PYTHON) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))' \
	     "$(TORCH_CPU_INDEX)/torch/" "$(TORCH_INDEX_TIMEOUT)" >/dev/null 2>&1; then \
	  echo "torch: no NVIDIA GPU; installing the CPU build of $(TORCH_SPEC) from $(TORCH_CPU_INDEX)"; \
	  run $(PY) -m pip install --index-url $(TORCH_CPU_INDEX) --timeout 20 --retries 1 $(TORCH_SPEC) || { \
	    echo "torch: $(TORCH_CPU_INDEX) failed; installing $(TORCH_SPEC) from the default package index"; \
	    run $(PY) -m pip install $(TORCH_SPEC); }; \
	else \
	  echo "torch: no NVIDIA GPU; $(TORCH_CPU_INDEX) is unreachable, installing $(TORCH_SPEC) from the default package index"; \
	  run $(PY) -m pip install $(TORCH_SPEC); \
	fi

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow and not distributed"

lint:
	$(PY) -m ruff check annotate fusion kernels manifests rwkvfusion_io tests

demo-data:
	$(PY) -m fusion demo-data --out $(DEMO_DIR)

demo:
	$(PY) -m fusion demo --out runs/demo $(ARGS)

annotate:
	@test -n "$(DATA)" || { echo "make annotate needs DATA=<dataset dir> (and TASK=, OUT=)"; exit 2; }
	$(LAUNCH) -m annotate run --task $(TASK) --data $(DATA) --out $(or $(OUT),manifests_out/$(TASK)) $(ARGS)

annotate-smoke:
	$(PY) -m annotate smoke --out $(or $(OUT),out/annotate-smoke) $(ARGS)

train:
	$(LAUNCH) -m fusion train --task $(TASK) \
		$(if $(DATA),$(foreach d,$(DATA),--data $(d)),--demo-dir $(DEMO_DIR)) $(if $(RECIPE),--recipe $(RECIPE)) \
		$(if $(MANIFEST),--manifest $(MANIFEST)) --out $(or $(OUT),runs/$(TASK)) $(ARGS)

evaluate:
	$(PY) -m fusion evaluate --checkpoint $(CHECKPOINT) $(if $(DATA),--data $(DATA),--demo-dir $(DEMO_DIR)) --out runs/$(TASK)/eval $(ARGS)

fuse:
	@test -n "$(A)" -a -n "$(B)" -a -n "$(OUT)" || { echo "make fuse needs A=<path> B=<path> OUT=<path> (CHECKPOINT= or METHOD=<baseline>)"; exit 2; }
	$(PY) -m fusion fuse $(if $(filter model,$(METHOD)),--checkpoint $(CHECKPOINT),--method $(METHOD)) --a $(A) --b $(B) --out $(OUT) $(ARGS)

bench:
	$(PY) -m fusion bench --out bench $(ARGS)

bench-kernels:
	$(PY) -m rwkvfusion_kernels.bench --out bench

clean:
	rm -rf runs out bench/*.png .pytest_cache
