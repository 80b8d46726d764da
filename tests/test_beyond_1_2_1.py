"""Behaviour that goes beyond aiocop 1.2.1.

Every test in this file FAILS on aiocop 1.2.1 (by design, not marked xfail)
and must pass on this implementation:

1. loops on non-main threads are monitored (1.2.1's audit hook ignores every
   thread but the main one);
2. aiocop never reports its own work (1.2.1 runs context providers while the
   slice's events are being captured, so a provider's I/O is blamed on the task);
3. events past the 50th are counted in ``dropped_blocking_events`` and in the
   severity score (1.2.1 silently drops them);
4. on stock asyncio, I/O readiness callbacks (a protocol's ``data_received``,
   ``loop.add_reader`` callbacks) are timed (1.2.1 only wraps callbacks that go
   through call_soon/call_later/call_at/call_soon_threadsafe).
"""

import asyncio
import contextlib
import dataclasses
import inspect
import os
import socket
import threading
import time

import aiocop
import pytest
import uvloop
from conftest import SlowTaskCollector, run_monitored, run_monitored_in_thread

both_loops = pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)


@both_loops
def test_loop_on_a_non_main_thread_is_monitored(slow_tasks, tmp_path, loop_factory):
    path = tmp_path / "data.txt"
    path.write_text("hello")

    async def read_in_thread():
        open_line = inspect.currentframe().f_lineno + 1
        with open(path) as f:
            return open_line, f.read()

    open_line, content = run_monitored_in_thread(read_in_thread, loop_factory)

    assert content == "hello"
    [(event, info)] = slow_tasks.blocking_named("open")
    assert f"open({path}" in info["event"]
    assert info["entry_point"].endswith(f"{os.path.basename(__file__)}:{open_line}:read_in_thread")
    assert event.reason == "io_blocking"


@both_loops
def test_aiocop_never_reports_its_own_work(slow_tasks, tmp_path, loop_factory):
    provider_file = tmp_path / "provider.txt"
    provider_file.write_text("span")
    callback_dir = tmp_path / "callback"
    callback_dir.mkdir()
    target = tmp_path / "target"
    target.mkdir()

    def file_reading_provider():
        with open(provider_file) as f:
            return {"span": f.read()}

    def stat_doing_callback(event):
        os.stat(callback_dir)

    aiocop.register_context_provider(file_reading_provider)
    aiocop.register_slow_task_callback(stat_doing_callback)
    try:

        async def body():
            await asyncio.sleep(0)
            os.stat(target)
            await asyncio.sleep(0)

        run_monitored(body, loop_factory)
    finally:
        aiocop.unregister_slow_task_callback(stat_doing_callback)

    seen = [info["event"] for event in slow_tasks.events for info in event.blocking_events]
    assert seen == [f"os.stat({target})"]
    [event] = slow_tasks.events
    assert event.severity_score == 1
    assert event.severity_level == "low"
    assert event.context == {"span": "span"}


@both_loops
def test_events_past_the_50th_are_counted(slow_tasks, tmp_path, loop_factory):
    async def body():
        for i in range(120):
            with contextlib.suppress(FileNotFoundError):
                os.stat(tmp_path / f"missing-{i}")

    run_monitored(body, loop_factory)

    [event] = slow_tasks.events
    assert len(event.blocking_events) == 50
    assert event.dropped_blocking_events == 70
    assert event.severity_score == 120
    assert event.severity_level == "high"


def test_slow_task_event_has_dropped_blocking_events_as_last_field():
    last = dataclasses.fields(aiocop.SlowTaskEvent)[-1]
    assert last.name == "dropped_blocking_events"
    assert last.default == 0

    event = aiocop.SlowTaskEvent(1.0, 30.0, False, 1, "low", "io_blocking", [])
    assert event.dropped_blocking_events == 0


def test_dropped_blocking_events_is_zero_under_the_cap(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    [event] = slow_tasks.events
    assert event.dropped_blocking_events == 0


class SleepyProtocol(asyncio.Protocol):
    def __init__(self, received):
        self.received = received

    def data_received(self, data):
        time.sleep(0.05)
        self.received.set_result(data)


def test_protocol_data_received_is_timed_on_asyncio(slow_tasks):
    async def body():
        loop = asyncio.get_running_loop()
        received = loop.create_future()
        server = await loop.create_server(lambda: SleepyProtocol(received), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        data = await asyncio.wait_for(received, 5)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return data

    assert run_monitored(body) == b"ping"

    [(event, info)] = slow_tasks.blocking_named("time.sleep")
    assert "data_received" in info["entry_point"]
    assert event.exceeded_threshold is True
    assert event.severity_level == "high"


def test_add_reader_callback_is_timed_on_asyncio(slow_tasks):
    reader_sock, writer_sock = socket.socketpair()

    async def body():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_readable():
            loop.remove_reader(reader_sock)
            reader_sock.recv(1)
            time.sleep(0.04)
            done.set_result(None)

        loop.add_reader(reader_sock, on_readable)
        writer_sock.send(b"x")
        await asyncio.wait_for(done, 5)

    with reader_sock, writer_sock:
        run_monitored(body)

    [(event, info)] = slow_tasks.blocking_named("time.sleep")
    assert info["entry_point"].endswith(":on_readable")
    assert event.exceeded_threshold is True
    assert [i["event"].split("(")[0] for i in event.blocking_events] == ["socket.socket.recv", "time.sleep"]


def test_thread_loop_callbacks_run_in_that_thread(tmp_path):
    threads = SlowTaskCollector()
    seen_threads = []

    def record_thread(event):
        seen_threads.append(threading.current_thread().name)

    aiocop.register_slow_task_callback(threads)
    aiocop.register_slow_task_callback(record_thread)
    try:

        async def body():
            os.stat(tmp_path)

        run_monitored_in_thread(body)
    finally:
        aiocop.unregister_slow_task_callback(threads)
        aiocop.unregister_slow_task_callback(record_thread)

    assert len(threads.events) == 1
    assert seen_threads == ["monitored-loop"]
