# ij-bridge: `make demo` runs the main job, `make test` runs the test suite.
# Both set everything up on a fresh machine: system packages (ImageJ, Xvfb),
# a virtual environment with the CPU build of torch, and the package itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: all demo test sysdeps venv bench clean

all: test

sysdeps:
	@bash scripts/ensure_system_deps.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing later pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,dask,bioimageio]"
	# compile the NMS kernels once (numba caches them on disk)
	$(BIN)/python -m ij_bridge.stardist._polyclip
	touch $(STAMP)

venv: $(STAMP)

test: sysdeps venv
	$(BIN)/python -m pytest

demo: sysdeps venv
	$(BIN)/ij-bridge demo --output demo_output

bench: sysdeps venv
	$(BIN)/python scripts/bench_convert.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
