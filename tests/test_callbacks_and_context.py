"""Slow-task callbacks and context providers."""

import asyncio
import contextvars
import logging
import os

import aiocop
from conftest import SlowTaskCollector, busy_spin, run_monitored

request_id = contextvars.ContextVar("request_id", default=None)
phase = contextvars.ContextVar("phase", default=None)


def request_id_provider():
    return {"request_id": request_id.get()}


def phase_provider():
    return {"phase": phase.get()}


def aiocop_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("aiocop")]


def test_context_is_empty_without_providers(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    [event] = slow_tasks.events
    assert event.context == {}


def test_provider_sees_contextvars_set_inside_the_task(slow_tasks, tmp_path):
    aiocop.register_context_provider(request_id_provider)

    async def body():
        request_id.set("req-42")
        os.stat(tmp_path)

    run_monitored(body)

    [event] = slow_tasks.events
    assert event.context == {"request_id": "req-42"}
    assert request_id.get() is None


def test_each_task_reports_its_own_context(slow_tasks, tmp_path):
    aiocop.register_context_provider(request_id_provider)

    async def handle(name):
        request_id.set(name)
        await asyncio.sleep(0)
        os.stat(tmp_path / name)

    async def body():
        await asyncio.gather(handle("a"), handle("b"))

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run_monitored(body)

    contexts = {event.blocking_events[0]["event"]: event.context for event in slow_tasks.events}
    assert contexts == {
        f"os.stat({tmp_path / 'a'})": {"request_id": "a"},
        f"os.stat({tmp_path / 'b'})": {"request_id": "b"},
    }


def test_later_non_none_context_value_wins(slow_tasks):
    aiocop.register_context_provider(phase_provider)

    async def body():
        phase.set("before")
        await asyncio.sleep(0)
        phase.set("during")
        busy_spin(0.05)

    run_monitored(body)

    [event] = slow_tasks.with_reason("cpu_blocking")
    assert event.context == {"phase": "during"}


def test_later_none_context_value_does_not_override(slow_tasks):
    aiocop.register_context_provider(phase_provider)

    async def body():
        phase.set("before")
        await asyncio.sleep(0)
        phase.set(None)
        busy_spin(0.05)

    run_monitored(body)

    [event] = slow_tasks.with_reason("cpu_blocking")
    assert event.context == {"phase": "before"}


def test_contexts_of_several_providers_are_merged(slow_tasks, tmp_path):
    aiocop.register_context_provider(request_id_provider)
    aiocop.register_context_provider(phase_provider)
    aiocop.register_context_provider(lambda: None)

    async def body():
        request_id.set("req-7")
        phase.set("handling")
        os.stat(tmp_path)

    run_monitored(body)

    [event] = slow_tasks.events
    assert event.context == {"request_id": "req-7", "phase": "handling"}


def test_unregistered_and_cleared_providers_are_not_called(slow_tasks, tmp_path):
    calls = []

    def counting_provider():
        calls.append(1)
        return {"counted": True}

    aiocop.register_context_provider(counting_provider)
    aiocop.unregister_context_provider(counting_provider)
    aiocop.register_context_provider(request_id_provider)
    aiocop.clear_context_providers()

    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    assert calls == []
    [event] = slow_tasks.events
    assert event.context == {}


def test_failing_provider_is_logged_not_raised(slow_tasks, tmp_path, caplog):
    def exploding_provider():
        raise RuntimeError("provider boom")

    aiocop.register_context_provider(exploding_provider)
    aiocop.register_context_provider(request_id_provider)

    async def body():
        request_id.set("req-9")
        os.stat(tmp_path)
        return "done"

    with caplog.at_level(logging.WARNING):
        assert run_monitored(body) == "done"

    [event] = slow_tasks.events
    assert event.context == {"request_id": "req-9"}
    messages = [r.getMessage() for r in aiocop_warnings(caplog)]
    assert any("exploding_provider" in m and "provider boom" in m for m in messages), messages


def test_failing_callback_is_logged_and_other_callbacks_still_run(slow_tasks, tmp_path, caplog):
    def exploding_callback(event):
        raise ValueError("callback boom")

    later = SlowTaskCollector()
    aiocop.register_slow_task_callback(exploding_callback)
    aiocop.register_slow_task_callback(later)

    async def body():
        os.stat(tmp_path)
        await asyncio.sleep(0)
        return "done"

    try:
        with caplog.at_level(logging.WARNING):
            assert run_monitored(body) == "done"
    finally:
        aiocop.unregister_slow_task_callback(exploding_callback)
        aiocop.unregister_slow_task_callback(later)

    assert len(slow_tasks.events) == 1
    assert later.events == slow_tasks.events
    messages = [r.getMessage() for r in aiocop_warnings(caplog)]
    assert any("exploding_callback" in m and "callback boom" in m for m in messages), messages


def test_callback_registered_twice_is_called_once(slow_tasks, tmp_path):
    aiocop.register_slow_task_callback(slow_tasks)

    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    assert len(slow_tasks.events) == 1


def test_unregistered_callback_receives_nothing(slow_tasks, tmp_path):
    other = SlowTaskCollector()
    aiocop.register_slow_task_callback(other)
    aiocop.unregister_slow_task_callback(other)

    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    assert other.events == []
    assert len(slow_tasks.events) == 1


def test_clear_slow_task_callbacks_removes_every_callback(slow_tasks, tmp_path):
    other = SlowTaskCollector()
    aiocop.register_slow_task_callback(other)
    aiocop.clear_slow_task_callbacks()

    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    assert other.events == []
    assert slow_tasks.events == []


def test_callbacks_receive_a_slow_task_event(slow_tasks, tmp_path):
    async def body():
        os.stat(tmp_path)

    run_monitored(body)

    [event] = slow_tasks.events
    assert isinstance(event, aiocop.SlowTaskEvent)
    assert isinstance(event.elapsed_ms, float)
    assert isinstance(event.threshold_ms, float)
    assert isinstance(event.cpu_stack_samples, list)
    assert set(event.blocking_events[0]) == {"event", "trace", "entry_point", "severity"}


span: contextvars.ContextVar[str | None] = contextvars.ContextVar("span", default=None)


def span_provider() -> dict[str, str | None]:
    return {"span": span.get()}


def test_io_blocking_context_is_taken_at_the_first_blocking_event(slow_tasks, tmp_path):
    """A span opened and closed inside one callback is seen by its io_blocking event (as in 1.2.1)."""
    aiocop.register_context_provider(span_provider)
    aiocop.register_context_provider(phase_provider)
    target = tmp_path / "f"

    async def body():
        phase.set("around")
        await asyncio.sleep(0)
        token = span.set("span-1")  # what a tracer's current_span() would return
        target.write_text("x")
        span.reset(token)
        busy_spin(0.001)

    run_monitored(body)

    event = slow_tasks.single_event_with(str(target))
    assert event.reason == "io_blocking"
    # Before and after the callback the span is None: only the first
    # blocking event's context has it.
    assert event.context == {"span": "span-1", "phase": "around"}


def test_cpu_blocking_context_keeps_the_before_and_after_merge(slow_tasks):
    aiocop.register_context_provider(span_provider)

    async def body():
        await asyncio.sleep(0)
        token = span.set("span-2")
        busy_spin(0.05)
        span.reset(token)

    run_monitored(body)

    [event] = slow_tasks.with_reason("cpu_blocking")
    assert event.context == {"span": None}
