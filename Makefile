# NeuroPhase: `make demo` sets everything up and runs the main job; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out

.PHONY: setup demo test test-all test-fpga-build test-fpga-chip-build test-chip-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/neurophase compile --out $(OUT)/compiled
	$(BIN)/neurophase sim network --length 8 --build-dir $(OUT)/sim/chip_cosim
	@echo "outputs: the compiled network (program, listing, memory images) in $(OUT)/compiled; the chip RTL, its co-simulation log, JUnit XML and per-image results in $(OUT)/sim/chip_cosim"

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-all: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "slow or not slow"

# The FPGA bitstream build of the one-tile top (`slow`, minutes): CI runs it once after the suite.
test-fpga-build: setup
	$(BIN)/python -m pytest -m slow tests/test_fpga_build.py -k "not chip_top"

# The chip top's bitstream build with its 100 MHz check, and the sequencer's out-of-context
# 100 MHz check (`slow`, about half an hour on two cores): CI runs them once after the suite.
test-fpga-chip-build: setup
	$(BIN)/python -m pytest -m slow tests/test_fpga_build.py -k chip_top

# The default chip (144 tiles) generated and linted (`slow`, about 5 minutes): CI runs it once.
test-chip-scale: setup
	$(BIN)/python -m pytest -m slow tests/test_chip_generate.py

clean:
	rm -rf $(OUT) sim_build .pytest_cache
