"""Recording every monitored callback slice, and every blocking event in it, to a trace file.

The hot path only appends to a bounded in-memory buffer; a native background
thread compresses and writes it (zstd + bincode chunks, see
docs/trace-format.md) at least every ``flush_interval_s``. Read traces with
``aiocop-analyze`` or ``aiocop.open_trace`` (``aiocop.trace``).
"""

import atexit
import logging
import os
import platform
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

from aiocop import _native
from aiocop.core import (
    allowing,
    cpu_sampler,
    lineage,
    routes,
)
from aiocop.core.allowlist import AllowListError, load_allowlist
from aiocop.core.settings import (
    DEFAULT_FILE_MODE,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_BUFFERED_SLICES,
    DEFAULT_SAMPLE_AFTER_MS,
    DEFAULT_SAMPLE_FRAMES,
    DEFAULT_SAMPLE_INTERVAL_MS,
    RecordingSettings,
)

logger = logging.getLogger(__name__)


class RecordingSummary(TypedDict):
    """What stop_recording() reports about the trace it closed."""

    path: str
    slices: int
    events: int
    dropped: int
    chunks: int
    bytes: int
    error: str | None


def start_recording(
    path: str | os.PathLike[str],
    *,
    label: str | None = None,
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    record_context: bool = False,
    max_buffered_slices: int = DEFAULT_MAX_BUFFERED_SLICES,
    sample_after_ms: float = DEFAULT_SAMPLE_AFTER_MS,
    sample_interval_ms: float = DEFAULT_SAMPLE_INTERVAL_MS,
    sample_frames: str = DEFAULT_SAMPLE_FRAMES,
    file_mode: int = DEFAULT_FILE_MODE,
    redact: bool = False,
    redact_keep_context: tuple[str, ...] = (),
    allowlist: str | os.PathLike[str] | None = None,
) -> str:
    """
    Start recording every monitored callback slice and its blocking events to ``path``.

    ``{pid}`` in the path expands to the process id, so forked workers each
    write their own file; a process forked while recording starts a fresh
    file (with ``{pid}``, its own; without, ``path`` suffixed with its pid).
    Detection is set up with its defaults if it was not, and monitoring is
    activated.

    The file is created new at start (never through a symlink), with mode
    ``file_mode``, and locked until the recording stops; it is removed then
    if no slice was recorded, so a process that never runs a monitored loop
    leaves none. If another live process is writing ``path``, or ``path`` is
    a symlink, another user's file or not a regular file, this one writes
    ``<path>.<pid>`` instead (and says so once, through the ``aiocop``
    logger). A FIFO or a device is written as it is; a FIFO no process
    reads is refused at once. Stopping (at exit too) waits at most 2 s for
    the writer: past it, what was not written is counted and logged once.

    Args:
        path: The trace file to write (replaced if it is a regular file of
            this user that no live process is writing).
        label: Names the release or build recorded ("v1.4.2", a git sha);
            stored in the trace header so that diffs can tell sides apart.
        flush_interval_s: Data reaches the file at least this often
            (0.01 to 3600 seconds).
        record_context: Also record context provider values, as strings (off
            by default: they may be sensitive).
        max_buffered_slices: Slices kept in memory for the writer at most;
            past it, slices are dropped and counted, never waited for.
        sample_after_ms: A slice that runs this long gets stack samples, so
            that the trace says where the loop's time went in slices too
            short to be slow (0 turns recording's sampling off). Independent
            of the monitor's ``cpu_stack_samples``, whose rules stay 1.2.1's.
        sample_interval_ms: Such a slice is sampled about this often; each
            sample stands for this much time.
        sample_frames: How those samples are taken: "pending" (the loop
            thread samples itself at its next eval-breaker check, which a
            long C call holding the GIL delays), "read" (the sampler thread
            reads the loop thread's frames, inside long C calls too; where it
            cannot, as "pending", said once) or "validate" ("read", each read
            checked against a "pending" sample: counts in
            ``aiocop._native.frame_read_counts()``).
        file_mode: Permission bits of the new file, exactly (the umask does
            not apply): 0o600 by default; 0o640 lets the file's group read it.
        redact: Keep secrets out of the trace (see ``docs/recording.md``):
            the command lines are reduced to the program's name, the
            arguments of blocking events (paths, hosts, subprocess
            arguments) are hashed, context values, ``sys.path`` and the host
            name are left out; the header says the trace is redacted.
        redact_keep_context: With ``redact`` and ``record_context``, the
            context keys whose values are still recorded.
        allowlist: An allow-list to put in force (see ``aiocop.allow``): a
            ``pyproject.toml`` with ``[tool.aiocop]``, an ``aiocop.toml``, or
            a directory holding one. Allowed events are still recorded,
            marked allowed.

    Returns:
        The path of the file being written.

    Raises:
        ValueError: A setting is out of its range (aiocop.core.settings.SettingError,
            naming the argument); nothing is recorded.
        OSError: The file cannot be created or written; nothing is recorded.
    """
    settings = RecordingSettings(
        path=os.fspath(path),
        label=label,
        flush_interval_s=flush_interval_s,
        max_buffered_slices=max_buffered_slices,
        record_context=record_context,
        sample_after_ms=sample_after_ms,
        sample_interval_ms=sample_interval_ms,
        sample_frames=sample_frames,
        file_mode=file_mode,
        redact=redact,
        redact_keep_context=_keys(redact_keep_context),
        allowlist=None if allowlist is None else os.path.abspath(allowlist),
    )
    return start_with(settings)


