"""Makes stdlib functions without a native audit event raise one, so the audit hook sees them.

The wrappers are native (``aiocop._native.AuditedFunction``): calling a
patched function costs one native call more, and socket methods called on
non-blocking sockets (timeout 0.0, as asyncio's own transports use them)
raise nothing.
"""

import importlib
import logging
import sys
from functools import wraps as wraps  # aiocop 1.2.1's namespace, as the severity weights below
from typing import Any

from aiocop import _native
from aiocop.types.severity import WEIGHT_HEAVY as WEIGHT_HEAVY
from aiocop.types.severity import WEIGHT_LIGHT as WEIGHT_LIGHT
from aiocop.types.severity import WEIGHT_MODERATE as WEIGHT_MODERATE
from aiocop.types.severity import WEIGHT_TRIVIAL as WEIGHT_TRIVIAL

logger = logging.getLogger(__name__)

_PYTHON = sys.version_info[:2]

FUNCTIONS_TO_PATCH_DICT: dict[str, int] = {
    name: weight for name, weight, source in _native.blocking_events() if source == "patched"
}

if _PYTHON < (3, 13):
    # time.sleep only gained its own native audit event in Python 3.13.
    FUNCTIONS_TO_PATCH_DICT |= {
        name: weight for name, weight, source in _native.blocking_events() if source == "patched-before-3.13"
    }

FUNCTIONS_TO_PATCH = list(FUNCTIONS_TO_PATCH_DICT.keys())

patched_functions: list[str] = []

_patch_audit_functions_configured = False


def _get_target(path: str) -> tuple[Any | None, str | None]:
    """Resolve a dotted path such as ``socket.socket.connect`` into (parent object, attribute name)."""
    module_name, *attributes, attribute = path.split(".")

    try:
        parent: Any = importlib.import_module(module_name)
    except ImportError:
        return None, None

    for part in attributes:
        parent = getattr(parent, part, None)
        if parent is None:
            return None, None

    return parent, attribute


def patch_audit_functions() -> None:
    """
    Patch Python stdlib functions to emit audit events for blocking IO detection.

    This patches functions that don't have native audit events (like socket operations,
    or time.sleep on Python < 3.13) to emit custom audit events that can be captured by
    the audit hook.

    Should be called early in application startup, before start_blocking_io_detection().
    """
    global _patch_audit_functions_configured

    if _patch_audit_functions_configured is True:
        logger.warning("patch_audit_functions called more than once, ignoring")
        return

    patched_functions.clear()

    for func_path in FUNCTIONS_TO_PATCH:
        parent, method_name = _get_target(func_path)

        if parent is None or method_name is None or not hasattr(parent, method_name):
            logger.warning("Could not patch %s: target not found", func_path)
            continue

        original = getattr(parent, method_name)
        setattr(parent, method_name, _native.AuditedFunction(original, func_path))
        patched_functions.append(func_path)

    logger.info("Patched functions for audit: %s", patched_functions)

    _patch_audit_functions_configured = True


def get_patched_functions() -> list[str]:
    """Return a copy of the list of functions that have been patched."""
    return patched_functions.copy()
