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
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(JOBS) -q --junitxml=build/junit.xml tests

bench: bootstrap $(STAMP)
	$(BIN)/python -m bench -o bench.json

# The Annex A conformance report from the last `make test` run, and the published documents:
# the demo's app bundle (board unix) with its CycloneDX SBOM (schema-checked, bound in the signed
# manifest, checked against the advisory feed), Table A.1 naming that bundle, the TS 103 701 ICS
# and IXIT, the CRA Annex I map and the PSTI statement. FEED: an OSV/CSAF feed (default: the
# fixture in tests/data/advisories; a maker points it at the advisories they monitor).
FEED ?= tests/data/advisories
RELEASE := build/release
report: bootstrap $(STAMP)
	test -f build/junit.xml || $(MAKE) test
	$(BIN)/iotctl docs -o build/docs
	rm -rf $(RELEASE) && mkdir -p $(RELEASE)
	$(BIN)/iotctl keys init --dir $(RELEASE)/keys >/dev/null
	$(BIN)/iotctl build --keys $(RELEASE)/keys --board unix --version 1.0.0 \
	    --security-version 1 -o $(RELEASE)/app-1.0.0.bin --sbom $(RELEASE)/app-1.0.0.cdx.json
	$(BIN)/iotctl sbom $(RELEASE)/app-1.0.0.bin --check $(RELEASE)/app-1.0.0.cdx.json
	$(BIN)/iotctl advisories --sbom $(RELEASE)/app-1.0.0.cdx.json --feed $(FEED)
	$(BIN)/iotctl report --junit build/junit.xml --bundle $(RELEASE)/app-1.0.0.bin \
	    -o build/conformance.html -o build/conformance.json -o build/conformance.md
	for doc in ics ixit cra psti; do $(BIN)/iotctl report --junit build/junit.xml \
	    --bundle $(RELEASE)/app-1.0.0.bin --format $$doc -o build/$$doc.md || exit 1; done

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

# The long fuzzing run: the fuzz tests of `make test` with every count times FUZZ_SCALE
# (5: about 110,000 generated inputs over the HTTP API and pages, the MQTT commands, a
# hostile broker, update streams and factory records). build/fuzz.jsonl counts them.
FUZZ_SCALE ?= 5
.PHONY: fuzz
fuzz: bootstrap $(STAMP)
	mkdir -p build
	rm -f build/fuzz.jsonl
	FUZZ_SCALE=$(FUZZ_SCALE) FUZZ_REPORT=$(CURDIR)/build/fuzz.jsonl $(BIN)/python -m pytest \
	    -n $(JOBS) -q tests/e2e/test_fuzz.py tests/e2e/test_mqtt_fuzz.py \
	    tests/e2e/test_byte_fuzz.py
	$(BIN)/python -m bench.fuzz build/fuzz.jsonl

# Power-cut and bit-rot sweep of the simulated board (tools/powercut.py, docs/robustness.md):
# every flash operation of update/confirm/rollback, young and aged, every tear shape, second
# cuts, bit flips at rest; writes build/powercut.json.
powercut: bootstrap $(STAMP)
	$(BIN)/python tools/powercut.py --jobs $(JOBS) -o build/powercut.json

# Mutation catalog of the boot stage and installers (tools/mutants.py): build/mutants.json.
mutants: bootstrap $(STAMP)
	$(BIN)/python tools/mutants.py -o build/mutants.json
.PHONY: powercut mutants
