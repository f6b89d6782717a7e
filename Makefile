# Two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

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

clean:
	rm -rf build .pytest_cache
