"""Event type definitions for aiocop."""

from dataclasses import dataclass, field, fields
from typing import Any, TypedDict


class RawBlockingEvent(TypedDict):
    """Raw blocking event captured by the audit hook before formatting."""

    event_name: str
    raw_args: tuple[Any, ...]
    raw_stack: list[tuple[str, int, str]]
    timestamp: float
    severity: int | None


class BlockingEventInfo(TypedDict):
    """Formatted blocking event info for reporting."""

    event: str
    trace: str
    entry_point: str
    severity: int | None


class CpuStackSample(TypedDict):
    """Aggregated stack sample captured during a CPU-bound slice."""

    trace: str
    entry_point: str
    count: int


@dataclass(frozen=True)
class SlowTaskEvent:
    """Event emitted for a monitored callback that did blocking I/O or overran the threshold.

    ``blocking_events`` keeps the first 50 events of the callback;
    ``dropped_blocking_events`` counts the ones after those, and
    ``severity_score`` sums the weights of all of them.
    """

    elapsed_ms: float
    threshold_ms: float
    exceeded_threshold: bool
    severity_score: int
    severity_level: str
    reason: str
    blocking_events: list[BlockingEventInfo]
    context: dict[str, Any] = field(default_factory=dict)
    cpu_stack_samples: list[CpuStackSample] = field(default_factory=list)
    dropped_blocking_events: int = 0

    def __getattr__(self, name: str) -> Any:
        # Events made by aiocop's native side leave blocking_events and
        # cpu_stack_samples unformatted until first read: most callbacks look
        # at a few fields only, and formatting is most of the cost of an event.
        pending = self.__dict__.get("_aiocop_pending") if name in _FORMATTED_ON_READ else None
        if pending is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = getattr(pending, name)()
        self.__dict__[name] = value
        if _FORMATTED_ON_READ <= self.__dict__.keys():
            del self.__dict__["_aiocop_pending"]
        return value

    def __getstate__(self) -> dict[str, Any]:
        # Pickle and copy the fields, formatted, never the native pending report.
        return {f.name: getattr(self, f.name) for f in fields(self)}


_FORMATTED_ON_READ = frozenset({"blocking_events", "cpu_stack_samples"})
