# Two set-up commands: `make demo` and `make test`. Each first runs tools/bootstrap (the Debian
# packages the project uses: it installs what is missing, or says the command to run), then
# creates .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

PORT ?=
BOARD ?= esp32

.PHONY: bootstrap demo test bench report hwtest clean venv

bootstrap:
	@PYTHON=$(PY) sh tools/bootstrap

$(STAMP): pyproject.toml | bootstrap
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: bootstrap $(STAMP)
	$(BIN)/iotctl demo

test: bootstrap $(STAMP)
	mkdir -p build
	$(BIN)/python -m pytest -n $(JOBS) -q --junitxml=build/junit.xml tests

bench: bootstrap $(STAMP)
	$(BIN)/python -m bench -o bench.json

# The Annex A conformance report from the last `make test` run, and the published documents.
report: bootstrap $(STAMP)
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

# The pulled download's power-loss sweep at every flash operation (`make test` takes every 7th).
powercut-pull: bootstrap $(STAMP)
	PULL_SWEEP_STRIDE=1 $(BIN)/python -m pytest -q -s tests/host/test_pull_powercut.py
.PHONY: powercut-pull
