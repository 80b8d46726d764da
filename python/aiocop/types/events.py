"""Event type definitions for aiocop."""

from dataclasses import dataclass, field, fields
from typing import Any, NotRequired, TypedDict

from aiocop import _native


class RawBlockingEvent(TypedDict):
    """Raw blocking event captured by the audit hook before formatting."""

    event_name: str
    raw_args: tuple[Any, ...]
    raw_stack: list[tuple[str, int, str]]
    timestamp: float
    severity: int | None


class BlockingEventInfo(TypedDict):
    """Formatted blocking event info for reporting.

    ``allowed_by`` is there only for an event an allow-list allowed
    (``aiocop.allow``): the identity of the entry that allowed it.
    """

    event: str
    trace: str
    entry_point: str
    severity: int | None
    allowed_by: NotRequired[str]


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

    def __getstate__(self) -> dict[str, Any]:
        # Pickle and copy the fields, formatted, never the native pending report.
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Events made by aiocop's native side leave these two fields unformatted
# until first read: most callbacks look at a few fields only, and formatting
# is most of the cost of an event. The descriptors (non-data, so a field set
# by __init__ or already formatted is read at normal speed) are set after
# @dataclass has read the class, so the fields keep their definitions.
SlowTaskEvent.blocking_events = _native.FormattedOnRead("blocking_events")  # type: ignore[assignment]
SlowTaskEvent.cpu_stack_samples = _native.FormattedOnRead("cpu_stack_samples")  # type: ignore[assignment]
