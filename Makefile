# rwkvfusion: language- and mask-guided image fusion. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel by default; GPU users: make install TORCH_SPEC="torch==2.13.0 --index-url <cuda index>"
TORCH_SPEC ?= torch==2.13.0
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

.PHONY: help install test test-fast lint demo-data demo annotate annotate-smoke train evaluate fuse bench bench-kernels clean

help:
	@echo "install        create $(VENV), install $(TORCH_SPEC) then this project (editable, with dev extras)"
	@echo "test           run the test suite (what CI runs)"
	@echo "lint           ruff check"
	@echo "demo-data      build the embedded demo datasets into DEMO_DIR=$(DEMO_DIR)"
	@echo "demo           bundled models vs classical baselines on real test pairs (or demo pairs): runs/demo/report.html"
	@echo "annotate       TASK=vif DATA=dir OUT=dir  caption/detect/segment a dataset into Parquet manifests"
	@echo "annotate-smoke OUT=dir  offline install check with tiny random-weight models"
	@echo "train          TASK=<vif|mif|mef|mff|pan|hmif> [DATA='dir ...' RECIPE=paper|cpu MANIFEST=dir NPROC=n]"
	@echo "evaluate       TASK=... CHECKPOINT=... [DATA=dir]"
	@echo "fuse           CHECKPOINT=... A=path B=path OUT=path [METHOD=name]"
	@echo "bench          speed, memory scaling and quality report in bench/"
	@echo "bench-kernels  Bi-WKV / cross-scan scaling table in bench/kernels.json"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

install: $(PY)
	$(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e '.[dev]'

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow and not distributed"

lint:
	$(PY) -m ruff check annotate fusion kernels manifests tests

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
		$(if $(MANIFEST),--manifest $(MANIFEST)) --out runs/$(TASK) $(ARGS)

evaluate:
	$(PY) -m fusion evaluate --checkpoint $(CHECKPOINT) $(if $(DATA),--data $(DATA),--demo-dir $(DEMO_DIR)) --out runs/$(TASK)/eval $(ARGS)

fuse:
	@test -n "$(A)" -a -n "$(B)" -a -n "$(OUT)" || { echo "make fuse needs A=<path> B=<path> OUT=<path> (CHECKPOINT= or METHOD=<baseline>)"; exit 2; }
	$(PY) -m fusion fuse $(if $(filter model,$(METHOD)),--checkpoint $(CHECKPOINT),--method $(METHOD)) --a $(A) --b $(B) --out $(OUT) $(ARGS)

bench:
	$(PY) -m fusion bench --out bench $(ARGS)

bench-kernels:
	$(PY) -m kernels.bench --out bench

clean:
	rm -rf runs out bench/*.png .pytest_cache
