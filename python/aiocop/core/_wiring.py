"""Connects the native module to the Python side: the objects it reports through, and fork handling.

The package root calls ``connect()`` once, after every other module is imported; nothing else imports
this module, so it sits at the top of the package's imports and calls down into the modules it wires.
"""

import logging
import os

from aiocop import _native
from aiocop.core import cpu_sampler, recorder
from aiocop.core._own_files import AIOCOP_PACKAGE_DIR
from aiocop.core.callbacks import (
    _capture_context,
    _context_providers,
    _report_error,
    _slow_task_callbacks,
)
from aiocop.core.state import raise_on_violations
from aiocop.exceptions import HighSeverityBlockingIoException
from aiocop.types.events import SlowTaskEvent

_connected = False


def _after_fork_in_child() -> None:
    new_trace = _native.after_fork_in_child()
    cpu_sampler.start_watchdog_thread()
    if new_trace is None:
        return
    if new_trace.startswith("error: "):
        logging.getLogger("aiocop").warning("aiocop cannot record in forked process %s: %s", os.getpid(), new_trace[7:])
        return
    recorder.stop_when_multiprocessing_exits()


def connect() -> None:
    """Hands the native side its Python objects and registers the fork handlers; later calls do nothing."""
    global _connected
    if _connected:
        return
    _connected = True
    # Threads do not survive fork(): the CPU sampler and the recorder's writer
    # restart in the child, which records to a file of its own; the locks they
    # share with the hot path are held across the fork so the child gets them free.
    os.register_at_fork(
        before=_native.before_fork,
        after_in_parent=_native.after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )

    _native.configure(
        raise_on_violations,
        SlowTaskEvent,
        HighSeverityBlockingIoException,
        _slow_task_callbacks,
        _context_providers,
        _capture_context,
        _report_error,
        logging.getLogger("aiocop"),
        object.__new__,
        AIOCOP_PACKAGE_DIR,
    )