def start_with(settings: RecordingSettings) -> str:
    """start_recording() with its settings already checked (its threshold and trace depth are not its business)."""
    _ensure_detection()
    if settings.allowlist is not None:
        _put_allowlist_in_force(settings.allowlist)
    process = lineage.describe(redact=settings.redact)
    _native.set_sample_frames(settings.sample_frames)
    written_path = _native.start_recording(
        settings.path,
        label=settings.label,
        flush_interval_s=settings.flush_interval_s,
        max_buffered_slices=settings.max_buffered_slices,
        record_context=settings.record_context,
        sample_after_ms=settings.sample_after_ms,
        sample_interval_ms=settings.sample_interval_ms,
        aiocop_version=_aiocop_version(),
        python_version=platform.python_version(),
        platform=_platform(),
        host="" if settings.redact else socket.gethostname(),
        argv=lineage.reduced(sys.argv) if settings.redact else list(sys.argv),
        redact=settings.redact,
        redact_keep_context=list(settings.redact_keep_context),
        file_mode=settings.file_mode,
        **process,
    )
    cpu_sampler.start_watchdog_thread()  # recording's sampling runs on it
    routes.install()  # web frameworks name each request's route, now or once imported
    _register_stop_at_exit()
    logger.info("Recording to %s", written_path)
    return written_path


def _put_allowlist_in_force(path: str) -> None:
    # Checked when the settings were made; a file changed since is said once, never raised.
    try:
        allowing.use_allowlist(load_allowlist(path))
    except AllowListError as error:
        logger.warning("allow-list not used: %s", error)


def _keys(keys: Any) -> Any:
    """A list of context keys as the tuple the settings hold; anything else as it is, for them to refuse."""
    return tuple(keys) if isinstance(keys, list) else keys


def stop_recording() -> RecordingSummary | None:
    """Stop recording: write what is buffered and the footer. Returns what was written, or None if not recording."""
    summary = _native.stop_recording()
    if summary is not None:
        logger.info("Recorded %(slices)s slices, %(events)s events to %(path)s", summary)
    return summary  # type: ignore[return-value]


def is_recording() -> bool:
    """Whether slices are being recorded."""
    return _native.is_recording()


@contextmanager
def recording(path: str | os.PathLike[str], **options: Any) -> Iterator[str]:
    """Record to ``path`` for the duration of the ``with`` block; takes start_recording()'s options."""
    written_path = start_recording(path, **options)
    try:
        yield written_path
    finally:
        stop_recording()


def _ensure_detection() -> None:
    from aiocop.core import audit_patcher, blocking_io, slow_tasks
    from aiocop.core.state import activate

    if not audit_patcher._patch_audit_functions_configured:
        audit_patcher.patch_audit_functions()
    if not blocking_io._start_blocking_io_detection_configured:
        blocking_io.start_blocking_io_detection()
    if not slow_tasks._detect_slow_tasks_configured:
        slow_tasks.detect_slow_tasks()
    activate()


_stop_registered = False


def _register_stop_at_exit() -> None:
    global _stop_registered
    if not _stop_registered:
        # atexit runs handlers last-in first-out: registered after the CPU
        # sampler's stop, this one runs before it.
        atexit.register(stop_recording)
        _stop_registered = True
    stop_when_multiprocessing_exits()


def stop_when_multiprocessing_exits() -> None:
    """Stop recording in multiprocessing's exit handler too, once multiprocessing is imported.

    A multiprocessing child started by fork or forkserver leaves through
    ``os._exit()``, past atexit, right after ``multiprocessing.util._exit_function()``.
    Called at start and in every forked child that records.
    """
    util = sys.modules.get("multiprocessing.util")
    original = getattr(util, "_exit_function", None)
    if original is None or getattr(original, "_aiocop_wrapper", False):
        return

    def _exit_function(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            stop_recording()

    _exit_function._aiocop_wrapper = True  # type: ignore[attr-defined]
    setattr(util, "_exit_function", _exit_function)  # noqa: B010 (a module mypy cannot see into)


def _platform() -> str:
    # Not platform.platform(): it runs `uname -p` in a subprocess.
    system = os.uname()
    return f"{system.sysname}-{system.release}-{system.machine}"


def _aiocop_version() -> str:
    from importlib.metadata import version

    return version("aiocop")
