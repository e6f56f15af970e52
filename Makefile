# The two commands a newcomer runs (README): `make run` and `make test`. Each creates/uses .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
# A native build picks up AMX on CPUs that advertise it and dies with "Illegal instruction" in VMs that do not
# enable it, so llama.cpp is always built portable; the wheel is kept in a wheelhouse keyed by version and flags.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
WHEELHOUSE ?= $(HOME)/.cache/forgepilot/wheelhouse/llama-cpp-python-$(LLAMA_VERSION)-native-off
TEST_MODELS := qwen2.5-coder-0.5b gemma-3-270m

.PHONY: run test lint bench setup setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.llama-$(LLAMA_VERSION): | $(BIN)/python
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_VERSION) with CMAKE_ARGS=$(LLAMA_CMAKE_ARGS) (6-8 minutes, once)"; \
		mkdir -p $(WHEELHOUSE) && \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --no-cache-dir --no-deps \
			llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELHOUSE) || exit 1; \
	fi
	$(BIN)/pip install --quiet $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	touch $@

# torch first, pinned: 2.13.0 resolves to the CPU build; any other spec pulls gigabytes of CUDA packages.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.llama-$(LLAMA_VERSION) $(VENV)/.torch
	$(BIN)/pip install --quiet -e '.[llama,models,embeddings,datagen,reports]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[llama,models,embeddings,datagen,reports,train,mlflow,postgres,ray,dev]'
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# The main job on the embedded defaults: assemble and verify the model, index this repository, then serve the
# assistant (OpenAI-compatible API, task endpoints, LSP via `forgepilot lsp --server URL`) on 127.0.0.1:8765.
PORT ?= 8765
run: $(VENV)/.installed
	$(BIN)/forgepilot models prepare
	$(BIN)/forgepilot serve . --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/forgepilot models prepare $(TEST_MODELS)
	$(BIN)/pytest

bench: $(VENV)/.installed-dev
	$(BIN)/forgepilot models prepare
	$(BIN)/python benchmarks/backend.py
	$(BIN)/python benchmarks/index.py
	$(BIN)/python benchmarks/assist.py
	$(BIN)/python benchmarks/datagen.py
	$(BIN)/python benchmarks/evals.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
