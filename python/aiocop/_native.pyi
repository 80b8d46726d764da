"""Type stubs for aiocop._native, the Rust half of aiocop (recorder/src)."""

from collections.abc import Callable
from contextvars import ContextVar
from logging import Logger
from typing import Any, Final, final

__all__ = [
    "install_audit_hook",
    "configure",
    "set_monitoring_active",
    "is_monitoring_active",
    "set_threshold_ns",
    "threshold_ns",
    "set_trace_depth",
    "trace_depth",
    "set_callback_lists",
    "exception_raised",
    "set_exception_raised",
    "sampler_settings",
    "sampler_slice_started",
    "sampler_slice_finished",
    "audit_event",
    "install_handle_run",
    "set_loop_monitored",
    "start_sampler",
    "is_sampler_started",
    "start_recording",
    "stop_recording",
    "is_recording",
    "recording_path",
    "before_fork",
    "after_fork_in_parent",
    "after_fork_in_child",
    "set_monitor_all_loops",
    "set_route_var",
    "set_route",
    "read_trace",
    "stop_sampler",
    "run_sampler",
    "replace_sampler_settings",
    "set_sampler_started",
    "stop_recording_on_sigterm",
    "main_thread_sampling_method",
    "recording_sample_counts",
    "watchdog_thread_needed",
    "reset_blocking_events",
    "blocking_events",
    "format_frame",
    "format_audit_args",
    "capture_stack",
    "interned_sizes",
    "AuditedFunction",
    "schedule_patch",
    "ScheduleTarget",
    "FormattedOnRead",
    "PendingReport",
    "MAX_EVENTS_PER_SLICE",
    "run_monitored",
]

MAX_EVENTS_PER_SLICE: Final[int]

def install_audit_hook() -> bool: ...
def configure(
    raise_on_violations: ContextVar[bool],
    slow_task_event: type,
    high_severity_exception: type[BaseException],
    callbacks: list[Callable[[Any], None]],
    providers: list[Callable[[], dict[str, Any]]],
    capture_context: Callable[[], dict[str, Any]],
    report_error: Callable[[str, object, BaseException], None],
    logger: Logger,
    object_new: Callable[[type], Any],
    own_source_prefix: str,
) -> None: ...
def set_monitoring_active(active: bool) -> None: ...
def is_monitoring_active() -> bool: ...
def set_threshold_ns(threshold_ns: int) -> None: ...
def threshold_ns() -> int: ...
def set_trace_depth(depth: int) -> None: ...
def trace_depth() -> int: ...
def set_callback_lists(
    callbacks: list[Callable[[Any], None]],
    providers: list[Callable[[], dict[str, Any]]],
) -> None: ...
def exception_raised() -> bool: ...
def set_exception_raised(raised: bool) -> None: ...
def sampler_settings() -> tuple[float, float | None, float | None, int, int] | None: ...
def sampler_slice_started() -> int: ...
def sampler_slice_finished(start_ns: int) -> list[list[tuple[str, int, str]]]: ...
def audit_event(event: str, args: tuple[Any, ...]) -> None: ...
def install_handle_run(handle_class: type) -> bool: ...
def set_loop_monitored(loop_id: int, monitored: bool) -> None: ...
def start_sampler(
    interval_ms: float,
    arm_after_ms: float | None,
    idle_interval_ms: float | None,
    max_samples_per_slice: int,
    trace_depth: int,
) -> bool: ...
def is_sampler_started() -> bool: ...
def start_recording(
    path: str,
    *,
    label: str | None,
    flush_interval_s: float,
    max_buffered_slices: int,
    record_context: bool,
    sample_after_ms: float,
    sample_interval_ms: float,
    aiocop_version: str,
    python_version: str,
    platform: str,
    host: str,
    argv: list[str],
    parent_pid: int,
    root_command: list[str],
    role: str,
    sys_path: list[str],
    redact: bool = False,
    redact_keep_context: list[str] = ...,
    file_mode: int = 0o600,
) -> str: ...
def stop_recording() -> dict[str, Any] | None: ...
def is_recording() -> bool: ...
def recording_path() -> str | None: ...
def before_fork() -> None: ...
def after_fork_in_parent() -> None: ...
def after_fork_in_child() -> str | None: ...
def set_route_var(var: ContextVar[str | None]) -> None: ...
def set_route(route: str) -> None: ...
def set_monitor_all_loops(all: bool) -> None: ...
def read_trace(path: str) -> dict[str, Any]: ...
def stop_sampler() -> None: ...
def run_sampler() -> None: ...
def replace_sampler_settings(
    interval_ms: float,
    arm_after_ms: float | None,
    idle_interval_ms: float | None,
    max_samples_per_slice: int,
    trace_depth: int,
) -> None: ...
def set_sampler_started(started: bool) -> None: ...
def stop_recording_on_sigterm() -> bool: ...
def main_thread_sampling_method() -> str: ...
def recording_sample_counts() -> tuple[int, int, int]: ...
def watchdog_thread_needed() -> bool: ...
def reset_blocking_events() -> None: ...
def blocking_events() -> list[tuple[str, int, str]]: ...
def format_frame(filename: str, line: int, function: str) -> str: ...
def format_audit_args(args: tuple[Any, ...]) -> str: ...
def capture_stack(depth: int = 20) -> tuple[list[tuple[str, int, str]], int | None]: ...
def interned_sizes() -> tuple[int, int]: ...

@final
class AuditedFunction:
    __wrapped__: Callable[..., Any]
    def __new__(cls, original: Callable[..., Any], event: str) -> AuditedFunction: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Callable[..., Any]: ...

def run_monitored(callback: Callable[..., Any], /, *args: Any) -> Any: ...
def schedule_patch(original: Callable[..., Any], callback_index: int) -> Callable[..., Any]: ...

@final
class FormattedOnRead:
    def __new__(cls, field: str) -> FormattedOnRead: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> list[Any]: ...

@final
class PendingReport:
    def blocking_events(self) -> list[dict[str, Any]]: ...
    def cpu_stack_samples(self) -> list[dict[str, Any]]: ...

@final
class ScheduleTarget:
    __wrapped__: Callable[..., Any]
