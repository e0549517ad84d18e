# The README's two commands are `make demo` and `make test`; `make docs` builds the documentation site.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: venv test test-all demo bench bench-docs readme-figure docs reliability clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(DOCS_STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

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

# mkdocs --strict: a broken link or anchor fails. The runnable blocks of the guide run in `make test` (tests/docs).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The benchmark pages (and the README's headline figures) from docs/benchmarks/data/*.json.
bench-docs:
	$(PY) benchmarks/render_docs.py

# The README's picture, from the demo's report (run `make demo` first).
readme-figure: $(STAMP)
	$(BIN)/python tools/make_readme_figure.py demo-out/report

reliability: $(STAMP)
	$(BIN)/python -m pytest tests/reliability

clean:
	rm -rf $(VENV) demo-out bench-out site *.egg-info
