"""Context providers cannot hurt the application (issue 17 item 7).

A provider runs in every monitored callback that blocks or is slow: its
failures are logged once, its Ctrl-C still stops the program, and its own
time is never the application's (a slow provider is disabled).
"""

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time

import aiocop
from aiocop.core import callbacks
from conftest import THRESHOLD_MS, run_monitored


def aiocop_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("aiocop")]


class NotAnException(BaseException):
    """What a provider may raise that `except Exception` does not catch."""


def test_a_provider_raising_a_base_exception_is_logged_once_for_100_steps(slow_tasks, tmp_path, caplog):
    def base_exception_provider():
        raise NotAnException("provider gave up")

    aiocop.register_context_provider(base_exception_provider)

    async def body():
        for _ in range(100):
            os.stat(tmp_path)
            await asyncio.sleep(0)
        return "done"

    with caplog.at_level(logging.WARNING):
        assert run_monitored(body) == "done"

    assert len(slow_tasks.with_reason("io_blocking")) == 100
    [warning] = aiocop_warnings(caplog)
    assert "base_exception_provider" in warning and "provider gave up" in warning
    assert callbacks.get_error_counts()["base_exception_provider"] >= 100


def test_ctrl_c_in_a_provider_ends_the_program(tmp_path):
    """A KeyboardInterrupt raised by a provider stops the loop as one raised by the program would."""
    program = textwrap.dedent(
        f"""
        import asyncio, os, sys
        import aiocop

        calls = 0

        def interrupted_provider():
            global calls
            calls += 1
            if calls == 5:
                raise KeyboardInterrupt
            return {{}}

        async def main():
            aiocop.activate()
            await asyncio.sleep(0)
            for step in range(100):
                os.stat({str(tmp_path)!r})
                await asyncio.sleep(0)
            print("ran all 100 steps")

        aiocop.patch_audit_functions()
        aiocop.start_blocking_io_detection()
        aiocop.detect_slow_tasks()
        aiocop.register_context_provider(interrupted_provider)
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted after", calls, "provider calls")
            sys.exit(130)
        """
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130, result.stdout + result.stderr
    # Interrupted at the provider's 5th call (asyncio.run then cancels the task, calling it a few more times).
    assert result.stdout.startswith("interrupted after"), result.stdout
    assert "ran all 100 steps" not in result.stdout
    assert "error while capturing context" not in result.stderr


def test_a_50_ms_provider_does_not_make_slices_slow_and_is_disabled_with_one_warning(slow_tasks, tmp_path, caplog):
    calls = []

    def slow_provider():
        calls.append(1)
        time.sleep(0.05)
        return {"slow": True}

    aiocop.register_context_provider(slow_provider)

    async def body():
        for _ in range(10):
            os.stat(tmp_path)
            await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING):
        run_monitored(body)

    events = slow_tasks.with_reason("io_blocking")
    assert len(events) == 10
    assert not any(event.exceeded_threshold for event in events), [e.elapsed_ms for e in events]
    assert all(event.elapsed_ms < THRESHOLD_MS for event in events)
    assert len(calls) == callbacks.PROVIDER_SLOW_CALLS_ALLOWED, "disabled once over the limit that often"
    [warning] = aiocop_warnings(caplog)
    assert "slow_provider" in warning and "disabled" in warning

    # Registering it again gives it another chance.
    aiocop.register_context_provider(slow_provider)
    calls.clear()
    run_monitored(body)
    assert len(calls) == callbacks.PROVIDER_SLOW_CALLS_ALLOWED
