"""Blocking IO detection via a native (C-level) audit hook.

The hook, registered from Rust with ``PySys_AddAuditHook``, rejects
uninteresting events without entering Python, records the blocking ones of
the callback slice running on the current thread (any thread), and captures
their stacks natively. Formatting happens only when a report is built.

The module keeps aiocop 1.2.1's namespace: the names it imported (``x as
x`` below), ``_audit_hook`` and ``_capture_raw_stack_frames`` on top of the
native hook, and ``_trace_depth`` as a property over the native depth.
"""

import logging
import sys
import threading
import time as time
from types import FrameType as FrameType
from types import ModuleType
from typing import Any

from aiocop import _native
from aiocop.core.audit_patcher import FUNCTIONS_TO_PATCH_DICT
from aiocop.core.state import _get_thread_local as _get_thread_local
from aiocop.core.state import raise_on_violations as raise_on_violations
from aiocop.types.events import BlockingEventInfo, RawBlockingEvent
from aiocop.types.severity import WEIGHT_HEAVY as WEIGHT_HEAVY
from aiocop.types.severity import WEIGHT_LIGHT as WEIGHT_LIGHT
from aiocop.types.severity import WEIGHT_MODERATE as WEIGHT_MODERATE

logger = logging.getLogger(__name__)

# The thread 1.2.1 recorded blocking events on, set by start_blocking_io_detection().
# Ours records them on every thread that runs a monitored callback, whatever this says.
_main_thread_id: int | None = None
_start_blocking_io_detection_configured = False

# A property of this module (see _BlockingIoModule at the end), declared for type checkers.
_trace_depth: int

MAX_EVENTS_PER_TASK: int = _native.MAX_EVENTS_PER_SLICE

BLOCKING_EVENTS_DICT: dict[str, int] = {
    name: weight for name, weight, source in _native.blocking_events() if source != "patched"
} | FUNCTIONS_TO_PATCH_DICT

BLOCKING_EVENTS = set(BLOCKING_EVENTS_DICT.keys())


def start_blocking_io_detection(trace_depth: int = 20) -> None:
    """
    Register the audit hook to capture blocking IO events.

    Args:
        trace_depth: Number of stack frames to capture per event (default: 20)

    Should be called after patch_audit_functions() and before detect_slow_tasks().
    """
    global _main_thread_id, _start_blocking_io_detection_configured

    if _start_blocking_io_detection_configured is True:
        logger.warning("start_blocking_io_detection called more than once, ignoring")
        return

    _main_thread_id = threading.main_thread().ident
    _native.set_trace_depth(trace_depth)

    try:
        _native.install_audit_hook()
        logger.info("Blocking I/O detection hook registered via sys.audit")
        _start_blocking_io_detection_configured = True
    except Exception as e:
        logger.error("Failed to register blocking I/O detection hook: %s", e)


def reset_blocking_events() -> None:
    """Clear all captured blocking events for the current task."""
    _native.reset_blocking_events()


def format_blocking_event(raw_event: RawBlockingEvent) -> BlockingEventInfo:
    """
    Format a raw blocking event into a user-friendly structure.

    Args:
        raw_event: The raw event captured by the audit hook

    Returns:
        Formatted event info with readable trace and entry point
    """
    event_str = f"{raw_event['event_name']}({_native.format_audit_args(raw_event['raw_args'])})"

    formatted_frames = [format_stack_frame(frame) for frame in raw_event["raw_stack"]]

    trace_str = " <- ".join(formatted_frames)
    entry_point = formatted_frames[0] if len(formatted_frames) > 0 else "unknown"

    return {"event": event_str, "trace": trace_str, "entry_point": entry_point, "severity": raw_event["severity"]}


def format_stack_frame(frame: tuple[str, int, str]) -> str:
    """Format a raw (filename, lineno, func_name) frame with a shortened path."""
    filename, lineno, func_name = frame
    return _native.format_frame(filename, lineno, func_name)


def get_blocking_events_dict() -> dict[str, int]:
    """Return a copy of the blocking events dictionary with their severity weights."""
    return BLOCKING_EVENTS_DICT.copy()


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    """Record one audit event as the audit hook does: kept if blocking and this thread runs a monitored callback."""
    _native.audit_event(event, args)


def _capture_raw_stack_frames(limit: int) -> list[tuple[str, int, str]]:
    """The caller's stack, innermost first, as (filename, lineno, function), without aiocop's own frames."""
    frames, _ = _native.capture_stack(limit)
    return frames


class _BlockingIoModule(ModuleType):
    """This module, with aiocop 1.2.1's trace depth global as a property over the native one."""

    @property
    def _trace_depth(self) -> int:
        return _native.trace_depth()

    @_trace_depth.setter
    def _trace_depth(self, depth: int) -> None:
        # Read at every blocking event, as in 1.2.1.
        _native.set_trace_depth(int(depth))


sys.modules[__name__].__class__ = _BlockingIoModule
