"""aiocop's pytest plugin: fail the tests that block the event loop.

Installed with the package (a ``pytest11`` entry point) and inactive unless
asked for: ``pytest --aiocop``, or ``aiocop = true`` in the pytest ini
options. Inactive, it adds its options and markers and imports nothing else
(``-p no:aiocop`` leaves it out entirely). Active, every event loop the
session runs (pytest-asyncio's, anyio's, ``asyncio.run`` in a sync test,
uvloop, a fixture's) is monitored, and a test whose code blocked the loop
fails with the event, its stack and a fix (``aiocop.gate.plugin``).
"""

from __future__ import annotations

from typing import Any

import pytest

_FAIL_ON_HELP = (
    "what fails a test: a severity level (low, medium, high: the slice's blocking events, less the allowed ones,"
    " score at least that level), 'any' (any blocking event), or event names and globs"
    " ('time.sleep,socket.*'; 'cpu' for CPU slices over the threshold). Levels and 'any' include CPU slices."
    " Default: medium"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiocop", "aiocop: fail tests that block the event loop")
    group.addoption(
        "--aiocop",
        action="store_true",
        default=False,
        help="monitor every event loop the tests run; fail the tests that block it (ini: aiocop = true)",
    )
    group.addoption("--aiocop-fail-on", metavar="WHAT", default=None, help=_FAIL_ON_HELP)
    group.addoption(
        "--aiocop-warn-only",
        action="store_true",
        default=False,
        help="report blocking in each test's report and the summary, but fail nothing",
    )
    group.addoption(
        "--aiocop-stale",
        choices=("warn", "fail"),
        default="warn",
        help="allow-list entries that matched nothing in this run: listed in the summary (warn, the default),"
        " or listed and failing the session (fail)",
    )
    group.addoption(
        "--aiocop-record",
        metavar="PATH",
        default=None,
        help="record the run to a trace file, each slice with its test's node id as context 'test'"
        " ({pid} in PATH: one file per process, as pytest-xdist's workers need);"
        " then: aiocop-analyze --by context:test PATH",
    )
    group.addoption(
        "--aiocop-threshold-ms",
        metavar="MS",
        type=float,
        default=None,
        help="a callback running this long without blocking I/O is a CPU slice (default: 30)",
    )
    parser.addini("aiocop", type="bool", default=False, help="turn aiocop's test gate on, as --aiocop does")
    parser.addini("aiocop_fail_on", default="", help="the default of --aiocop-fail-on")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "aiocop(allow=[...]): aiocop allow-list entries for this test only, as in [tool.aiocop] allow"
        ' ("module:qualname", "module.*", or {id=..., events=[...], reason=...})',
    )
    config.addinivalue_line("markers", "aiocop_skip: aiocop does not gate this test")
    if not (config.getoption("aiocop") or _ini_turns_on(config)):
        return
    from aiocop.gate.plugin import Gate  # only now: an inactive plugin costs nothing

    config.pluginmanager.register(Gate.from_config(config), "aiocop-gate")


def _ini_turns_on(config: pytest.Config) -> bool:
    """The ini option ``aiocop``; a value that is not a truth value is a usage error naming it
    (pytest's own message, "invalid truth value 'maybe'", names no option; pytest 9 raises it
    as a UsageError, earlier ones as a ValueError)."""
    try:
        return bool(config.getini("aiocop"))
    except (ValueError, pytest.UsageError) as error:
        raise pytest.UsageError(f"ini option aiocop: {error} (give true or false)") from None


def options_of(config: pytest.Config) -> dict[str, Any]:
    """The plugin's settings, options winning over the ini file."""
    return {
        "fail_on": config.getoption("aiocop_fail_on") or config.getini("aiocop_fail_on") or None,
        "warn_only": bool(config.getoption("aiocop_warn_only")),
        "stale": config.getoption("aiocop_stale"),
        "record": config.getoption("aiocop_record"),
        "threshold_ms": config.getoption("aiocop_threshold_ms"),
    }
