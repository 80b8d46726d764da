"""raise_on_violations: HighSeverityBlockingIoException out of the event loop."""

import asyncio
import os
import time

import aiocop
import pytest
from aiocop import HighSeverityBlockingIoException
from conftest import THRESHOLD_MS, busy_spin, run_monitored

BANNER = "\n" + "=" * 80 + "\nHIGH SEVERITY BLOCKING I/O DETECTED"


def assert_high_severity_message(exc, score):
    message = str(exc)
    assert message.startswith(BANNER)
    assert "HIGH SEVERITY BLOCKING I/O DETECTED" in message
    assert f"Severity Score: {score}" in message
    assert "Severity Level: high" in message


async def sleep_50ms():
    time.sleep(0.05)


def test_violation_propagates_out_of_runner_under_context_manager(slow_tasks):
    with aiocop.raise_on_violations():
        with pytest.raises(HighSeverityBlockingIoException) as excinfo:
            run_monitored(sleep_50ms)

    exc = excinfo.value
    assert_high_severity_message(exc, 50)
    assert exc.severity_score == 50
    assert exc.severity_level == "high"
    assert exc.elapsed_ms >= 50
    assert exc.threshold_ms == float(THRESHOLD_MS)
    assert [event["event"] for event in exc.events] == ["time.sleep(0.05)"]
    assert "time.sleep(0.05)" in str(exc)
    assert exc.events[0]["trace"] in str(exc)


def test_violation_propagates_out_of_asyncio_run(slow_tasks):
    async def main():
        aiocop.activate()
        aiocop.enable_raise_on_violations()
        await asyncio.sleep(0)
        time.sleep(0.05)

    with pytest.raises(HighSeverityBlockingIoException) as excinfo:
        asyncio.run(main())

    assert_high_severity_message(excinfo.value, 50)


def test_violation_propagates_out_of_run_until_complete(slow_tasks):
    async def main():
        aiocop.activate()
        aiocop.enable_raise_on_violations()
        await asyncio.sleep(0)
        time.sleep(0.05)
        time.sleep(0.001)

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(HighSeverityBlockingIoException) as excinfo:
            loop.run_until_complete(main())
    finally:
        loop.close()

    assert_high_severity_message(excinfo.value, 100)
    assert excinfo.value.severity_score == 100


def test_callbacks_still_receive_the_violating_event(slow_tasks):
    with aiocop.raise_on_violations():
        with pytest.raises(HighSeverityBlockingIoException):
            run_monitored(sleep_50ms)

    [(event, _)] = slow_tasks.blocking_named("time.sleep")
    assert event.severity_level == "high"
    assert event.exceeded_threshold is True


def test_no_raise_when_disabled(slow_tasks):
    assert aiocop.is_raise_on_violations_enabled() is False

    run_monitored(sleep_50ms)

    [event] = slow_tasks.events
    assert event.severity_level == "high"
    assert event.exceeded_threshold is True


def test_no_raise_after_disable(slow_tasks):
    aiocop.enable_raise_on_violations()
    aiocop.disable_raise_on_violations()

    run_monitored(sleep_50ms)

    assert len(slow_tasks.events) == 1


def test_no_raise_below_high_severity(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)
        with open(tmp_path / "f", "w") as f:
            f.write("x")
        busy_spin(0.05)
        return "survived"

    with aiocop.raise_on_violations():
        assert run_monitored(body) == "survived"

    [event] = slow_tasks.events
    assert event.exceeded_threshold is True
    assert event.severity_score == 11
    assert event.severity_level == "medium"


def test_no_raise_when_high_severity_slice_is_under_threshold(slow_tasks):
    async def body():
        time.sleep(0)
        return "survived"

    with aiocop.raise_on_violations():
        assert run_monitored(body) == "survived"

    [event] = slow_tasks.events
    assert event.severity_level == "high"
    assert event.exceeded_threshold is False


def test_no_raise_when_monitoring_is_deactivated(slow_tasks):
    async def body():
        aiocop.deactivate()
        await asyncio.sleep(0)
        time.sleep(0.05)
        return "survived"

    with aiocop.raise_on_violations():
        assert run_monitored(body) == "survived"

    assert slow_tasks.events == []


def test_context_manager_scopes_the_flag():
    assert aiocop.is_raise_on_violations_enabled() is False
    with aiocop.raise_on_violations() as manager:
        assert manager is not None
        assert aiocop.is_raise_on_violations_enabled() is True
    assert aiocop.is_raise_on_violations_enabled() is False


def test_enable_inside_a_task_does_not_leak_out(slow_tasks):
    async def body():
        aiocop.enable_raise_on_violations()
        return aiocop.is_raise_on_violations_enabled()

    assert run_monitored(body) is True
    assert aiocop.is_raise_on_violations_enabled() is False


def test_exception_message_format():
    events = [
        {"event": "time.sleep(0.05)", "trace": "app.py:3:f <- app.py:9:g", "entry_point": "app.py:3:f", "severity": 50},
        {"event": "open(/x, r, 524288)", "trace": "app.py:4:f", "entry_point": "app.py:4:f", "severity": 10},
    ]
    exc = HighSeverityBlockingIoException(
        severity_score=60, severity_level="high", elapsed_ms=51.234, threshold_ms=30, events=events
    )

    assert str(exc) == (
        "\n" + "=" * 80 + "\n"
        "HIGH SEVERITY BLOCKING I/O DETECTED\n" + "=" * 80 + "\n"
        "Async task exceeded threshold:\n"
        "  - Severity Score: 60\n"
        "  - Severity Level: high\n"
        "  - Elapsed Time: 51.23ms\n"
        "  - Threshold: 30.00ms\n"
        "\nBlocking I/O Events:"
        "\n  - time.sleep(0.05)\n    at app.py:3:f <- app.py:9:g"
        "\n  - open(/x, r, 524288)\n    at app.py:4:f"
        "\n" + "=" * 80 + "\n"
    )
    assert (exc.severity_score, exc.severity_level, exc.elapsed_ms, exc.threshold_ms) == (60, "high", 51.234, 30)
    assert exc.events is events
    assert isinstance(exc, Exception)


def test_exception_message_without_events():
    exc = HighSeverityBlockingIoException(50, "high", 40.0, 30.0, [])

    assert str(exc).endswith("\nBlocking I/O Events:\n" + "=" * 80 + "\n")
