# The README's two commands are `make demo` and `make test`; CI runs `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch for the tests; a GPU user installs their own build first.
TORCH ?= torch==2.13.0

.PHONY: setup demo test test-python test-photoshop test-gimp lint bench test-long screenshots clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[diffusion,cluster,test]"
	touch $@

demo: setup
	$(BIN)/layerbridge decompose samples/poster.png -o out/poster.psd

test: lint test-python test-photoshop test-gimp

# ruff, then mypy (strict on server/layerbridge) and the import contracts, both set in pyproject.toml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test-python: setup
	$(BIN)/python -m pytest

test-photoshop: setup
	cd photoshop_uxp && npm ci --no-audit --no-fund && npm test

test-gimp: setup
	bash tests/gimp/run.sh

bench: setup
	$(BIN)/python benchmarks/bench_classic.py
	$(BIN)/python benchmarks/bench_streaming.py

# Real screenshots of both plug-ins into docs/screenshots (the READMEs show them): GIMP's GUI
# under Xvfb in the real-GIMP test's root (needs root), the panel's code in headless Chromium.
screenshots: setup
	cd photoshop_uxp && npm ci --no-audit --no-fund && node scripts/screenshots.js ../docs/screenshots
	$(BIN)/python tests/gimp/screenshots.py --root "$$(bash tests/gimp/gimp-root.sh)" --out docs/screenshots

test-long: setup
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) out
