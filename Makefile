# One entry point for people and CI. Everything runs from a virtualenv in
# .venv that the first target creates, so a fresh machine needs only
# python3 (with venv), cargo and a C compiler; `make test` also needs
# CPython 3.12 and 3.13 (found as below), each tested in a venv of its own.
#
#   make demo    build, record a demo asyncio app under aiocop, then print its report
#   make test    build, then run every check: rustfmt, clippy, cargo test, ruff, mypy, stubtest,
#                and pytest on CPython 3.11 (.venv), 3.12 (.venv-3.12) and 3.13 (.venv-3.13),
#                and on 3.14 and 3.15 inside a Debian sid root (tools/sid-root.sh; needs root)
#   make bench   build, then compare no monitor / this aiocop / aiocop 1.2.1 from PyPI

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The other supported versions: pyenv's install where there is one, else
# pythonX.Y on the PATH. Each builds in a cargo target directory of its own,
# so switching interpreters never rebuilds pyo3 and the recorder.
OTHER_VERSIONS := 3.12 3.13
python_for = $(firstword $(wildcard /root/.pyenv/versions/$(1).*/bin/python3) python$(1))

# 3.14 and 3.15: Debian's sid packages, in a root made once under /var/cache
# (tools/sid-root.sh). Their wheels are cross-built here by PyO3 against the
# root's lib/python3.X, each in a cargo target directory of its own; pytest
# runs inside the root.
SID_VERSIONS := 3.14 3.15
SID_ROOT ?= /var/cache/aiocop-sid
export AIOCOP_SID_ROOT := $(SID_ROOT)

.PHONY: build demo test lint rust-test py-test bench clean sid-root \
	$(addprefix build-,$(OTHER_VERSIONS) $(SID_VERSIONS)) $(addprefix py-test-,$(OTHER_VERSIONS) $(SID_VERSIONS))

$(BIN)/maturin: requirements-dev.txt requirements-spark.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-spark.txt
	touch $@

# A real wheel install, not an editable one, so the tests see what users get
# (the aiocop-autorecord.pth start-up hook is only installed from a wheel).
# The wheel is built as `pip install .` builds it, through build-backend/aiocop_build.py
# (maturin's extension plus the aiocop-analyze executable); maturin's backend
# runs `maturin` from the PATH.
build: $(BIN)/maturin
	rm -f target/wheels/aiocop-*.whl
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation --wheel-dir target/wheels .
	$(BIN)/pip install --quiet --no-deps --force-reinstall target/wheels/aiocop-*.whl

demo: build
	$(BIN)/python examples/demo_app.py demo-trace.bin
	$(BIN)/aiocop-analyze --by app-frame --top 8 demo-trace.bin

lint: build
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --quiet
	$(BIN)/ruff check python tests bench examples build-backend
	$(BIN)/ruff format --check python tests bench examples build-backend
	$(BIN)/python -m mypy python/aiocop
	$(BIN)/python -m mypy.stubtest aiocop._native
	$(BIN)/python .ci/check_structure.py

rust-test:
	cargo test --workspace --quiet
	# Millions of slices: only a release build exports them in seconds.
	cargo test --release --quiet -p aiocop-analyze --test export_memory

py-test: build
	$(BIN)/python -m pytest -q

$(VENV)-%/bin/maturin: requirements-dev.txt
	$(call python_for,$*) -m venv $(VENV)-$*
	$(VENV)-$*/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(addprefix build-,$(OTHER_VERSIONS)): build-%: $(VENV)-%/bin/maturin
	rm -f target/wheels-$*/aiocop-*.whl
	PATH="$(CURDIR)/$(VENV)-$*/bin:$$PATH" CARGO_TARGET_DIR=target/py$* AIOCOP_ANALYZER_TARGET_DIR=$(CURDIR)/target $(VENV)-$*/bin/pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation --wheel-dir target/wheels-$* .
	$(VENV)-$*/bin/pip install --quiet --no-deps --force-reinstall target/wheels-$*/aiocop-*.whl

$(addprefix py-test-,$(OTHER_VERSIONS)): py-test-%: build-%
	$(VENV)-$*/bin/python -m pytest -q

sid-root:
	tools/sid-root.sh ensure

$(addprefix build-,$(SID_VERSIONS)): build-%: $(BIN)/maturin sid-root
	rm -f target/wheels-$*/aiocop-*.whl
	CARGO_TARGET_DIR=target/py$* PYO3_CROSS=1 PYO3_CROSS_LIB_DIR=$(SID_ROOT)/usr/lib/python$* PYO3_CROSS_PYTHON_VERSION=$* \
		$(BIN)/maturin build --release --quiet -i python$* --target x86_64-unknown-linux-gnu --out target/wheels-$*
	$(BIN)/python build-backend/aiocop_build.py target/wheels-$*/aiocop-*.whl

$(addprefix py-test-,$(SID_VERSIONS)): py-test-%: build-%
	tools/sid-root.sh test $* target/wheels-$*/aiocop-*.whl $(PYTEST_ARGS)

test: lint rust-test py-test $(addprefix py-test-,$(OTHER_VERSIONS) $(SID_VERSIONS))

bench: build
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(addprefix $(VENV)-,$(OTHER_VERSIONS)) target
