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

# The long fuzzing run: the fuzz tests of `make test` with every count times FUZZ_SCALE
# (5: about 110,000 generated inputs over the HTTP API and pages, the MQTT commands, a
# hostile broker, update streams and factory records). build/fuzz.jsonl counts them.
FUZZ_SCALE ?= 5
.PHONY: fuzz
fuzz: $(STAMP)
	mkdir -p build
	rm -f build/fuzz.jsonl
	FUZZ_SCALE=$(FUZZ_SCALE) FUZZ_REPORT=$(CURDIR)/build/fuzz.jsonl $(BIN)/python -m pytest \
	    -n $(JOBS) -q tests/e2e/test_fuzz.py tests/e2e/test_mqtt_fuzz.py \
	    tests/e2e/test_byte_fuzz.py
	$(BIN)/python -m bench.fuzz build/fuzz.jsonl
