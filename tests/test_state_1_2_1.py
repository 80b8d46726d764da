"""aiocop 1.2.1's module-level state, read and assigned as code written against it does.

1.2.1 kept its flags, threshold, trace depth and registries in module
globals; test fixtures read them and assign them (directly or through
``monkeypatch.setattr``). Here each one is read while real event loops run
and do real blocking I/O, and assigned, and the effect checked on the
events those loops produce. The private helpers of ``slow_tasks``,
``blocking_io`` and ``cpu_sampler`` are called as 1.2.1's would be.
"""

import asyncio
import os
import threading
import time

import aiocop
import pytest
from aiocop import HighSeverityBlockingIoException
from aiocop.core import blocking_io, callbacks, cpu_sampler, state
from aiocop.core import slow_tasks as slow_tasks_module  # the name slow_tasks is conftest's fixture
from conftest import THRESHOLD_MS, TRACE_DEPTH, SlowTaskCollector, busy_spin, run_monitored


def open_and_close(path):
    with open(path):
        pass


def opened(collector, path):
    return [info for _, info in collector.blocking_named("open") if info["event"].startswith(f"open({path}, ")]


# --- state._monitoring_active ------------------------------------------------


def test_monitoring_active_reads_what_activate_and_deactivate_did(slow_tasks):
    assert state._monitoring_active is True
    aiocop.deactivate()
    assert state._monitoring_active is False
    assert aiocop.is_monitoring_active() is False
    aiocop.activate()
    assert state._monitoring_active is True


def test_assigning_monitoring_active_false_stops_monitoring_and_true_resumes_it(slow_tasks, tmp_path):
    paused, resumed = tmp_path / "paused.txt", tmp_path / "resumed.txt"
    paused.write_text("x")
    resumed.write_text("x")
    seen_inside = []

    async def body():
        state._monitoring_active = False
        seen_inside.append(aiocop.is_monitoring_active())
        # Each step after a yield is a new callback: this one starts with monitoring off.
        await asyncio.sleep(0)
        open_and_close(paused)
        time.sleep(0.001)
        state._monitoring_active = True
        seen_inside.append(aiocop.is_monitoring_active())
        await asyncio.sleep(0)
        open_and_close(resumed)

    run_monitored(body)

    assert seen_inside == [False, True]
    assert opened(slow_tasks, paused) == []
    assert slow_tasks.blocking_named("time.sleep") == []
    assert len(opened(slow_tasks, resumed)) == 1


def test_monitoring_active_assigned_through_monkeypatch_is_restored(slow_tasks, tmp_path, monkeypatch):
    path = tmp_path / "data.txt"
    path.write_text("x")

    async def body():
        await asyncio.sleep(0)
        open_and_close(path)

    async def deactivated_body():
        monkeypatch.setattr(state, "_monitoring_active", False)
        await body()

    run_monitored(deactivated_body)
    assert opened(slow_tasks, path) == []
    monkeypatch.undo()
    assert state._monitoring_active is True
    run_monitored(body)
    assert len(opened(slow_tasks, path)) == 1


def test_only_true_activates_as_in_1_2_1(slow_tasks):
    state._monitoring_active = 1
    assert aiocop.is_monitoring_active() is False
    state._monitoring_active = True
    assert aiocop.is_monitoring_active() is True


# --- state._exception_raised and its helpers ----------------------------------


def test_exception_raised_set_inside_a_callback_keeps_it_from_raising(slow_tasks):
    async def body():
        state._exception_raised = True
        time.sleep(0.05)

    with aiocop.raise_on_violations():
        run_monitored(body)

    [event] = slow_tasks.with_reason("io_blocking")
    assert event.severity_score == 50
    assert event.exceeded_threshold is True


def test_exception_raised_is_cleared_when_a_callback_starts_and_set_by_the_raise(slow_tasks):
    state._mark_exception_raised()
    assert state._exception_raised is True
    assert state._has_exception_been_raised() is True

    # Run outside a loop, so that no later callback clears the flag again.
    sleep_50ms = slow_tasks_module._make_monitored_callback(time.sleep, (0.05,))
    with aiocop.raise_on_violations(), pytest.raises(HighSeverityBlockingIoException):
        sleep_50ms()

    assert state._has_exception_been_raised() is True
    state._reset_exception_flag()
    assert state._exception_raised is False


