"""One-shot setup functions, patched functions and global switches.

The process-wide setup ran once in conftest.py; these tests call each setup
function a second time and check that it warns and changes nothing.
"""

import logging
import os
import sys

import aiocop
from conftest import THRESHOLD_MS, TRACE_DEPTH, SlowTaskCollector, run_monitored


def aiocop_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("aiocop")]


def test_second_patch_audit_functions_warns_and_does_not_patch_again(slow_tasks, tmp_path, caplog):
    before = aiocop.get_patched_functions()

    with caplog.at_level(logging.WARNING):
        aiocop.patch_audit_functions()

    [warning] = aiocop_warnings(caplog)
    assert "patch_audit_functions" in warning.getMessage()
    assert aiocop.get_patched_functions() == before

    async def body():
        os.stat(tmp_path)

    run_monitored(body)
    [event] = slow_tasks.events
    assert [info["event"] for info in event.blocking_events] == [f"os.stat({tmp_path})"]


def test_second_start_blocking_io_detection_warns_and_keeps_trace_depth(slow_tasks, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        aiocop.start_blocking_io_detection(trace_depth=1)

    [warning] = aiocop_warnings(caplog)
    assert "start_blocking_io_detection" in warning.getMessage()

    async def body():
        os.stat(tmp_path)

    run_monitored(body)
    [event] = slow_tasks.events
    assert len(event.blocking_events) == 1
    assert len(event.blocking_events[0]["trace"].split(" <- ")) == TRACE_DEPTH


def test_second_detect_slow_tasks_warns_and_keeps_threshold_and_callbacks(slow_tasks, tmp_path, caplog):
    ignored = SlowTaskCollector()

    with caplog.at_level(logging.WARNING):
        aiocop.detect_slow_tasks(threshold_ms=1, on_slow_task=ignored)

    [warning] = aiocop_warnings(caplog)
    assert "detect_slow_tasks" in warning.getMessage()
    assert aiocop.get_slow_task_threshold_ms() == float(THRESHOLD_MS)

    async def body():
        os.stat(tmp_path)

    run_monitored(body)
    assert ignored.events == []
    [event] = slow_tasks.events
    assert event.threshold_ms == float(THRESHOLD_MS)


def test_second_start_cpu_sampling_warns(caplog):
    assert aiocop.is_cpu_sampling_started() is True

    with caplog.at_level(logging.WARNING):
        aiocop.start_cpu_sampling(interval_ms=1)

    [warning] = aiocop_warnings(caplog)
    assert "start_cpu_sampling" in warning.getMessage()
    assert aiocop.is_cpu_sampling_started() is True


def test_slow_task_threshold_is_the_configured_one():
    assert aiocop.get_slow_task_threshold_ms() == 30.0


def test_patched_functions_after_patch_audit_functions():
    patched = aiocop.get_patched_functions()

    assert isinstance(patched, list)
    assert len(patched) == len(set(patched))
    for name in [
        "os.stat",
        "os.access",
        "os.getcwd",
        "os.path.abspath",
        "os.sendfile",
        "socket.socket.connect",
        "socket.socket.connect_ex",
        "socket.socket.accept",
        "socket.socket.bind",
        "socket.socket.send",
        "socket.socket.sendall",
        "socket.socket.recv",
        "socket.socket.recv_into",
        "ssl.SSLSocket.read",
        "ssl.SSLSocket.write",
    ]:
        assert name in patched
    assert ("time.sleep" in patched) is (sys.version_info < (3, 13))
    assert set(patched) <= set(aiocop.get_blocking_events_dict())


def test_patched_functions_list_is_a_copy():
    patched = aiocop.get_patched_functions()
    patched.clear()

    assert "os.stat" in aiocop.get_patched_functions()


def test_activate_and_deactivate_switch_monitoring():
    assert aiocop.is_monitoring_active() is True
    try:
        aiocop.deactivate()
        assert aiocop.is_monitoring_active() is False
        aiocop.deactivate()
        assert aiocop.is_monitoring_active() is False
    finally:
        aiocop.activate()
    assert aiocop.is_monitoring_active() is True


def test_enable_and_disable_raise_on_violations():
    assert aiocop.is_raise_on_violations_enabled() is False
    try:
        aiocop.enable_raise_on_violations()
        assert aiocop.is_raise_on_violations_enabled() is True
    finally:
        aiocop.disable_raise_on_violations()
    assert aiocop.is_raise_on_violations_enabled() is False
