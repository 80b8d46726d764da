"""Zero-code recording: monitor every event loop of a program and record it.

Used by ``python -m aiocop record`` and by the ``AIOCOP_RECORD`` environment
variable (read at interpreter start-up by the ``aiocop-autorecord.pth``
file the package installs). Every loop the program creates, on any thread,
asyncio or uvloop, is monitored without the program calling activate():
- stock asyncio loops through the native ``Handle._run``;
- uvloop loops from their creation (``uvloop.Loop.__init__`` is wrapped), so
  the callbacks scheduled before the loop first runs (the main task's first
  step) are monitored too;
- any other loop when it starts running, through asyncio's
  ``_set_running_loop``.
"""

import asyncio
import asyncio.events
import importlib.util
import logging
import os
from typing import Any

from aiocop import _native
from aiocop.core import audit_patcher, blocking_io, recorder, slow_tasks
from aiocop.core.state import activate

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "AIOCOP_RECORD"


def record_everything(
    path: str,
    *,
    label: str | None = None,
    threshold_ms: float = 30,
    trace_depth: int = 20,
    flush_interval_s: float = 1.0,
    record_context: bool = False,
) -> str:
    """Set up detection, monitor every loop from now on, and start recording to ``path``."""
    if not audit_patcher._patch_audit_functions_configured:
        audit_patcher.patch_audit_functions()
    if not blocking_io._start_blocking_io_detection_configured:
        blocking_io.start_blocking_io_detection(trace_depth=trace_depth)
    if not slow_tasks._detect_slow_tasks_configured:
        slow_tasks.detect_slow_tasks(threshold_ms=threshold_ms)  # type: ignore[arg-type]
    _native.set_monitor_all_loops(True)
    _monitor_uvloop_loops_from_creation()
    _monitor_loops_when_they_start()
    activate()
    return recorder.start_recording(path, label=label, flush_interval_s=flush_interval_s, record_context=record_context)


def _monitor_uvloop_loops_from_creation() -> None:
    if importlib.util.find_spec("uvloop") is None:
        return
    import uvloop

    original_init = uvloop.Loop.__init__
    if getattr(original_init, "_aiocop_wrapper", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        slow_tasks._patch_loop(self)
        self._aiocop_patched = True

    __init__._aiocop_wrapper = True  # type: ignore[attr-defined]
    uvloop.Loop.__init__ = __init__  # type: ignore[method-assign]


def _monitor_loops_when_they_start() -> None:
    original = asyncio.events._set_running_loop
    if getattr(original, "_aiocop_wrapper", False):
        return

    def _set_running_loop(loop: Any) -> None:
        original(loop)
        if loop is not None and not getattr(loop, "_aiocop_patched", False):
            slow_tasks._ensure_loop_patched()

    _set_running_loop._aiocop_wrapper = True  # type: ignore[attr-defined]
    asyncio.events._set_running_loop = _set_running_loop
    asyncio._set_running_loop = _set_running_loop


def record_from_environment() -> None:
    """Start recording if AIOCOP_RECORD names a trace file. Never raises: a bad path is logged."""
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    if not path:
        return
    try:
        record_everything(
            path,
            label=os.environ.get("AIOCOP_LABEL"),
            threshold_ms=float(os.environ.get("AIOCOP_THRESHOLD_MS", "30")),
            trace_depth=int(os.environ.get("AIOCOP_TRACE_DEPTH", "20")),
        )
    except (OSError, ValueError) as error:
        logging.getLogger("aiocop").error("%s=%s: not recording: %s", ENVIRONMENT_VARIABLE, path, error)