def test_check_and_raise_if_needed_raises_as_a_monitored_callback_would(slow_tasks):
    events = [{"event": "time.sleep(0.05)", "trace": "app.py:1:f", "entry_point": "app.py:1:f", "severity": 50}]
    state._reset_exception_flag()

    slow_tasks_module._check_and_raise_if_needed(60_000_000, events, should_raise=False)
    slow_tasks_module._check_and_raise_if_needed(60_000_000, events[:0], should_raise=True)
    with pytest.raises(HighSeverityBlockingIoException) as excinfo:
        slow_tasks_module._check_and_raise_if_needed(60_000_000, events, should_raise=True)
    assert (excinfo.value.severity_score, excinfo.value.elapsed_ms) == (50, 60.0)
    assert excinfo.value.threshold_ms == float(THRESHOLD_MS)
    # Once per callback, as in 1.2.1.
    slow_tasks_module._check_and_raise_if_needed(60_000_000, events, should_raise=True)
    state._reset_exception_flag()


# --- slow_tasks._slow_task_threshold_ns -------------------------------------------


def test_slow_task_threshold_ns_reads_the_threshold_and_assigning_changes_it(slow_tasks):
    assert slow_tasks_module._slow_task_threshold_ns == THRESHOLD_MS * 1_000_000
    try:
        slow_tasks_module._slow_task_threshold_ns = 5_000_000
        assert aiocop.get_slow_task_threshold_ms() == 5.0

        async def body():
            busy_spin(0.012)

        run_monitored(body)
    finally:
        slow_tasks_module._slow_task_threshold_ns = THRESHOLD_MS * 1_000_000

    [event] = slow_tasks.with_reason("cpu_blocking")
    assert event.threshold_ms == 5.0
    assert event.exceeded_threshold is True
    assert aiocop.get_slow_task_threshold_ms() == float(THRESHOLD_MS)


# --- blocking_io._trace_depth, _main_thread_id, _audit_hook, _capture_raw_stack_frames ----


def nested_open(path, depth):
    if depth == 0:
        open_and_close(path)
    else:
        nested_open(path, depth - 1)


def test_trace_depth_reads_the_depth_and_assigning_changes_it(slow_tasks, tmp_path):
    path = tmp_path / "deep.txt"
    path.write_text("x")
    assert blocking_io._trace_depth == TRACE_DEPTH

    async def body():
        nested_open(path, 10)

    try:
        blocking_io._trace_depth = 3
        run_monitored(body)
    finally:
        blocking_io._trace_depth = TRACE_DEPTH

    [info] = opened(slow_tasks, path)
    assert len(info["trace"].split(" <- ")) == 3
    assert info["entry_point"].endswith(":open_and_close")
    assert blocking_io._trace_depth == TRACE_DEPTH


def test_main_thread_id_is_the_main_thread_once_detection_started():
    assert blocking_io._start_blocking_io_detection_configured is True
    assert blocking_io._main_thread_id == threading.main_thread().ident


def test_audit_hook_records_an_event_only_inside_a_monitored_callback(slow_tasks):
    blocking_io._audit_hook("open", ("outside.txt", "r", 0))

    async def body():
        blocking_io._audit_hook("open", ("inside.txt", "r", 0))
        blocking_io._audit_hook("not.a.blocking.event", ())

    run_monitored(body)

    [event] = slow_tasks.events
    assert [info["event"] for info in event.blocking_events] == ["open(inside.txt, r, 0)"]
    assert event.severity_score == 10


def test_capture_raw_stack_frames_is_the_callers_stack_innermost_first():
    def inner():
        return blocking_io._capture_raw_stack_frames(limit=2)

    frames = inner()
    assert [function for _, _, function in frames] == [
        "inner",
        "test_capture_raw_stack_frames_is_the_callers_stack_innermost_first",
    ]
    assert frames[0][0] == __file__


# --- callbacks._slow_task_callbacks and _context_providers --------------------


