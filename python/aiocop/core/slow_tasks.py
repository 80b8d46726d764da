"""Slow task detection: every callback an event loop runs is timed natively.

On stock asyncio, every ready handle goes through ``Handle._run``: timers,
``call_soon`` callbacks, and I/O readiness callbacks (a protocol's
``data_received``, ``add_reader`` callbacks) that never pass through
``call_soon``. aiocop replaces ``Handle._run`` with a native wrapper that
times the handles of monitored loops.

Other loops (uvloop) run handles in compiled code, so their ``call_soon``,
``call_later``, ``call_at`` and ``call_soon_threadsafe`` are replaced on the
loop instance by native wrappers, as aiocop 1.2.1 does.

A loop becomes monitored when detect_slow_tasks() or activate() is called
while it runs, on whichever thread it runs.

The module keeps aiocop 1.2.1's namespace, which code written against it
uses: the names it imported (``x as x`` below), its private helpers on top
of the native monitor, and ``_slow_task_threshold_ns`` as a property over
the native threshold.
"""

import asyncio
import functools
import logging
import sys
import weakref
from collections.abc import Callable as Callable
from dataclasses import replace as replace
from time import perf_counter_ns as perf_counter_ns
from types import ModuleType
from typing import Any

from aiocop import _native
from aiocop.core import (
    cpu_sampler,
)
from aiocop.core.blocking_io import format_blocking_event as format_blocking_event
from aiocop.core.callbacks import SlowTaskCallback as SlowTaskCallback
from aiocop.core.callbacks import _capture_context as _capture_context
from aiocop.core.callbacks import _invoke_slow_task_callbacks as _invoke_slow_task_callbacks
from aiocop.core.callbacks import register_slow_task_callback
from aiocop.core.severity import calculate_io_severity_score as calculate_io_severity_score
from aiocop.core.severity import get_severity_level_from_score as get_severity_level_from_score
from aiocop.core.state import _get_thread_local as _get_thread_local
from aiocop.core.state import _has_exception_been_raised as _has_exception_been_raised
from aiocop.core.state import _mark_exception_raised as _mark_exception_raised
from aiocop.core.state import _reset_exception_flag as _reset_exception_flag
from aiocop.core.state import is_monitoring_active as is_monitoring_active
from aiocop.core.state import raise_on_violations, register_on_activate_hook
from aiocop.exceptions import HighSeverityBlockingIoException
from aiocop.types.events import BlockingEventInfo as BlockingEventInfo
from aiocop.types.events import SlowTaskEvent as SlowTaskEvent
from aiocop.types.severity import THRESHOLD_HIGH as THRESHOLD_HIGH

logger = logging.getLogger(__name__)

_detect_slow_tasks_configured = False

# A property of this module (see _SlowTasksModule at the end), declared for type checkers.
_slow_task_threshold_ns: int

# (method name, position of the callback among its positional arguments)
_SCHEDULING_METHODS = (("call_soon", 0), ("call_later", 1), ("call_at", 1), ("call_soon_threadsafe", 0))


def detect_slow_tasks(
    threshold_ms: int = 30,
    on_slow_task: SlowTaskCallback | None = None,
    cpu_sampling: bool = True,
) -> None:
    """
    Configure slow task detection for the asyncio event loop.

    Every callback the loop runs is timed. Callbacks are invoked for every
    callback slice that did blocking I/O (reason "io_blocking", with
    exceeded_threshold saying whether it was also slow) and for every slow
    slice without I/O (reason "cpu_blocking"). Works with both standard asyncio
    and uvloop.

    The loop is patched either immediately (if called from an async context) or
    when activate() is called.

    Args:
        threshold_ms: Threshold in milliseconds for considering a task "slow" (default: 30)
        on_slow_task: Optional callback invoked when blocking IO is detected in a task.
        cpu_sampling: Start CPU stack sampling so cpu_blocking events carry
                      stack attribution (default: True). Sampling arms at half
                      of threshold_ms; call start_cpu_sampling() before this
                      function to customize, or pass False to disable.

    Should be called after start_blocking_io_detection().
    """
    global _detect_slow_tasks_configured

    if _detect_slow_tasks_configured is True:
        logger.warning("detect_slow_tasks called more than once, ignoring")
        return

    _native.set_threshold_ns(int(threshold_ms * 1_000_000))

    if on_slow_task is not None:
        register_slow_task_callback(on_slow_task)

    if raise_on_violations.get() is True:
        logger.info("Exceptions raising on high severity IO blocking tasks enabled")

    _detect_slow_tasks_configured = True

    register_on_activate_hook(_ensure_loop_patched)

    _ensure_loop_patched()

    if cpu_sampling is True and cpu_sampler.is_cpu_sampling_started() is False:
        cpu_sampler.start_cpu_sampling()


