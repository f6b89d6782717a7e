# Two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

PORT ?=
BOARD ?= esp32

.PHONY: demo test bench report hwtest clean venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/iotctl demo

test: $(STAMP)
	mkdir -p build
	$(BIN)/python -m pytest -n $(JOBS) -q --junitxml=build/junit.xml tests

bench: $(STAMP)
	$(BIN)/python -m bench -o bench.json

# The Annex A conformance report from the last `make test` run, and the published documents.
report: $(STAMP)
	test -f build/junit.xml || $(MAKE) test
	$(BIN)/iotctl docs -o build/docs
	$(BIN)/iotctl report --junit build/junit.xml -o build/conformance.html \
	    -o build/conformance.json -o build/conformance.md

# On a real board (see docs/real-board.md): make hwtest PORT=/dev/ttyUSB0 BOARD=esp32
hwtest: $(STAMP)
	@test -n "$(PORT)" || { echo "usage: make hwtest PORT=/dev/ttyUSB0 [BOARD=esp32]"; exit 2; }
	$(BIN)/python tools/hwtest.py --port $(PORT) --board $(BOARD) $(HWTEST_ARGS)

clean:
	rm -rf build .pytest_cache

# Power-cut and bit-rot sweep of the simulated board (tools/powercut.py, docs/robustness.md):
# every flash operation of update/confirm/rollback, young and aged, every tear shape, second
# cuts, bit flips at rest; writes build/powercut.json.
powercut: $(STAMP)
	$(BIN)/python tools/powercut.py --jobs $(JOBS) -o build/powercut.json

# Mutation catalog of the boot stage and installers (tools/mutants.py): build/mutants.json.
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py -o build/mutants.json
