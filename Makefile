# The README's two commands are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-all demo bench reliability clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/headstart demo -o demo-out

bench: $(STAMP)
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/heads.py
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/finetune.py

reliability: $(STAMP)
	$(BIN)/python -m pytest tests/reliability

clean:
	rm -rf $(VENV) demo-out bench-out *.egg-info
