# Every target builds its own virtual environment from scratch when it is missing, so that
# `make demo` and `make test` work on a fresh machine with nothing but Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check pytest pytest-without-c bench clean

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

# The suite again with the optional C extensions hidden (tests/without_c/sitecustomize.py),
# as on a machine without a compiler: same verdicts from the Python hook and patches. The
# tests of the C code itself need it, so they run in the pass above only.
pytest-without-c: $(BIN)/.installed
	PYTHONPATH=tests/without_c $(BIN)/python -c 'import socket, lambdaguard; from lambdaguard.sensors import audit; lambdaguard.guard(network="block").__enter__(); assert audit.hook_kind() == "python" and type(socket.socket.connect).__name__ == "function", "the C extensions were not hidden"'
	PYTHONPATH=tests/without_c $(BIN)/python -m pytest -q \
		--ignore=tests/core/test_audit_gate.py \
		--deselect tests/network/test_network_fastpath.py::TestCompiledConnectFastPath

test: check pytest pytest-without-c

# run.py needs only the standard library; it builds its own .venv-bench-X.Y per interpreter
# (the bench extra) so that a fresh clone does not also pay for the test venv.
bench:
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf .venv .venv-* build *.egg-info .mypy_cache .pytest_cache .ruff_cache