def _ensure_loop_patched() -> bool:
    """Ensure the running event loop, if any, is monitored."""
    if not _detect_slow_tasks_configured:
        return False

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False

    if getattr(loop, "_aiocop_patched", False):
        return True

    _patch_loop(loop)
    loop._aiocop_patched = True  # type: ignore[attr-defined]
    logger.info("Event loop patched for slow task detection")
    return True


def _patch_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Monitor every callback the loop runs."""
    _reraise_violations_from_exception_handler(loop)

    if isinstance(loop, asyncio.BaseEventLoop):
        _native.install_handle_run(asyncio.events.Handle)
        _native.set_loop_monitored(id(loop), True)
        weakref.finalize(loop, _native.set_loop_monitored, id(loop), False)
        if _native.is_recording():
            _time_loop_iterations(loop)
            _stamp_scheduled_callbacks(loop)
            _watch_eager_tasks()
        return

    for name, callback_index in _SCHEDULING_METHODS:
        setattr(loop, name, _native.schedule_patch(getattr(loop, name), callback_index))
    if _native.is_recording():
        _watch_eager_tasks()


def _watch_eager_tasks() -> None:
    """Let a recording see eager tasks (3.12+), whose first step runs inside ``create_task``.

    However a task is asked to start eagerly (``asyncio.eager_task_factory``,
    ``create_eager_task_factory``, ``Task(..., eager_start=True)`` as aiohttp
    makes its request handlers, 3.14's ``create_task(..., eager_start=True)``),
    ``_asyncio.Task``'s constructor runs its first step: the native
    ``watch_eager_tasks`` gives the type a constructor that times it while
    recording (recorder/src/eager_tasks.rs). Once per process; a task made
    without ``eager_start`` pays a dictionary look-up.
    """
    if sys.version_info < (3, 12):
        return  # no eager tasks before 3.12
    task_type = asyncio.Task
    if task_type.__module__ != "_asyncio":
        return  # the pure-Python tasks (no C accelerator): not watched
    try:
        _native.watch_eager_tasks(task_type)
    except TypeError as error:
        logger.debug("Eager tasks cannot be watched: %s", error)


def _time_loop_iterations(loop: asyncio.BaseEventLoop) -> None:
    """Let a recording see where each iteration of the loop begins and how long it waited for I/O.

    ``BaseEventLoop._run_once`` polls the loop's selector once per iteration.
    A stock selector waits in its C poller's method (``select.epoll.poll``,
    ``poll``, ``devpoll``, ``kqueue.control``): that class gets a native
    method that calls the C original and, for the pollers of loops timed
    here and while recording, records the poll; any other selector's class
    gets a native ``select`` doing the same around the original. Other
    selectors and pollers of the class (``subprocess``'s, one a callback
    polls) record nothing. On the class, not the instance: an instance
    attribute would keep the interpreter from specialising the loop's
    attribute reads (see recorder/src/iterations.rs for what each choice
    costs).

    Only loops patched while a recording runs get it: a monitor that does
    not record has no use for it. A loop patched before the recording
    started is not timed, and the report says its stalls are guessed.
    """
    selector = getattr(loop, "_selector", None)
    if not callable(getattr(type(selector), "select", None)):
        return  # no selector, or one without select()
    try:
        if not _native.time_selector(selector):
            return  # timed already
    except (AttributeError, TypeError) as error:
        logger.debug("The selector of %r cannot be timed: %s", loop, error)
        return
    try:
        weakref.finalize(selector, _native.untime_selector, id(selector))
    except TypeError:  # not weakly referenceable: its address could be another's after it is freed
        _native.untime_selector(id(selector))
        logger.debug("The selector of %r cannot be timed: no weak references to it", loop)


def _stamp_scheduled_callbacks(loop: asyncio.BaseEventLoop) -> None:
    """Let a recording see when each ``call_soon`` handle was scheduled, and by which task.

    A handle's ready-wait (the loop lag it met) counts from then; a task's
    first step is scheduled by ``Task.__init__``, so its stamp is the task's
    creation. ``_asyncio``'s tasks and futures call the loop's ``call_soon``
    by name: the class of the loop that defines it (``BaseEventLoop``) gets a
    native ``call_soon`` that calls the original and, for the loops stamped
    here and while recording, stamps the handle it returns; other loops go
    straight to the original. On the class, not the instance, as for the
    selector's ``select`` (recorder/src/call_soon.rs says what it costs).
    Only loops patched while recording get it.
    """
    try:
        if not _native.stamp_call_soon(loop):
            return  # stamped already
    except (AttributeError, TypeError) as error:
        logger.debug("The call_soon of %r cannot be stamped: %s", loop, error)
        return
    weakref.finalize(loop, _native.unstamp_call_soon, id(loop))


def _reraise_violations_from_exception_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Let HighSeverityBlockingIoException escape loops (uvloop) that route callback errors to the handler."""
    original_exception_handler = loop.call_exception_handler

    def patched_exception_handler(context: dict[str, Any]) -> None:
        exception = context.get("exception")
        if isinstance(exception, HighSeverityBlockingIoException):
            raise exception
        return original_exception_handler(context)

    loop.call_exception_handler = patched_exception_handler  # type: ignore[method-assign]


