"""CPU stack sampling for slow event-loop slices.

Blocking IO events get stack attribution from the audit hook, but a callback
slice that freezes the loop with pure CPU work (reason="cpu_blocking")
carries no clue about where the time went. A native watchdog thread samples
the stack of the thread running a monitored callback once the callback is
older than an arming delay, and the samples are attached to the resulting
SlowTaskEvent.

The watchdog is a daemon ``threading.Thread`` named ``aiocop-cpu-sampler``
(listed by ``threading.enumerate()``, faulthandler and py-spy, and started
again in a forked child), whose body runs natively: it sleeps without the
GIL and takes it only to sample a slice that is already old; the hot path
stores two integers per callback.
"""

import atexit
import logging
import threading

from aiocop import _native
from aiocop.types.events import CpuStackSample

logger = logging.getLogger(__name__)


def start_cpu_sampling(
    interval_ms: int = 10,
    arm_after_ms: int | None = None,
    idle_interval_ms: int | None = None,
    max_samples_per_slice: int = 32,
    trace_depth: int = 20,
) -> None:
    """
    Start the CPU stack sampling watchdog thread.

    Started automatically by detect_slow_tasks() unless it is called with
    cpu_sampling=False. Call this explicitly BEFORE detect_slow_tasks() only
    to customize the parameters below.

    Args:
        interval_ms: Sampling interval while a slice is running (default: 10ms).
        arm_after_ms: Minimum age of the current slice before sampling starts.
            Defaults to half the slow-task threshold, and follows it if the
            threshold is configured later.
        idle_interval_ms: Watchdog wake-up interval while no slice is running.
            Defaults to min(50ms, max(arm_after_ms, interval_ms)). The watchdog
            never sleeps under 1ms.
        max_samples_per_slice: Cap on samples kept per slice (default: 32).
        trace_depth: Number of stack frames captured per sample (default: 20).
    """
    if _native.is_sampler_started():
        logger.warning("start_cpu_sampling called more than once, ignoring")
        return

    _native.start_sampler(interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice, trace_depth)
    start_watchdog_thread()

    # A child forked after this call (a gunicorn --preload worker) restarts
    # its own watchdog: see aiocop.core._wiring._after_fork_in_child.
    # Stop the watchdog before the interpreter finalizes.
    atexit.register(_native.stop_sampler)

    logger.info(
        "CPU stack sampling started (interval=%sms, arm_after=%s)",
        interval_ms,
        f"{arm_after_ms}ms" if arm_after_ms is not None else "threshold/2",
    )


WATCHDOG_THREAD_NAME = "aiocop-cpu-sampler"


def start_watchdog_thread() -> None:
    """Start the watchdog thread if sampling (the monitor's, or recording's) needs one and none runs.

    Called when either starts, and in a forked child.
    """
    if _native.watchdog_thread_needed():
        thread = threading.Thread(target=_native.run_sampler, name=WATCHDOG_THREAD_NAME, daemon=True)
        thread.start()


def is_cpu_sampling_started() -> bool:
    """Return whether the CPU sampling watchdog has been started."""
    return _native.is_sampler_started()


def format_cpu_samples(raw_samples: list[list[tuple[str, int, str]]]) -> list[CpuStackSample]:
    """Aggregate raw stack samples into unique stacks with occurrence counts, most frequent first."""
    from aiocop.core.blocking_io import format_stack_frame

    counts: dict[tuple[tuple[str, int, str], ...], int] = {}
    for stack in raw_samples:
        key = tuple(stack)
        counts[key] = counts.get(key, 0) + 1

    formatted: list[CpuStackSample] = []
    for stack_key, count in sorted(counts.items(), key=lambda item: item[1], reverse=True):
        formatted_frames = [format_stack_frame(frame) for frame in stack_key]
        formatted.append(
            {
                "trace": " <- ".join(formatted_frames),
                "entry_point": formatted_frames[0] if len(formatted_frames) > 0 else "unknown",
                "count": count,
            }
        )

    return formatted


# aiocop 1.2.1's module-level names, which code written against it reads and
# calls: its settings (properties over the native sampler's: assigning one
# puts it in force), its
# private helpers on top of the native sampler, and the idle values of its
# single-slot hand-off between the loop and the watchdog (ours keeps one
# slot per thread, natively).
import os as os  # noqa: E402
import sys  # noqa: E402
import time as time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

from aiocop.core._own_files import AIOCOP_PACKAGE_DIR as _AIOCOP_PACKAGE_DIR  # noqa: E402

_MIN_SLEEP_S = 0.001

