"""Shared state management for aiocop monitoring.

Whether monitoring is active lives in the native module, where every
monitored callback reads it; ``raise_on_violations`` is a ContextVar, read by
the native audit hook in the context of the code that did the blocking call.

aiocop 1.2.1 kept its flags in module globals, and code written against it
reads and assigns them (``state._monitoring_active = False`` in a test
fixture). The module's class gives those names properties over the native
flags, so reading tells the current state and assigning changes it.
"""

import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType

from aiocop import _native

_thread_local = threading.local()

# Properties of this module (see _StateModule at the end), declared for type checkers.
_monitoring_active: bool
_exception_raised: bool

raise_on_violations: ContextVar[bool] = ContextVar("raise_on_violations", default=False)

_on_activate_hooks: list[Callable[[], object]] = []


def register_on_activate_hook(hook: Callable[[], object]) -> None:
    """Register a hook to be called when monitoring is activated."""
    if hook not in _on_activate_hooks:
        _on_activate_hooks.append(hook)


def activate() -> None:
    """Activate monitoring. Call this after startup when you want to start detecting blocking IO."""
    _native.set_monitoring_active(True)

    for hook in _on_activate_hooks:
        hook()


def deactivate() -> None:
    """Deactivate monitoring. Pauses all detection without unregistering hooks."""
    _native.set_monitoring_active(False)


def is_monitoring_active() -> bool:
    """Check if monitoring is currently active."""
    return _native.is_monitoring_active()


def enable_raise_on_violations() -> None:
    """Enable raising exceptions on high severity blocking IO for the current context."""
    raise_on_violations.set(True)


def disable_raise_on_violations() -> None:
    """Disable raising exceptions on high severity blocking IO for the current context."""
    raise_on_violations.set(False)


def is_raise_on_violations_enabled() -> bool:
    """Check if raise on violations is enabled for the current context."""
    return raise_on_violations.get() is True


class raise_on_violations_context:
    """Context manager to temporarily enable raise_on_violations."""

    def __init__(self) -> None:
        self._token: object = None

    def __enter__(self) -> "raise_on_violations_context":
        self._token = raise_on_violations.set(True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: object) -> None:
        if self._token is not None:
            raise_on_violations.reset(self._token)  # type: ignore[arg-type]


def _get_thread_local() -> threading.local:
    """Get the thread local storage. Internal use only."""
    return _thread_local


def _reset_exception_flag() -> None:
    """Reset the exception raised flag. Internal use only."""
    _native.set_exception_raised(False)


def _mark_exception_raised() -> None:
    """Mark that an exception has been raised. Internal use only."""
    _native.set_exception_raised(True)


def _has_exception_been_raised() -> bool:
    """Check if an exception has been raised in the current handle. Internal use only."""
    return _native.exception_raised()


class _StateModule(ModuleType):
    """This module, with aiocop 1.2.1's state globals as properties over the native flags."""

    @property
    def _monitoring_active(self) -> bool:
        return _native.is_monitoring_active()

    @_monitoring_active.setter
    def _monitoring_active(self, active: bool) -> None:
        # As in 1.2.1, where monitoring is on only while the flag `is True`;
        # unlike activate(), assigning runs no on-activate hook.
        _native.set_monitoring_active(active is True)

    @property
    def _exception_raised(self) -> bool:
        return _native.exception_raised()

    @_exception_raised.setter
    def _exception_raised(self, raised: bool) -> None:
        # Cleared when each monitored callback starts: set inside one, it
        # keeps that callback from raising HighSeverityBlockingIoException.
        _native.set_exception_raised(raised is True)


sys.modules[__name__].__class__ = _StateModule
