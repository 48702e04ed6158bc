# One-command set-up for a fresh machine (Python 3.11, no GPU): `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medsr-installed
# CPU torch pinned through constraints-cpu.txt. Elsewhere, a CPU-only wheel index can be added with
# `make setup PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"`.
PIP_EXTRA ?=

.PHONY: setup run test test-fast lint bench clean-venv

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_EXTRA) -c constraints-cpu.txt -e '.[dev]'
	touch $(STAMP)

# Optional native kernels (engine/fast/native): built with the machine's C compiler; without one the
# torch path is used and this prints why.
NATIVE := engine/fast/native/libmedsr_native.so
$(NATIVE): $(wildcard engine/fast/native/*.c) $(STAMP)
	$(BIN)/python -m engine.fast.native

setup: $(STAMP) $(NATIVE)

run: setup
	$(BIN)/medsr-viewer $(ARGS)

test: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

test-fast: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check engine training medsr_viewer tests bench
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)

# Frozen app (PyInstaller, one folder) + .deb + portable .tar.gz in dist/; see docs/PACKAGING.md.
.PHONY: package
package: setup
	$(BIN)/python packaging/build.py $(PACKAGE_ARGS)
