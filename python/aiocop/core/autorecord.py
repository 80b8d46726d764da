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
import importlib.util
import logging
import os
import signal
import sys
from typing import Any

from aiocop import _native
from aiocop.core import audit_patcher, blocking_io, lineage, recorder, slow_tasks
from aiocop.core.state import activate

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "AIOCOP_RECORD"
LABEL_VARIABLE = "AIOCOP_LABEL"
THRESHOLD_VARIABLE = "AIOCOP_THRESHOLD_MS"
TRACE_DEPTH_VARIABLE = "AIOCOP_TRACE_DEPTH"
FLUSH_INTERVAL_VARIABLE = "AIOCOP_FLUSH_INTERVAL_S"
RECORD_CONTEXT_VARIABLE = "AIOCOP_RECORD_CONTEXT"
SAMPLE_AFTER_VARIABLE = "AIOCOP_SAMPLE_AFTER_MS"
SAMPLE_INTERVAL_VARIABLE = "AIOCOP_SAMPLE_INTERVAL_MS"
FILE_MODE_VARIABLE = "AIOCOP_FILE_MODE"


def record_everything(
    path: str,
    *,
    label: str | None = None,
    threshold_ms: float = 30,
    trace_depth: int = 20,
    flush_interval_s: float = 1.0,
    record_context: bool = False,
    sample_after_ms: float = recorder.DEFAULT_SAMPLE_AFTER_MS,
    sample_interval_ms: float = recorder.DEFAULT_SAMPLE_INTERVAL_MS,
    file_mode: int = recorder.DEFAULT_FILE_MODE,
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
    written_path = recorder.start_recording(
        path,
        label=label,
        flush_interval_s=flush_interval_s,
        record_context=record_context,
        sample_after_ms=sample_after_ms,
        sample_interval_ms=sample_interval_ms,
        file_mode=file_mode,
    )
    _stop_recording_on_sigterm()
    _stop_recording_before_raise_signal()
    return written_path


def pass_on_to_children(
    path: str,
    *,
    label: str | None,
    threshold_ms: float,
    trace_depth: int,
    flush_interval_s: float,
    record_context: bool,
    sample_after_ms: float,
    sample_interval_ms: float,
    file_mode: int,
) -> None:
    """Put the recording settings in the environment, for every Python process this one starts."""
    settings = {
        ENVIRONMENT_VARIABLE: path,
        THRESHOLD_VARIABLE: repr(threshold_ms),
        TRACE_DEPTH_VARIABLE: str(trace_depth),
        FLUSH_INTERVAL_VARIABLE: repr(flush_interval_s),
        RECORD_CONTEXT_VARIABLE: "1" if record_context else "",
        SAMPLE_AFTER_VARIABLE: repr(sample_after_ms),
        SAMPLE_INTERVAL_VARIABLE: repr(sample_interval_ms),
        FILE_MODE_VARIABLE: f"{file_mode:o}",
    }
    if label is not None:
        settings[LABEL_VARIABLE] = label
    os.environ.update(settings)


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


def _milliseconds(variable: str, default: float) -> float:
    value = float(os.environ.get(variable) or default)
    if not value >= 0:
        raise ValueError(f"{variable} must be a number of milliseconds, 0 or more, not {value}")
    return value


def file_mode_from_octal(text: str) -> int:
    """Permission bits written in octal, as chmod takes them ("640", "0o640"); ValueError if not."""
    try:
        mode = int(text.removeprefix("0o"), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ValueError(f"a file mode is octal permission bits from 000 to 777, not {text!r}")
    return mode


def record_from_environment() -> None:
    """Start recording if AIOCOP_RECORD names a trace file. Never raises: a bad path is logged.

    Runs once per process, however often it is called: ``site`` can process
    a virtualenv's site-packages, and so the start-up hook, twice.
    """
    global _environment_read
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    if not path or _environment_read:
        return
    _environment_read = True
    if lineage.is_descendant() and "{pid}" not in path:
        path += ".{pid}"  # never the file of the process that started this one
    lineage.claim_root(list(sys.argv))
    try:
        record_everything(
            path,
            label=os.environ.get(LABEL_VARIABLE),
            threshold_ms=float(os.environ.get(THRESHOLD_VARIABLE, "30")),
            trace_depth=int(os.environ.get(TRACE_DEPTH_VARIABLE, "20")),
            flush_interval_s=float(os.environ.get(FLUSH_INTERVAL_VARIABLE) or "1.0"),
            record_context=bool(os.environ.get(RECORD_CONTEXT_VARIABLE)),
            sample_after_ms=_milliseconds(SAMPLE_AFTER_VARIABLE, recorder.DEFAULT_SAMPLE_AFTER_MS),
            sample_interval_ms=_milliseconds(SAMPLE_INTERVAL_VARIABLE, recorder.DEFAULT_SAMPLE_INTERVAL_MS),
            file_mode=file_mode_from_octal(os.environ.get(FILE_MODE_VARIABLE) or "600"),
        )
    except (OSError, ValueError) as error:
        logging.getLogger("aiocop").warning("%s=%s: not recording: %s", ENVIRONMENT_VARIABLE, path, error)