def get_slow_task_threshold_ms() -> float:
    """Get the current slow task threshold in milliseconds."""
    return _native.threshold_ns() / 1_000_000


def _make_monitored_callback(callback: Callable[..., Any], args: tuple[Any, ...]) -> Callable[[], Any]:
    """A function of no arguments that runs ``callback(*args)`` as a monitored callback, as 1.2.1's wrapper.

    It is what a patched ``call_soon`` schedules: while monitoring is active,
    the call is timed, its blocking I/O recorded and reported.
    """
    return functools.partial(_native.run_monitored, callback, *args)


def _invoke_callbacks_with_context(event: SlowTaskEvent, captured_context: dict[str, Any]) -> None:
    """Attach pre-captured context to the event and invoke callbacks."""
    _invoke_slow_task_callbacks(replace(event, context=captured_context))


def _check_and_raise_if_needed(
    elapsed: int, blocking_events: list[BlockingEventInfo] | None, should_raise: bool
) -> None:
    """Raise HighSeverityBlockingIoException for ``elapsed`` ns of these events, as a monitored callback would.

    Only if ``should_raise`` (raise_on_violations was on), the events score
    THRESHOLD_HIGH or more, and the running callback raised none yet.
    """
    if should_raise is True and _has_exception_been_raised() is False:
        io_severity = calculate_io_severity_score(blocking_events)

        if io_severity >= THRESHOLD_HIGH:
            _mark_exception_raised()

            raise HighSeverityBlockingIoException(
                severity_score=io_severity,
                severity_level=get_severity_level_from_score(io_severity),
                elapsed_ms=elapsed / 1_000_000,
                threshold_ms=_native.threshold_ns() / 1_000_000,
                events=blocking_events or [],
            )


class _SlowTasksModule(ModuleType):
    """This module, with aiocop 1.2.1's threshold global as a property over the native threshold."""

    @property
    def _slow_task_threshold_ns(self) -> int:
        return _native.threshold_ns()

    @_slow_task_threshold_ns.setter
    def _slow_task_threshold_ns(self, threshold_ns: int) -> None:
        # Read by every monitored callback and by the CPU sampler's arming delay, as in 1.2.1.
        _native.set_threshold_ns(int(threshold_ns))


sys.modules[__name__].__class__ = _SlowTasksModule
