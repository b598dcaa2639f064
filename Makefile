# `make demo` and `make test` each set up .venv first (once; again when pyproject.toml changes).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.14.1 torchvision==0.29.1  # a pair that imports together: timm needs torchvision
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean browser

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	# LiteRT's converter pins typing-extensions < 4.13 (through xdsl), FastAPI needs newer: one
	# resolve cannot hold both, so it comes second and typing-extensions is put back (xdsl runs with it)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[litert]" 2>&1 | grep -v "dependency conflicts\|requires typing" || true
	$(PY) -m pip install -q --disable-pip-version-check "typing-extensions>=4.15" 2>&1 | grep -v "dependency conflicts\|requires typing" || true
	$(PY) -c "import litert_torch, fastapi, selenium"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/example
	$(VENV)/bin/photoclass train examples/weather --out runs/example

# The web page test drives Debian's chromium: installed here when we are root, else skipped.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium is not installed: the browser test will be skipped"

# Style (ruff: pyproject.toml, [tool.ruff]) and the import contract ([tool.importlinter]) are
# checked before the tests.
LINTED := photoclass tests benchmarks examples
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/lint-imports

test: $(STAMP) browser lint
	$(PY) -m pytest -q --durations=15

# About 8 minutes on 2 cores: leaves out the tests marked slow (kills, sweeps, real photos) and browser.
test-fast: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow and not browser"

bench: $(STAMP)
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf $(VENV) runs prepared .pytest_cache
