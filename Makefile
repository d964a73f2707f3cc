# NeuroPhase: `make demo` sets everything up and runs the main job; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out

.PHONY: setup demo test test-all test-fpga-build clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/neurophase generate --out $(OUT)/rtl
	$(BIN)/neurophase sim mvm --length 200 --build-dir $(OUT)/sim/tile_cosim
	$(BIN)/neurophase sim drift --length 64 --build-dir $(OUT)/sim/tile_cosim --out $(OUT)/sim/drift.png
	$(BIN)/neurophase model network --seeds 1 --images 150 --no-diagnosis --out $(OUT)/model/network.png
	@echo "outputs: Verilog, register maps and manifest in $(OUT)/rtl; co-simulation logs, JUnit XML and drift.png in $(OUT)/sim; network study in $(OUT)/model/network.png and network.json"

test: setup
	$(BIN)/python -m pytest -n 2

test-all: setup
	$(BIN)/python -m pytest -n 2 -m "slow or not slow"

# The FPGA bitstream builds (`slow`: the one-tile top takes minutes, the chip top (--chip) up to
# an hour on two shared cores): CI runs them once after the suite.
test-fpga-build: setup
	$(BIN)/python -m pytest -m slow tests/test_fpga_build.py

clean:
	rm -rf $(OUT) sim_build .pytest_cache