def test_assigned_callback_list_is_the_one_called_and_monkeypatch_restores_the_old(slow_tasks, tmp_path, monkeypatch):
    path = tmp_path / "data.txt"
    path.write_text("x")
    replacement = SlowTaskCollector()
    registered_before = callbacks._slow_task_callbacks

    async def body():
        open_and_close(path)

    monkeypatch.setattr(callbacks, "_slow_task_callbacks", [])
    aiocop.register_slow_task_callback(replacement)
    assert callbacks._slow_task_callbacks == [replacement]
    run_monitored(body)
    monkeypatch.undo()

    assert len(opened(replacement, path)) == 1
    assert opened(slow_tasks, path) == []
    assert callbacks._slow_task_callbacks is registered_before
    assert slow_tasks in callbacks._slow_task_callbacks
    run_monitored(body)
    assert len(opened(slow_tasks, path)) == 1
    assert len(opened(replacement, path)) == 1


def test_a_list_assigned_then_appended_to_is_the_live_registry(slow_tasks, tmp_path, monkeypatch):
    path = tmp_path / "data.txt"
    path.write_text("x")
    replacement = SlowTaskCollector()
    assigned: list = []
    monkeypatch.setattr(callbacks, "_slow_task_callbacks", assigned)
    assigned.append(replacement)

    async def body():
        open_and_close(path)

    run_monitored(body)
    monkeypatch.undo()
    assert len(opened(replacement, path)) == 1


def test_assigned_context_provider_list_provides_the_context(slow_tasks, tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "_context_providers", [lambda: {"request_id": "req-1"}])

    async def body():
        os.stat(tmp_path)

    run_monitored(body)
    monkeypatch.undo()
    assert callbacks._context_providers == []

    [event] = slow_tasks.events
    assert event.context == {"request_id": "req-1"}
    run_monitored(body)
    assert slow_tasks.events[1].context == {}


def test_registries_must_stay_lists():
    with pytest.raises(TypeError):
        callbacks._slow_task_callbacks = (print,)
    assert isinstance(callbacks._slow_task_callbacks, list)


def test_invoke_callbacks_with_context_delivers_the_event_with_that_context(slow_tasks):
    event = aiocop.SlowTaskEvent(
        elapsed_ms=40.0,
        threshold_ms=30.0,
        exceeded_threshold=True,
        severity_score=0,
        severity_level="low",
        reason="cpu_blocking",
        blocking_events=[],
    )
    slow_tasks_module._invoke_callbacks_with_context(event, {"span": "s-1"})
    [delivered] = slow_tasks.events
    assert delivered.context == {"span": "s-1"}
    assert delivered.elapsed_ms == 40.0


# --- state._on_activate_hooks, slow_tasks._make_monitored_callback ---------------


def test_assigned_on_activate_hooks_run_at_activate(monkeypatch):
    calls = []
    monkeypatch.setattr(state, "_on_activate_hooks", [lambda: calls.append("hook")])
    aiocop.activate()
    assert calls == ["hook"]


