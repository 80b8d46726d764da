"""End to end: the table report on a real terminal (a pty of a set width) and through a pipe.

On a terminal the report fits its width: fewer columns, paths relative to
the current directory, keys shortened from the left with their line and
function kept, no word broken. A pipe gets the full table.
"""

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
import unicodedata
from pathlib import Path

import pytest
from conftest import ANALYZE, analyze

WORKLOAD = textwrap.dedent(
    """
    import asyncio, os, time
    import aiocop

    def read_configuration_file(path):
        with open(path) as f:  # LINE_OPEN
            return f.read()

    def stat_every_known_path(path):
        for _ in range(5):
            os.stat(path)  # LINE_STAT

    def crunch_the_numbers():
        deadline = time.perf_counter() + 0.06
        while time.perf_counter() < deadline:  # LINE_SPIN
            pass

    async def handle_checkout_request(path):
        aiocop.activate()
        await asyncio.sleep(0)
        for _ in range(3):
            read_configuration_file(path)
            await asyncio.sleep(0)
        time.sleep(0.035)  # LINE_SLEEP
        await asyncio.sleep(0)
        stat_every_known_path(path)
        await asyncio.sleep(0)
        crunch_the_numbers()
        await asyncio.sleep(0)

    import sys
    with aiocop.recording(sys.argv[2], label="terminal"):
        asyncio.run(handle_checkout_request(sys.argv[1]))
    """
)

# (marker, function) of the app's rows.
APP_ROWS = [
    ("LINE_OPEN", "read_configuration_file"),
    ("LINE_STAT", "stat_every_known_path"),
    ("LINE_SLEEP", "handle_checkout_request"),
]


def line_of(marker: str) -> int:
    return next(n for n, line in enumerate(WORKLOAD.splitlines(), start=1) if marker in line)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, Path]:
    """A trace of WORKLOAD run from a deep directory, as a deployment's paths are."""
    root = tmp_path_factory.mktemp("terminal")
    app_dir = root / "srv" / "deploy" / "releases" / "2026-12-01-build-4711" / "shop" / "views"
    app_dir.mkdir(parents=True)
    script, config, trace = app_dir / "checkout_handlers.py", app_dir / "shop.cfg", root / "trace.bin"
    script.write_text(WORKLOAD)
    config.write_text("x")
    result = subprocess.run(
        [sys.executable, str(script), str(config), str(trace)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return script, trace


def columns_of(line: str) -> int:
    """The terminal columns a line takes (East Asian wide characters count two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def run_on_terminal(args: list[str], columns: int, cwd: Path) -> str:
    """What aiocop-analyze writes to a pty `columns` wide, with `\\r\\n` made `\\n`."""
    assert ANALYZE
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [ANALYZE, *args, "--color", "never"], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
    assert process.wait(timeout=10) == 0, output.decode(errors="replace")
    return output.decode().replace("\r\n", "\n")


def assert_fits(text: str, columns: int) -> None:
    too_long = [line for line in text.splitlines() if columns_of(line) > columns]
    assert not too_long, f"lines over {columns} columns:\n" + "\n".join(too_long) + "\n\n" + text


def app_keys(text: str) -> list[str]:
    """The `line:function` of each app row that is shown whole on a line."""
    return [f"{line_of(m)}:{f}" for m, f in APP_ROWS if re.search(rf"\.py:{line_of(m)}:{f}\b", text)]


@pytest.mark.parametrize("columns", [100, 160])
def test_the_terminal_table_fits_and_keeps_each_keys_line_and_function(recorded, columns):
    script, trace = recorded
    # From another directory the paths stay absolute, and long.
    text = run_on_terminal([str(trace)], columns, cwd=Path("/"))
    assert_fits(text, columns)
    assert app_keys(text) == [f"{line_of(m)}:{f}" for m, f in APP_ROWS], text
    assert "Blocking I/O by entry point:" in text and "p99 ms" not in text
    if columns == 100:
        # Keys lose path components from the left, whole.
        assert f"…/checkout_handlers.py:{line_of('LINE_SLEEP')}:handle_checkout_request" in text, text
    # --wide: every column, the keys still whole at their end.
    wide = run_on_terminal(["--wide", str(trace)], columns, cwd=Path("/"))
    assert "p99 ms" in wide and "io ms" in wide
    assert app_keys(wide) == app_keys(text)


def test_paths_are_relative_to_the_current_directory_or_the_app_root(recorded):
    script, trace = recorded
    text = run_on_terminal([str(trace)], 160, cwd=script.parent)
    assert f"┆ checkout_handlers.py:{line_of('LINE_SLEEP')}:handle_checkout_request " in text, text
    assert str(script.parent) not in text
    root = script.parent.parent.parent
    text = run_on_terminal(["--app-root", str(root), str(trace)], 160, cwd=Path("/"))
    assert f"┆ shop/views/checkout_handlers.py:{line_of('LINE_OPEN')}:read_configuration_file " in text, text


def test_a_pipe_gets_the_full_table_with_whole_absolute_keys(recorded):
    script, trace = recorded
    result = analyze(str(trace))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for marker, function in APP_ROWS:
        assert f"{script}:{line_of(marker)}:{function}" in text
    assert "p99 ms" in text and "io ms" in text and "…/" not in text
    # As wide as its rows: wider than a small terminal.
    assert max(columns_of(line) for line in text.splitlines()) > 160
    assert analyze("--format", "table", "--color", "never", str(trace)).stdout == text


def test_the_diff_table_fits_the_terminal_too(recorded):
    _, trace = recorded
    text = run_on_terminal(["diff", str(trace), str(trace), "--all"], 100, cwd=Path("/"))
    assert_fits(text, 100)
    assert "unchanged" in text and "severity per" in text and "max ms" not in text
    # Each key keeps its file name, line and function, whole: a key too wide
    # for its column is wrapped after its file name's colon, never cut.
    for marker, function in APP_ROWS:
        one_line = rf"\.py:{line_of(marker)}:{function} "
        wrapped = rf"\.py:{line_of(marker)}:\s*┆[^\n]*\n│\s*┆ {function} "
        assert re.search(one_line, text) or re.search(wrapped, text), (function, text)


def test_stack_keys_show_one_frame_a_line_innermost_first(recorded):
    _, trace = recorded
    text = run_on_terminal(["--by", "stack", str(trace)], 100, cwd=Path("/"))
    assert_fits(text, 100)
    assert app_keys(text) == [f"{line_of(m)}:{f}" for m, f in APP_ROWS], text
    # A stall's groups are named by their innermost frames, not by the module all of them start from.
    stalls = text.split("Stalls:", 1)[1].split("Blocking I/O", 1)[0]
    assert re.search(r":\d+:crunch_the_numbers <- …", stalls), stalls