_current_slice_id: int = 0
_current_slice_thread_id: int = 0
_samples_lock = threading.Lock()
_samples_slice_id: int = 0
_samples: list[list[tuple[str, int, str]]] = []

# Properties of this module (see _CpuSamplerModule), declared for type checkers.
_sampler_started: bool
_interval_s: float
_arm_after_ns_override: int | None
_idle_interval_s_override: float | None
_max_samples_per_slice: int
_trace_depth: int

# The slice each thread published through _slice_started(): (slice id, start on the native clock).
_published = threading.local()


def _settings() -> tuple[float, float | None, float | None, int, int]:
    """(interval_ms, arm_after_ms, idle_interval_ms, max_samples_per_slice, trace_depth) in force."""
    return _native.sampler_settings() or (10, None, None, 32, 20)


def _effective_arm_and_idle() -> tuple[int, float]:
    """Effective (arm_after_ns, idle_interval_s): derived from the live slow-task threshold where not set."""
    interval_ms, arm_after_ms, idle_interval_ms, _, _ = _settings()
    arm_after_ns = max(1_000_000, _native.threshold_ns() // 2) if arm_after_ms is None else round(arm_after_ms * 1e6)
    if idle_interval_ms is None:
        return arm_after_ns, min(0.050, max(arm_after_ns / 1_000_000_000, interval_ms / 1000))
    return arm_after_ns, idle_interval_ms / 1000


def _reinit_after_fork() -> None:
    """Make sure a watchdog thread runs once sampling is started (a forked child gets one from aiocop itself)."""
    if _native.is_sampler_started():
        start_watchdog_thread()


def _watchdog_loop() -> None:
    """The watchdog thread's body: samples until the interpreter exits; returns at once if a watchdog runs."""
    _native.run_sampler()


def _slice_started(slice_id: int) -> None:
    """Publish a slice of the calling thread to the watchdog, as every monitored callback does."""
    _published.slice = (slice_id, _native.sampler_slice_started())


def _slice_finished(slice_id: int) -> list[list[tuple[str, int, str]]]:
    """Withdraw the calling thread's slice; the stacks sampled during it if it is ``slice_id``."""
    published: tuple[int, int] | None = getattr(_published, "slice", None)
    if published is None:
        return []
    _published.slice = None
    samples = _native.sampler_slice_finished(published[1])
    return samples if published[0] == slice_id else []


def _capture_thread_stack(thread_id: int) -> list[tuple[str, int, str]]:
    """The stack of thread ``thread_id``, innermost first, without aiocop's own frames."""
    frame = sys._current_frames().get(thread_id)
    depth = _settings()[4]
    captured_frames: list[tuple[str, int, str]] = []
    try:
        while frame is not None and len(captured_frames) < depth:
            filename = frame.f_code.co_filename
            if not filename.startswith(_AIOCOP_PACKAGE_DIR):
                captured_frames.append((filename, frame.f_lineno, frame.f_code.co_name))
            frame = frame.f_back
    finally:
        # Frames hold locals alive; no reference may outlive the walk.
        del frame
    return captured_frames


def _native_setting(index: int, to_native: Callable[[Any], Any], from_native: Callable[[Any], Any]) -> property:
    """A property of this module over setting ``index`` of the native sampler's settings (see _settings()).

    Assigning it puts the new value in force, as assigning aiocop 1.2.1's
    module global did for its next sample.
    """

    def get(module: ModuleType) -> object:
        return from_native(_settings()[index])

    def put(module: ModuleType, value: object) -> None:
        settings: list[Any] = list(_settings())
        settings[index] = to_native(value)
        _native.replace_sampler_settings(*settings)

    return property(get, put)


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _put_sampler_started(module: ModuleType, value: object) -> None:
    _native.set_sampler_started(value is True)


class _CpuSamplerModule(ModuleType):
    """This module, with aiocop 1.2.1's sampler globals as properties over the native sampler."""

    _sampler_started = property(lambda module: _native.is_sampler_started(), _put_sampler_started)
    _interval_s = _native_setting(0, lambda s: s * 1000, lambda ms: ms / 1000)
    _arm_after_ns_override = _native_setting(1, _optional(lambda ns: ns / 1e6), _optional(lambda ms: round(ms * 1e6)))
    _idle_interval_s_override = _native_setting(2, _optional(lambda s: s * 1000), _optional(lambda ms: ms / 1000))
    _max_samples_per_slice = _native_setting(3, int, int)
    _trace_depth = _native_setting(4, int, int)


sys.modules[__name__].__class__ = _CpuSamplerModule