def test_make_monitored_callback_runs_the_callback_as_a_monitored_one(slow_tasks, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("x")
    wrapper = slow_tasks_module._make_monitored_callback(open_and_close, (path,))

    async def body():
        asyncio.get_running_loop().call_soon(wrapper)
        await asyncio.sleep(0.01)

    run_monitored(body)
    [info] = opened(slow_tasks, path)
    assert info["entry_point"].endswith(":open_and_close")
    aiocop.deactivate()
    wrapper()
    aiocop.activate()
    assert len(opened(slow_tasks, path)) == 1


# --- cpu_sampler --------------------------------------------------------------


def test_cpu_sampler_state_reads_the_settings_in_force():
    assert cpu_sampler._sampler_started is True
    assert cpu_sampler._interval_s == 0.01
    assert cpu_sampler._arm_after_ns_override is None
    assert cpu_sampler._idle_interval_s_override is None
    assert cpu_sampler._max_samples_per_slice == 32
    assert cpu_sampler._trace_depth == 20
    assert cpu_sampler._effective_arm_and_idle() == (THRESHOLD_MS * 1_000_000 // 2, 0.015)


def cpu_samples_of_a_busy_slice(slow_tasks, seconds: float) -> int:
    async def body():
        busy_spin(seconds)

    slow_tasks.events.clear()
    run_monitored(body)
    [event] = slow_tasks.with_reason("cpu_blocking")
    return sum(sample["count"] for sample in event.cpu_stack_samples)


def test_cpu_sampler_settings_assigned_take_effect_as_in_1_2_1(slow_tasks):
    assert cpu_samples_of_a_busy_slice(slow_tasks, 0.12) >= 4  # every 10 ms after 15 ms
    try:
        cpu_sampler._interval_s = 0.002
        cpu_sampler._max_samples_per_slice = 100
        assert (cpu_sampler._interval_s, cpu_sampler._max_samples_per_slice) == (0.002, 100)
        assert cpu_samples_of_a_busy_slice(slow_tasks, 0.12) >= 10  # every 2 ms, as the GIL comes
        cpu_sampler._max_samples_per_slice = 3
        assert cpu_samples_of_a_busy_slice(slow_tasks, 0.12) == 3
        # Stopped, the watchdog takes no sample; start_cpu_sampling() may start it again.
        cpu_sampler._sampler_started = False
        assert cpu_sampler._sampler_started is False and not aiocop.is_cpu_sampling_started()
        assert cpu_samples_of_a_busy_slice(slow_tasks, 0.06) == 0
        aiocop.start_cpu_sampling(interval_ms=10, max_samples_per_slice=32)
        assert cpu_sampler._sampler_started is True
        assert cpu_samples_of_a_busy_slice(slow_tasks, 0.12) >= 4
    finally:
        cpu_sampler._sampler_started = True
        cpu_sampler._interval_s = 0.01
        cpu_sampler._max_samples_per_slice = 32
    assert cpu_sampler._effective_arm_and_idle() == (THRESHOLD_MS * 1_000_000 // 2, 0.015)


def test_slice_started_and_finished_collect_samples_of_a_busy_slice():
    slice_id = time.perf_counter_ns()
    cpu_sampler._slice_started(slice_id)
    busy_spin(0.08)
    samples = cpu_sampler._slice_finished(slice_id)

    assert samples, "the watchdog took no sample of an 80 ms slice"
    assert all(stack[0][2] == "busy_spin" for stack in samples)
    [formatted, *_] = cpu_sampler.format_cpu_samples(samples)
    assert formatted["entry_point"].endswith(":busy_spin")
    # Withdrawn: nothing more to collect.
    assert cpu_sampler._slice_finished(slice_id) == []


def test_capture_thread_stack_and_watchdog_helpers():
    def inner():
        return cpu_sampler._capture_thread_stack(threading.get_ident())

    stack = inner()
    assert stack[0][2] == "inner"
    assert cpu_sampler._capture_thread_stack(-1) == []
    # Sampling runs already: neither starts a second watchdog loop.
    cpu_sampler._watchdog_loop()
    cpu_sampler._reinit_after_fork()
    deadline = time.monotonic() + 5
    while watchdog_threads() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watchdog_threads() == 1


def watchdog_threads():
    return [thread.name for thread in threading.enumerate()].count(cpu_sampler.WATCHDOG_THREAD_NAME)


# --- the "configured" flags: cleared, the setup function runs again ------------


def test_detect_slow_tasks_configures_again_once_its_flag_is_cleared(monkeypatch):
    monkeypatch.setattr(slow_tasks_module, "_detect_slow_tasks_configured", False)
    try:
        aiocop.detect_slow_tasks(threshold_ms=12, cpu_sampling=False)
        assert slow_tasks_module._detect_slow_tasks_configured is True
        assert slow_tasks_module._slow_task_threshold_ns == 12_000_000
    finally:
        slow_tasks_module._slow_task_threshold_ns = THRESHOLD_MS * 1_000_000


def test_start_blocking_io_detection_configures_again_once_its_flag_is_cleared(slow_tasks, tmp_path, monkeypatch):
    path = tmp_path / "deep.txt"
    path.write_text("x")
    monkeypatch.setattr(blocking_io, "_start_blocking_io_detection_configured", False)
    try:
        aiocop.start_blocking_io_detection(trace_depth=2)
        assert blocking_io._trace_depth == 2

        async def body():
            nested_open(path, 5)

        run_monitored(body)
    finally:
        blocking_io._trace_depth = TRACE_DEPTH

    # Still one audit hook: each event is seen once.
    [info] = opened(slow_tasks, path)
    assert len(info["trace"].split(" <- ")) == 2
