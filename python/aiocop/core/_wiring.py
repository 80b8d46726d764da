"""Hands the native module the Python objects it reports through. Imported for its effect, once."""

import logging
import os

from aiocop import _native
from aiocop.core.callbacks import (
    _capture_context,
    _context_providers,
    _report_error,
    _slow_task_callbacks,
)
from aiocop.core.state import raise_on_violations
from aiocop.exceptions import HighSeverityBlockingIoException
from aiocop.types.events import SlowTaskEvent

# Frames from files under this directory are aiocop's own: never shown, never blamed.
AIOCOP_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

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
