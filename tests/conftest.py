"""Shared setup and helpers for the aiocop test suite.

aiocop's setup functions are one-shot per process (a second call logs a
warning and is ignored) and the audit hook they install can never be removed.
So the process-wide setup happens exactly once, here, at import time of this
conftest, with the configuration every test relies on:

    patch_audit_functions()
    start_blocking_io_detection(trace_depth=20)
    detect_slow_tasks(threshold_ms=30)        # CPU sampling on (default)
    activate()

Each test then registers its own collecting callback through the
``slow_tasks`` fixture, and runs its blocking code inside a coroutine on a
fresh, monitored event loop through ``run_monitored``.

Why ``run_monitored`` calls ``aiocop.activate()`` inside the loop: aiocop
1.2.1 only monitors a loop after patching it, and it patches the *running*
loop when activate() (or detect_slow_tasks()) is called from inside it. The
step that calls activate() was scheduled before the patch, so the helper
yields once (``await asyncio.sleep(0)``) before running the body: the body's
first step is then a monitored callback.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiocop
import pytest

THRESHOLD_MS = 30
TRACE_DEPTH = 20

# The analyzer's executable, installed from the wheel's scripts beside this Python.
ANALYZE = shutil.which("aiocop-analyze", path=os.path.dirname(sys.executable))


def analyze(*args: str) -> subprocess.CompletedProcess:
    """Run the real aiocop-analyze CLI."""
    assert ANALYZE, "pip install of the package provides the aiocop-analyze executable"
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


def report_json(*args: str) -> dict:
    """The CLI's JSON report of ``args``, which must succeed."""
    result = analyze("--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


aiocop.patch_audit_functions()
aiocop.start_blocking_io_detection(trace_depth=TRACE_DEPTH)
aiocop.detect_slow_tasks(threshold_ms=THRESHOLD_MS)
aiocop.activate()


def run_monitored(
    body: Callable[[], Awaitable[Any]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> Any:
    """Run ``await body()`` on a new event loop that aiocop monitors.

    The loop comes from ``loop_factory`` (default: a stock asyncio loop) and is
    closed afterwards. Blocking calls made by ``body`` run inside monitored
    callback slices; the resulting SlowTaskEvents are delivered to the
    registered callbacks while the loop runs. Returns what ``body`` returns;
    exceptions (including HighSeverityBlockingIoException raised by the loop)
    propagate.
    """

    async def main() -> Any:
        aiocop.activate()
        await asyncio.sleep(0)
        return await body()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def run_monitored_in_thread(
    body: Callable[[], Awaitable[Any]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> Any:
    """Like run_monitored, but the loop runs on a new (non-main) thread."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run_monitored(body, loop_factory)
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="monitored-loop")
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "monitored loop thread did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def busy_spin(seconds: float) -> None:
    """Burn CPU in pure Python for ``seconds`` without any audited call."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


class SlowTaskCollector:
    """A slow-task callback that records every SlowTaskEvent it receives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[aiocop.SlowTaskEvent] = []

    def __call__(self, event: aiocop.SlowTaskEvent) -> None:
        with self._lock:
            self.events.append(event)

    def with_reason(self, reason: str) -> list[aiocop.SlowTaskEvent]:
        return [event for event in self.events if event.reason == reason]

    def blocking_named(self, name: str) -> list[tuple[aiocop.SlowTaskEvent, aiocop.BlockingEventInfo]]:
        """(slow task event, blocking event) pairs whose blocking event is ``name(...)``."""
        return [
            (event, info)
            for event in self.events
            for info in event.blocking_events
            if info["event"].startswith(name + "(")
        ]

    def blocking_containing(self, text: str) -> list[tuple[aiocop.SlowTaskEvent, aiocop.BlockingEventInfo]]:
        """(slow task event, blocking event) pairs whose event string contains ``text``."""
        return [(event, info) for event in self.events for info in event.blocking_events if text in info["event"]]

    def single_event_with(self, text: str) -> aiocop.SlowTaskEvent:
        """The one SlowTaskEvent that has a blocking event whose string contains ``text``."""
        matches = {id(event): event for event, _ in self.blocking_containing(text)}
        assert len(matches) == 1, f"expected one slow task event with {text!r}, got {self.events!r}"
        return next(iter(matches.values()))


@pytest.fixture
def slow_tasks():
    """Register a collecting slow-task callback for the duration of one test.

    Teardown unregisters it, clears context providers, disables
    raise-on-violations and re-activates monitoring, so no test leaks state.
    """
    collector = SlowTaskCollector()
    aiocop.activate()
    aiocop.register_slow_task_callback(collector)
    try:
        yield collector
    finally:
        aiocop.unregister_slow_task_callback(collector)
        aiocop.clear_context_providers()
        aiocop.disable_raise_on_violations()
        aiocop.activate()
