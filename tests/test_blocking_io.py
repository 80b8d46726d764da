"""Blocking I/O detection on a stock asyncio loop, with real blocking calls."""

import asyncio
import concurrent.futures.thread  # noqa: F401 - imported up front: a first import is itself blocking I/O
import contextlib
import inspect
import os
import pathlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import aiocop
import pytest
from conftest import THRESHOLD_MS, TRACE_DEPTH, run_monitored


def read_config(path):
    """A sync helper doing blocking file I/O, called from a coroutine."""
    open_line = inspect.currentframe().f_lineno + 1
    with open(path) as f:
        return open_line, f.read()


def test_open_of_a_real_file_is_reported(slow_tasks, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")

    async def body():
        with open(path) as f:
            return f.read()

    assert run_monitored(body) == "hello"

    [(event, info)] = slow_tasks.blocking_named("open")
    assert info["event"].startswith(f"open({path}, r, ")
    assert info["severity"] == 10
    assert event.reason == "io_blocking"
    assert event.severity_score == 10
    assert event.severity_level == "medium"
    assert event.blocking_events == [info]


def test_fast_io_slice_is_reported_without_exceeding_threshold(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    [event] = slow_tasks.events
    assert event.reason == "io_blocking"
    assert event.exceeded_threshold is False
    assert event.threshold_ms == float(THRESHOLD_MS)
    assert 0 <= event.elapsed_ms < THRESHOLD_MS
    assert event.blocking_events[0]["event"] == f"os.stat({tmp_path})"
    assert event.severity_score == 1
    assert event.severity_level == "low"


def test_time_sleep_is_reported_as_slow_high_severity(slow_tasks):
    async def body():
        time.sleep(0.05)

    run_monitored(body)

    [(event, info)] = slow_tasks.blocking_named("time.sleep")
    assert info["event"] == "time.sleep(0.05)"
    assert info["severity"] == 50
    assert event.reason == "io_blocking"
    assert event.exceeded_threshold is True
    assert event.elapsed_ms >= 50
    assert event.threshold_ms == float(THRESHOLD_MS)
    assert event.severity_score == 50
    assert event.severity_level == "high"


def test_blocking_socket_connect_is_reported(slow_tasks):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        async def body():
            with socket.socket() as client:
                client.connect(("127.0.0.1", port))

        run_monitored(body)

    [(event, info)] = slow_tasks.blocking_named("socket.socket.connect")
    assert f"('127.0.0.1', {port})" in info["event"]
    assert info["severity"] == 50
    assert event.severity_level == "high"


def test_socket_calls_with_zero_timeout_are_not_reported(slow_tasks):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = listener.getsockname()

        async def body():
            with socket.socket() as non_blocking:
                non_blocking.setblocking(False)
                non_blocking.connect_ex(address)
            with socket.socket() as with_timeout:
                with_timeout.settimeout(5.0)
                with_timeout.connect_ex(address)

        run_monitored(body)

    reported = [info["event"] for _, info in slow_tasks.blocking_containing("socket.socket.connect")]
    assert len(reported) == 1, reported
    assert reported[0].startswith("socket.socket.connect_ex(")


def test_subprocess_run_is_reported(slow_tasks):
    async def body():
        return subprocess.run(["true"]).returncode

    assert run_monitored(body) == 0

    [(event, info)] = slow_tasks.blocking_named("subprocess.Popen")
    assert "true" in info["event"]
    assert info["severity"] == 50
    assert event.severity_level == "high"


def test_sqlite3_connect_is_reported(slow_tasks, tmp_path):
    database = tmp_path / "db.sqlite"

    async def body():
        sqlite3.connect(database).close()

    run_monitored(body)

    [(_, info)] = slow_tasks.blocking_named("sqlite3.connect")
    assert info["event"] == f"sqlite3.connect({database})"
    assert info["severity"] == 10


def test_first_import_of_a_module_is_reported(slow_tasks, tmp_path, monkeypatch):
    module_name = f"probe_module_{uuid.uuid4().hex}"
    (tmp_path / f"{module_name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    async def body():
        return __import__(module_name).VALUE

    try:
        assert run_monitored(body) == 1
    finally:
        sys.modules.pop(module_name, None)

    [(event, info)] = slow_tasks.blocking_named("import")
    assert info["event"].startswith(f"import({module_name}, ")
    assert info["severity"] == 50
    assert event.severity_score >= 50


def test_entry_point_is_innermost_frame_outside_aiocop(slow_tasks, tmp_path):
    path = tmp_path / "config.ini"
    path.write_text("[main]")

    async def body():
        return read_config(path)

    open_line, _ = run_monitored(body)

    [(_, info)] = slow_tasks.blocking_named("open")
    assert info["entry_point"].endswith(f"{os.path.basename(__file__)}:{open_line}:read_config")
    assert __file__.endswith(info["entry_point"].split(":")[0])


def test_entry_point_of_a_patched_function_is_its_caller(slow_tasks, tmp_path):
    async def stat_in_coroutine():
        stat_line = inspect.currentframe().f_lineno + 1
        os.stat(tmp_path)
        return stat_line

    stat_line = run_monitored(stat_in_coroutine)

    [(_, info)] = slow_tasks.blocking_named("os.stat")
    assert info["entry_point"].endswith(f"{os.path.basename(__file__)}:{stat_line}:stat_in_coroutine")


def test_trace_lists_frames_innermost_first_up_to_trace_depth(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    [(_, info)] = slow_tasks.blocking_named("os.stat")
    frames = info["trace"].split(" <- ")
    assert len(frames) == TRACE_DEPTH
    assert frames[0] == info["entry_point"]
    assert frames[0].endswith(":body")
    assert all(frame.count(":") >= 2 for frame in frames)
    # None of aiocop's own frames, compared by file as frames show them: a "aiocop" substring would also
    # match this test's own file wherever the checkout sits in a folder named aiocop under one named src.
    assert not {frame.rsplit(":", 2)[0] for frame in frames} & aiocop_package_files_as_frames_show_them()


def aiocop_package_files_as_frames_show_them() -> set[str]:
    package = pathlib.Path(aiocop.__file__).parent
    return {aiocop._native.format_frame(str(path), 0, "").rsplit(":", 2)[0] for path in package.rglob("*.py")}


def test_each_callback_slice_is_reported_separately(slow_tasks, tmp_path):
    second = tmp_path / "second"

    async def body():
        os.stat(tmp_path)
        os.stat(tmp_path)
        await asyncio.sleep(0)
        with contextlib.suppress(FileNotFoundError):
            os.stat(second)

    run_monitored(body)

    assert [len(event.blocking_events) for event in slow_tasks.events] == [2, 1]
    assert slow_tasks.events[1].blocking_events[0]["event"] == f"os.stat({second})"


def test_at_most_50_blocking_events_per_callback(slow_tasks, tmp_path):
    async def body():
        for i in range(120):
            with contextlib.suppress(FileNotFoundError):
                os.stat(tmp_path / f"missing-{i}")

    run_monitored(body)

    [event] = slow_tasks.events
    assert len(event.blocking_events) == 50
    assert [info["event"] for info in event.blocking_events] == [
        f"os.stat({tmp_path / f'missing-{i}'})" for i in range(50)
    ]


def test_reset_blocking_events_forgets_earlier_events_of_the_slice(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)
        aiocop.reset_blocking_events()
        os.listdir(tmp_path)

    run_monitored(body)

    [event] = slow_tasks.events
    assert [info["event"] for info in event.blocking_events] == [f"os.listdir({tmp_path})"]


def test_blocking_io_outside_an_event_loop_is_not_reported(slow_tasks, tmp_path):
    os.stat(tmp_path)
    time.sleep(0.001)
    with open(tmp_path / "f", "w") as f:
        f.write("x")

    assert slow_tasks.events == []


def test_quiet_slices_produce_no_events(slow_tasks):
    async def body():
        total = 0
        for i in range(10):
            total += i
            await asyncio.sleep(0)
        return total

    assert run_monitored(body) == 45
    assert slow_tasks.events == []


def test_deactivate_stops_events_and_activate_resumes_them(slow_tasks, tmp_path):
    paused, resumed = tmp_path / "paused", tmp_path / "resumed"
    paused.mkdir()
    resumed.mkdir()
    states = []

    async def body():
        aiocop.deactivate()
        states.append(aiocop.is_monitoring_active())
        await asyncio.sleep(0)
        os.stat(paused)
        time.sleep(0.04)
        aiocop.activate()
        states.append(aiocop.is_monitoring_active())
        await asyncio.sleep(0)
        os.stat(resumed)

    run_monitored(body)

    assert states == [False, True]
    assert [info["event"] for event in slow_tasks.events for info in event.blocking_events] == [f"os.stat({resumed})"]


def spin_the_cpu(seconds):
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def test_cpu_bound_slice_is_reported_with_stack_samples(slow_tasks):
    async def body():
        spin_the_cpu(0.12)

    run_monitored(body)

    [event] = slow_tasks.events
    assert event.reason == "cpu_blocking"
    assert event.exceeded_threshold is True
    assert event.elapsed_ms >= 120
    assert event.blocking_events == []
    assert event.severity_score == 0
    assert event.severity_level == "low"
    assert event.cpu_stack_samples, "expected stack samples for a 120 ms CPU-bound slice"
    top = event.cpu_stack_samples[0]
    assert "spin_the_cpu" in top["entry_point"]
    assert os.path.basename(__file__) in top["entry_point"]
    assert top["trace"].startswith(top["entry_point"])
    assert all(sample["count"] >= 1 for sample in event.cpu_stack_samples)
    counts = [sample["count"] for sample in event.cpu_stack_samples]
    assert counts == sorted(counts, reverse=True)


def test_short_cpu_slice_is_not_reported(slow_tasks):
    async def body():
        spin_the_cpu(0.002)

    run_monitored(body)

    assert slow_tasks.events == []


def test_timer_callbacks_are_monitored(slow_tasks, tmp_path):
    async def body():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_timer():
            os.stat(tmp_path)
            done.set_result(None)

        loop.call_later(0.001, on_timer)
        await done

    run_monitored(body)

    [(_, info)] = slow_tasks.blocking_named("os.stat")
    assert info["entry_point"].endswith(":on_timer")


def test_callbacks_scheduled_from_another_thread_are_monitored(slow_tasks, tmp_path):
    async def body():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_loop():
            os.stat(tmp_path)
            done.set_result(None)

        thread = threading.Thread(target=loop.call_soon_threadsafe, args=(on_loop,))
        thread.start()
        await done
        thread.join()

    run_monitored(body)

    [(_, info)] = slow_tasks.blocking_named("os.stat")
    assert info["entry_point"].endswith(":on_loop")


def test_blocking_io_offloaded_to_threads_is_not_reported(slow_tasks, tmp_path):
    async def body():
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(time.sleep, 0.04)
        await loop.run_in_executor(None, os.stat, tmp_path)
        return await asyncio.to_thread(os.listdir, tmp_path)

    assert run_monitored(body) == []
    assert slow_tasks.events == []


def test_io_of_other_threads_is_not_blamed_on_the_running_slice(slow_tasks, tmp_path):
    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    elsewhere.mkdir()
    here.mkdir()

    def background_io():
        for _ in range(20):
            os.stat(elsewhere)
        with open(elsewhere / "f", "w") as f:
            f.write("x")

    async def body():
        thread = threading.Thread(target=background_io)
        thread.start()
        thread.join()
        os.stat(here)

    run_monitored(body)

    seen = [info["event"] for event in slow_tasks.events for info in event.blocking_events]
    assert seen == [f"os.stat({here})"]


def test_exception_in_a_task_propagates_and_its_io_is_reported(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)
        raise LookupError("from the task")

    with pytest.raises(LookupError, match="from the task"):
        run_monitored(body)

    [(_, info)] = slow_tasks.blocking_named("os.stat")
    assert info["entry_point"].endswith(":body")
