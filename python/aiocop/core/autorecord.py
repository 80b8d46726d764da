"""Zero-code recording: monitor every event loop of a program and record it.

Used by ``python -m aiocop record`` and by the ``AIOCOP_RECORD`` environment
variable (read at interpreter start-up by the ``aiocop-autorecord.pth``
file the package installs). The record command puts its settings in the
environment, so every Python process the program starts records too
(multiprocessing's spawn and forkserver children, a server's workers,
``subprocess`` children); forked children record through the fork handler.
A child writes a file of its own: ``{pid}`` expands, and without it a
child's path gets ``.<pid>`` appended. Every loop the program creates, on any
thread, asyncio or uvloop, is monitored without the program calling
activate():
- stock asyncio loops through the native ``Handle._run``;
- uvloop loops from their creation (``uvloop.Loop.__init__`` is wrapped), so
  the callbacks scheduled before the loop first runs (the main task's first
  step) are monitored too;
- any other loop when it starts running, through asyncio's
  ``_set_running_loop``.
"""

import asyncio
import asyncio.events
import dataclasses
import importlib.util
import logging
import os
import signal
import sys
from typing import Any

from aiocop import _native
from aiocop.core import audit_patcher, blocking_io, lineage, recorder, settings, slow_tasks
from aiocop.core.state import activate

logger = logging.getLogger(__name__)


def record_everything(
    path: str,
    *,
    label: str | None = None,
    threshold_ms: float = settings.DEFAULT_THRESHOLD_MS,
    trace_depth: int = settings.DEFAULT_TRACE_DEPTH,
    flush_interval_s: float = settings.DEFAULT_FLUSH_INTERVAL_S,
    max_buffered_slices: int = settings.DEFAULT_MAX_BUFFERED_SLICES,
    record_context: bool = False,
    sample_after_ms: float = settings.DEFAULT_SAMPLE_AFTER_MS,
    sample_interval_ms: float = settings.DEFAULT_SAMPLE_INTERVAL_MS,
    sample_frames: str = settings.DEFAULT_SAMPLE_FRAMES,
    file_mode: int = settings.DEFAULT_FILE_MODE,
    redact: bool = False,
    redact_keep_context: tuple[str, ...] = (),
    allowlist: str | None = None,
) -> str:
    """Set up detection, monitor every loop from now on, and start recording to ``path``.

    Raises ValueError (SettingError) naming the argument out of its range,
    OSError if the file cannot be written.
    """
    return record_with(
        settings.RecordingSettings(
            path=path,
            label=label,
            threshold_ms=threshold_ms,
            trace_depth=trace_depth,
            flush_interval_s=flush_interval_s,
            max_buffered_slices=max_buffered_slices,
            record_context=record_context,
            sample_after_ms=sample_after_ms,
            sample_interval_ms=sample_interval_ms,
            sample_frames=sample_frames,
            file_mode=file_mode,
            redact=redact,
            redact_keep_context=redact_keep_context,
            allowlist=allowlist,
        )
    )


def record_with(chosen: settings.RecordingSettings) -> str:
    """record_everything() with settings already checked."""
    monitor_every_loop(threshold_ms=chosen.threshold_ms, trace_depth=chosen.trace_depth)
    written_path = recorder.start_with(chosen)
    _stop_recording_on_sigterm()
    _stop_recording_before_raise_signal()
    return written_path


def monitor_every_loop(*, threshold_ms: float, trace_depth: int) -> None:
    """Set up detection (where the program has not) and monitor every event loop from now on, on any thread.

    The settings apply only to what this call sets up: detection the
    program configured itself keeps its own.
    """
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


def pass_on_to_children(chosen: settings.RecordingSettings) -> None:
    """Put the recording settings in the environment, for every Python process this one starts."""
    os.environ.update(chosen.to_environment())


def _stop_recording_on_sigterm() -> None:
    """Write the trace out when SIGTERM would kill the process, then die of it as before.

    Servers stop their workers with SIGTERM, and a multiprocessing pool
    terminates its workers with it: without this, the last flush interval
    and the footer are lost. Only where SIGTERM has its default action: a
    program's own handler is left alone. The handler is native (see
    aiocop's ``sigterm`` module): a Python-level one would wait for the main
    thread, which a C wait can keep from ever running it.
    """
    _native.stop_recording_on_sigterm()


# Signals whose default action ends the process (SIGINT's Python default
# raises KeyboardInterrupt instead, and exits through atexit).
_ENDING_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})


def _stop_recording_before_raise_signal() -> None:
    """Write the trace out before the program kills itself with a signal.

    uvicorn, once shut down after SIGTERM, restores the handler it found
    and raises the signal again; under gunicorn's UvicornWorker that
    handler is the default one, so the worker dies of it, past atexit.
    """
    original = signal.raise_signal
    if getattr(original, "_aiocop_wrapper", False):
        return

    def raise_signal(signalnum: int, /) -> None:
        if signalnum in _ENDING_SIGNALS and signal.getsignal(signalnum) is signal.SIG_DFL:
            recorder.stop_recording()
        original(signalnum)

    raise_signal._aiocop_wrapper = True  # type: ignore[attr-defined]
    signal.raise_signal = raise_signal


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


_environment_read = False


def record_from_environment() -> None:
    """Start recording if AIOCOP_RECORD names a trace file. Never raises, whatever the environment holds.

    Runs in every Python process at start-up (from the .pth hook), so
    nothing may escape it: a variable with a bad value is named in one
    warning and its setting keeps its default; a path that cannot be written
    is logged and nothing is recorded. Runs once per process, however often
    it is called: ``site`` can process a virtualenv's site-packages, and so
    the start-up hook, twice.
    """
    global _environment_read
    if not os.environ.get(settings.RULES["path"].variable) or _environment_read:
        return
    _environment_read = True
    aiocop_logger = logging.getLogger("aiocop")
    try:
        chosen = settings.from_environment(os.environ, aiocop_logger.warning)
        if chosen is None:
            return
        if lineage.is_descendant() and "{pid}" not in chosen.path:
            # never the file of the process that started this one
            chosen = dataclasses.replace(chosen, path=chosen.path + ".{pid}")
        lineage.claim_root(list(sys.argv), redact=chosen.redact)
        record_with(chosen)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # a Rust panic arrives as a BaseException: never let it end start-up
        aiocop_logger.warning("AIOCOP_RECORD=%s: not recording: %s", os.environ.get("AIOCOP_RECORD"), error)
