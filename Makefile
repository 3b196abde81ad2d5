# Every target builds its own virtual environment from scratch when it is missing, so that
# `make demo` and `make test` work on a fresh machine with nothing but Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check pytest bench clean

$(BIN)/.installed: setup.cfg setup.py pyproject.toml lambdaguard_inherit.pth
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python examples/demo.py

check: $(BIN)/.installed
	$(BIN)/ruff check lambdaguard tests benchmarks examples
	$(BIN)/mypy

pytest: $(BIN)/.installed
	$(BIN)/python -m pytest

test: check pytest

# run.py needs only the standard library; it builds its own .venv-bench-X.Y per interpreter
# (the bench extra) so that a fresh clone does not also pay for the test venv.
bench:
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf .venv .venv-* build *.egg-info .mypy_cache .pytest_cache .ruff_cache
