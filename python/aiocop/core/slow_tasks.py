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
"""

import asyncio
import logging
import weakref
from typing import Any

from aiocop import _native
from aiocop.core import (
    _wiring,  # noqa: F401  (connects the native side)
    cpu_sampler,
)
from aiocop.core.callbacks import SlowTaskCallback, register_slow_task_callback
from aiocop.core.state import raise_on_violations, register_on_activate_hook
from aiocop.exceptions import HighSeverityBlockingIoException

logger = logging.getLogger(__name__)

_detect_slow_tasks_configured = False

# (method name, position of the callback among its positional arguments)
_SCHEDULING_METHODS = (("call_soon", 0), ("call_later", 1), ("call_at", 1), ("call_soon_threadsafe", 0))

__all__ = ["SlowTaskCallback", "detect_slow_tasks", "get_slow_task_threshold_ms"]


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
        return

    for name, callback_index in _SCHEDULING_METHODS:
        setattr(loop, name, _native.schedule_patch(getattr(loop, name), callback_index))


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
