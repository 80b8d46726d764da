"""Callback registry for aiocop events.

The native side reads these lists directly, so registering or removing a
callback or provider takes effect on the next monitored callback. Code
written against aiocop 1.2.1 also assigns new lists to
``_slow_task_callbacks`` and ``_context_providers`` (``monkeypatch.setattr``
in a fixture): the module's class turns the assignment into one the native
side sees too.
"""

import logging
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from aiocop import _native
from aiocop.types.events import SlowTaskEvent

logger = logging.getLogger(__name__)

SlowTaskCallback = Callable[[SlowTaskEvent], None]
ContextProvider = Callable[[], dict[str, Any]]

_slow_task_callbacks: list[SlowTaskCallback] = []
_context_providers: list[ContextProvider] = []

# id(function) -> (function, failures). The function is kept so its id is not reused.
_failures: dict[int, tuple[object, int]] = {}


def register_slow_task_callback(callback: SlowTaskCallback) -> None:
    """Register a callback to be invoked when a slow task is detected."""
    if callback not in _slow_task_callbacks:
        _slow_task_callbacks.append(callback)


def unregister_slow_task_callback(callback: SlowTaskCallback) -> None:
    """Unregister a previously registered slow task callback."""
    if callback in _slow_task_callbacks:
        _slow_task_callbacks.remove(callback)


def clear_slow_task_callbacks() -> None:
    """Clear all registered slow task callbacks."""
    _slow_task_callbacks.clear()


def register_context_provider(provider: ContextProvider) -> None:
    """
    Register a context provider, called in the task's context before and after each monitored callback.

    The dicts it returns are merged into SlowTaskEvent.context; non-None values
    returned after the callback win over those returned before it. A
    provider's exceptions are logged once and counted (get_error_counts());
    its KeyboardInterrupt and SystemExit end the program as usual. Its time
    is never counted as the callback's, and a provider slower than
    PROVIDER_TIME_LIMIT_MS in PROVIDER_SLOW_CALLS_ALLOWED calls is disabled
    with one warning.
    """
    _slow_calls.pop(id(provider), None)  # a provider disabled for its time gets another chance
    if provider not in _context_providers:
        _context_providers.append(provider)


def unregister_context_provider(provider: ContextProvider) -> None:
    """Unregister a previously registered context provider."""
    if provider in _context_providers:
        _context_providers.remove(provider)


def clear_context_providers() -> None:
    """Clear all registered context providers."""
    _context_providers.clear()


def _name_of(function: object) -> str:
    return getattr(function, "__name__", None) or repr(function)


def _report_error(kind: str, function: object, error: BaseException) -> None:
    """Log a user callback's or provider's first failure, count every failure. Never raises.

    A callback that fails on every event would otherwise log on every event,
    which in a busy service is itself a way of slowing the application down.
    """
    _, failures = _failures.get(id(function), (function, 0))
    _failures[id(function)] = (function, failures + 1)
    if failures == 0:
        logger.warning(
            "Error in %s %s: %s (later errors of this %s are counted, not logged)",
            kind,
            _name_of(function),
            error,
            kind,
        )


def get_error_counts() -> dict[str, int]:
    """How many times each failing slow-task callback or context provider has raised, by name."""
    counts: dict[str, int] = {}
    for function, failures in _failures.values():
        counts[_name_of(function)] = counts.get(_name_of(function), 0) + failures
    return counts


#: A context provider runs in every monitored callback that blocks or is
#: slow: one whose call takes longer than this...
PROVIDER_TIME_LIMIT_MS = 10.0
#: ...this many times is disabled, with one warning (a single slow call may
#: be a garbage collection or a page fault, not the provider).
PROVIDER_SLOW_CALLS_ALLOWED = 3

# id(provider) -> (provider, calls over the limit); the provider is kept so its id is not reused.
_slow_calls: dict[int, tuple[object, int]] = {}


def _capture_context() -> dict[str, Any]:
    """Capture context from all registered providers. Internal use only.

    Never raises into the application, except a provider's KeyboardInterrupt
    or SystemExit, which pass on as they would from the application's own
    code (Ctrl-C must stop the program). Any other exception, BaseException
    included, is logged once per provider and counted.
    """
    context: dict[str, Any] = {}

    for provider in list(_context_providers):
        if _is_disabled(provider):
            continue
        started_ns = time.perf_counter_ns()
        try:
            provider_context = provider()
            if provider_context is not None:
                context.update(provider_context)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:
            _report_error("context provider", provider, e)
        finally:
            _count_slow_call(provider, time.perf_counter_ns() - started_ns)

    return context


def _is_disabled(provider: object) -> bool:
    _, slow_calls = _slow_calls.get(id(provider), (provider, 0))
    return slow_calls >= PROVIDER_SLOW_CALLS_ALLOWED


def _count_slow_call(provider: object, duration_ns: int) -> None:
    if duration_ns <= PROVIDER_TIME_LIMIT_MS * 1_000_000:
        return
    _, slow_calls = _slow_calls.get(id(provider), (provider, 0))
    _slow_calls[id(provider)] = (provider, slow_calls + 1)
    if slow_calls + 1 == PROVIDER_SLOW_CALLS_ALLOWED:
        logger.warning(
            "Context provider %s disabled: %d of its calls took more than %g ms (the last %.1f ms);"
            " register it again to re-enable it",
            _name_of(provider),
            PROVIDER_SLOW_CALLS_ALLOWED,
            PROVIDER_TIME_LIMIT_MS,
            duration_ns / 1e6,
        )


def _invoke_slow_task_callbacks(event: SlowTaskEvent) -> None:
    """Invoke all registered slow task callbacks. Internal use only."""
    for callback in list(_slow_task_callbacks):
        try:
            callback(event)
        except Exception as e:
            _report_error("slow task callback", callback, e)


class _CallbacksModule(ModuleType):
    """This module, whose two registries can be replaced by assignment, as in aiocop 1.2.1.

    The lists stay module globals, which this module's functions use; the
    properties only add telling the native side when one is replaced.
    """

    @property
    def _slow_task_callbacks(self) -> list[SlowTaskCallback]:
        callbacks: list[SlowTaskCallback] = self.__dict__["_slow_task_callbacks"]
        return callbacks

    @_slow_task_callbacks.setter
    def _slow_task_callbacks(self, callbacks: list[SlowTaskCallback]) -> None:
        self._replace_lists(callbacks, self.__dict__["_context_providers"])

    @property
    def _context_providers(self) -> list[ContextProvider]:
        providers: list[ContextProvider] = self.__dict__["_context_providers"]
        return providers

    @_context_providers.setter
    def _context_providers(self, providers: list[ContextProvider]) -> None:
        self._replace_lists(self.__dict__["_slow_task_callbacks"], providers)

    def _replace_lists(self, callbacks: list[SlowTaskCallback], providers: list[ContextProvider]) -> None:
        if not isinstance(callbacks, list) or not isinstance(providers, list):
            raise TypeError("aiocop's slow task callbacks and context providers must be lists")
        _native.set_callback_lists(callbacks, providers)
        self.__dict__["_slow_task_callbacks"] = callbacks
        self.__dict__["_context_providers"] = providers


sys.modules[__name__].__class__ = _CallbacksModule
