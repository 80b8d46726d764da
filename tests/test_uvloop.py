"""Core detection on uvloop: the same real blocking calls, a uvloop event loop."""

import asyncio
import contextvars
import inspect
import os
import socket
import time

import aiocop
import pytest
import uvloop
from conftest import run_monitored

request_id = contextvars.ContextVar("uvloop_request_id", default=None)


def run_on_uvloop(body):
    return run_monitored(body, loop_factory=uvloop.new_event_loop)


def test_runs_on_a_uvloop_loop():
    async def body():
        return type(asyncio.get_running_loop())

    assert run_on_uvloop(body) is uvloop.Loop


def test_open_is_reported_on_uvloop(slow_tasks, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")

    async def read_on_uvloop():
        open_line = inspect.currentframe().f_lineno + 1
        with open(path) as f:
            return open_line, f.read()

    open_line, content = run_on_uvloop(read_on_uvloop)

    assert content == "hello"
    [(event, info)] = slow_tasks.blocking_named("open")
    assert info["event"].startswith(f"open({path}, r, ")
    assert info["entry_point"].endswith(f"{os.path.basename(__file__)}:{open_line}:read_on_uvloop")
    assert event.reason == "io_blocking"
    assert event.severity_level == "medium"


def test_time_sleep_is_reported_on_uvloop(slow_tasks):
    async def body():
        time.sleep(0.05)

    run_on_uvloop(body)

    [(event, info)] = slow_tasks.blocking_named("time.sleep")
    assert info["event"] == "time.sleep(0.05)"
    assert event.exceeded_threshold is True
    assert event.elapsed_ms >= 50
    assert event.severity_score == 50
    assert event.severity_level == "high"


def test_blocking_socket_connect_is_reported_on_uvloop(slow_tasks):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        async def body():
            with socket.socket() as client:
                client.connect(("127.0.0.1", port))

        run_on_uvloop(body)

    [(event, info)] = slow_tasks.blocking_named("socket.socket.connect")
    assert f"('127.0.0.1', {port})" in info["event"]
    assert event.severity_level == "high"


def spin_on_uvloop(seconds):
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def test_cpu_bound_slice_is_reported_with_samples_on_uvloop(slow_tasks):
    async def body():
        spin_on_uvloop(0.12)

    run_on_uvloop(body)

    [event] = slow_tasks.events
    assert event.reason == "cpu_blocking"
    assert event.exceeded_threshold is True
    assert event.blocking_events == []
    assert event.cpu_stack_samples
    assert "spin_on_uvloop" in event.cpu_stack_samples[0]["entry_point"]


def test_timer_callbacks_are_monitored_on_uvloop(slow_tasks, tmp_path):
    async def body():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_timer():
            os.stat(tmp_path)
            done.set_result(None)

        loop.call_later(0.001, on_timer)
        await done

    run_on_uvloop(body)

    [(_, info)] = slow_tasks.blocking_named("os.stat")
    assert info["entry_point"].endswith(":on_timer")


def test_context_provider_on_uvloop(slow_tasks, tmp_path):
    aiocop.register_context_provider(lambda: {"request_id": request_id.get()})

    async def body():
        request_id.set("uv-1")
        os.stat(tmp_path)

    run_on_uvloop(body)

    [event] = slow_tasks.events
    assert event.context == {"request_id": "uv-1"}


def test_violation_propagates_out_of_uvloop(slow_tasks):
    async def body():
        time.sleep(0.05)

    with aiocop.raise_on_violations():
        with pytest.raises(aiocop.HighSeverityBlockingIoException) as excinfo:
            run_on_uvloop(body)

    assert "HIGH SEVERITY BLOCKING I/O DETECTED" in str(excinfo.value)
    assert "Severity Score: 50" in str(excinfo.value)
    assert "Severity Level: high" in str(excinfo.value)
