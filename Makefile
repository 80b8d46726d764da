# One entry point for people and CI. Everything runs from a virtualenv in
# .venv that the first target creates, so a fresh machine needs only
# python3 (with venv), cargo and a C compiler.
#
#   make demo    build, record a demo asyncio app under aiocop, then print its report
#   make test    build, then run every check: rustfmt, clippy, cargo test, ruff, mypy, stubtest, pytest
#   make bench   build, then compare no monitor / this aiocop / aiocop 1.2.1 from PyPI

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: build demo test lint rust-test py-test bench clean

$(BIN)/maturin: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# A real wheel install, not an editable one, so the tests see what users get
# (the aiocop-autorecord.pth start-up hook is only installed from a wheel).
build: $(BIN)/maturin
	rm -f target/wheels/aiocop-*.whl
	$(BIN)/maturin build --release --quiet --out target/wheels
	$(BIN)/pip install --quiet --no-deps --force-reinstall target/wheels/aiocop-*.whl

demo: build
	$(BIN)/python examples/demo_app.py demo-trace.bin
	$(BIN)/aiocop-analyze --by app-frame --top 8 demo-trace.bin

lint: build
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(BIN)/ruff check python tests bench examples
	$(BIN)/ruff format --check python tests bench examples
	$(BIN)/python -m mypy python/aiocop
	$(BIN)/python -m mypy.stubtest aiocop._native

rust-test:
	cargo test --workspace --quiet

py-test: build
	$(BIN)/python -m pytest -q

test: lint rust-test py-test

bench: build
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) target
