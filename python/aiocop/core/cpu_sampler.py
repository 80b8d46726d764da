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
from aiocop.core import _wiring  # noqa: F401  (connects the native side)
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
    # its own watchdog: see aiocop.core._wiring.
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
