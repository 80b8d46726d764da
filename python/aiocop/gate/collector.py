"""Gathers the blocking slices of each test from the monitor.

A monitored slice that blocked or overran is handed to ``Collector.on_slice``
(a slow-task callback, run on the loop's thread at the slice's end). It goes
to whatever the session is running at that moment, the ``Where`` the plugin
sets around each test's setup, call and teardown and each fixture's setup:
so a loop shared by many tests (session- or module-scoped) or a background
task started by an earlier test gives each test the blocking that happened
while it ran, and nothing else.

Each event is matched against the allow-lists in effect (the project's file
and the test's ``@pytest.mark.aiocop(allow=...)``); what is left decides,
by the ``FailOn`` policy, whether the slice fails its test.
"""

from __future__ import annotations

import sys
import sysconfig
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiocop.gate.policy import FailOn


class AllowMatcher(Protocol):
    """What the collector needs of an allow-list (``aiocop.core.allowlist.AllowList``)."""

    def match(self, event_name: str, frames: Sequence[tuple[str, str]]) -> Any: ...


@dataclass(frozen=True)
class Where:
    """What the session was running: a test's phase, and the fixture being set up if any."""

    nodeid: str
    phase: str  # setup, call, teardown
    fixture: str | None = None


@dataclass(frozen=True)
class Frame:
    filename: str
    line: int
    module: str
    qualname: str


@dataclass(frozen=True)
class Event:
    name: str
    args: str
    weight: int
    frames: tuple[Frame, ...]  # innermost first
    allowed_by: str | None = None  # the allow-list entry that allowed it (its source)


@dataclass(frozen=True)
class BlockedSlice:
    """One monitored slice that did blocking I/O or overran the threshold, with its verdict."""

    where: Where
    elapsed_ms: float
    threshold_ms: float
    exceeded: bool
    cpu: bool  # overran without blocking I/O
    events: tuple[Event, ...]
    #: CPU slices: where the stack samples point, most frequent first.
    cpu_entry_points: tuple[str, ...]
    fails: bool

    @property
    def unallowed(self) -> list[Event]:
        return [e for e in self.events if e.allowed_by is None]

    @property
    def allowed(self) -> list[Event]:
        return [e for e in self.events if e.allowed_by is not None]


@dataclass
class TestBlocking:
    """What one test's phases did."""

    slices: list[BlockedSlice] = field(default_factory=list)

    def failing(self, phase: str) -> list[BlockedSlice]:
        return [s for s in self.slices if s.fails and s.where.phase == phase]

    def counts(self) -> dict[str, int]:
        """Numbers that travel with the test's reports (to pytest-xdist's controller too)."""
        return {
            "failing_slices": sum(1 for s in self.slices if s.fails),
            "blocking_events": sum(len(s.unallowed) for s in self.slices),
            "allowed_events": sum(len(s.allowed) for s in self.slices),
            "cpu_slices": sum(1 for s in self.slices if s.cpu),
        }


class Collector:
    """Sorts the monitor's slices into the tests that ran them."""

    def __init__(self, fail_on: FailOn, allowlist: AllowMatcher | None) -> None:
        self.fail_on = fail_on
        self.allowlist = allowlist
        self.where: Where | None = None
        #: The running test's own allow-list (its marker), if it has one.
        self.test_allowlist: AllowMatcher | None = None
        #: Tests marked ``aiocop_skip`` are not gated while they run.
        self.skipping = False
        self.by_test: dict[str, TestBlocking] = {}
        #: Slices that blocked while no test ran (collection, the session's end).
        self.outside_tests = 0
        self._lock = threading.Lock()

    def on_slice(self, event: Any) -> None:
        """The slow-task callback: registered first, so it reads the native details before any other callback."""
        where = self.where
        if where is None:
            self.outside_tests += 1
            return
        if self.skipping:
            return
        pending = vars(event).get("_aiocop_pending")
        events = [self._allow(e) for e in (_events_of(pending) if pending is not None else _events_read(event))]
        cpu = event.reason == "cpu_blocking"
        unallowed = [(e.name, e.weight) for e in events if e.allowed_by is None]
        fails = self.fail_on.fails_events(unallowed) or (cpu and event.exceeded_threshold and self.fail_on.cpu_slices)
        blocked = BlockedSlice(
            where=where,
            elapsed_ms=event.elapsed_ms,
            threshold_ms=event.threshold_ms,
            exceeded=event.exceeded_threshold,
            cpu=cpu,
            events=tuple(events),
            cpu_entry_points=tuple(s["entry_point"] for s in event.cpu_stack_samples) if cpu else (),
            fails=fails,
        )
        with self._lock:
            self.by_test.setdefault(where.nodeid, TestBlocking()).slices.append(blocked)

    def _allow(self, event: Event) -> Event:
        frames = [(f.module, f.qualname) for f in event.frames]
        for allowlist in (self.test_allowlist, self.allowlist):
            if allowlist is None:
                continue
            entry = allowlist.match(event.name, frames)
            if entry is not None:
                return Event(event.name, event.args, event.weight, event.frames, _source_of(entry))
        return event

    def blocking_of(self, nodeid: str) -> TestBlocking:
        return self.by_test.get(nodeid) or TestBlocking()


def _source_of(entry: Any) -> str:
    return f"{entry.identity} ({entry.source})"


def _events_of(pending: Any) -> list[Event]:
    return [
        Event(name, args, weight, tuple(Frame(*frame) for frame in frames))
        for name, args, weight, frames in pending.event_details()
    ]


def _events_read(event: Any) -> list[Event]:
    """The events of a slice whose native details another reader used up: names and arguments, no frame names."""
    events = []
    for info in event.blocking_events:
        name, _, args = info["event"].partition("(")
        events.append(Event(name, args.removesuffix(")"), info["severity"] or 0, ()))
    return events


def _library_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    prefixes = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    prefixes.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return tuple(sorted(prefixes))


_LIBRARY_PREFIXES = _library_prefixes()


def is_library_frame(frame: Frame) -> bool:
    """The standard library's and installed packages' frames; the rest is the project's own code."""
    return frame.filename.startswith("<") or frame.filename.startswith(_LIBRARY_PREFIXES)
