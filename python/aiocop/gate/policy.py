"""What fails a test: ``--aiocop-fail-on``.

A value is a severity level (``low``, ``medium``, ``high``: a slice whose
blocking events, less the allowed ones, score at least that level's
threshold), ``any`` (any blocking event that is not allowed), or a
comma-separated list of event names or globs over them (``time.sleep,socket.*``).
Levels and ``any`` also fail CPU slices over the threshold; in a list,
``cpu`` stands for them.
"""

import fnmatch
from dataclasses import dataclass

from aiocop.core.blocking_io import BLOCKING_EVENTS
from aiocop.types.severity import THRESHOLD_HIGH, THRESHOLD_LOW, THRESHOLD_MEDIUM

DEFAULT_FAIL_ON = "medium"

_LEVELS = {"low": THRESHOLD_LOW, "medium": THRESHOLD_MEDIUM, "high": THRESHOLD_HIGH}

CPU = "cpu"


@dataclass(frozen=True)
class FailOn:
    """A parsed ``--aiocop-fail-on``."""

    text: str
    #: The score a slice's unallowed events must reach; None when events are chosen by name.
    min_score: int | None
    #: Globs over event names; empty for a level.
    event_globs: tuple[str, ...]
    cpu_slices: bool

    def fails_events(self, names_and_weights: list[tuple[str, int]]) -> bool:
        """Whether these unallowed events of one slice fail the test."""
        if not names_and_weights:
            return False
        if self.min_score is not None:
            return sum(weight for _, weight in names_and_weights) >= self.min_score
        return any(fnmatch.fnmatchcase(name, glob) for name, _ in names_and_weights for glob in self.event_globs)


def parse_fail_on(text: str) -> FailOn:
    """Parse ``--aiocop-fail-on``; raises ValueError with one line saying what is wrong."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    if not words:
        raise ValueError(f"--aiocop-fail-on={text!r}: give a level (low, medium, high), any, or event names")
    if len(words) == 1 and words[0] in _LEVELS:
        return FailOn(text, _LEVELS[words[0]], (), cpu_slices=True)
    if len(words) == 1 and words[0] == "any":
        # A weight-0 event still fails: any blocking call at all.
        return FailOn(text, 0, (), cpu_slices=True)
    unknown = [w for w in words if w != CPU and not any(fnmatch.fnmatchcase(e, w) for e in BLOCKING_EVENTS)]
    if unknown:
        raise ValueError(
            f"--aiocop-fail-on={text!r}: {', '.join(map(repr, unknown))} names no blocking event aiocop knows"
            " (give a level: low, medium, high; any; or event names such as time.sleep, socket.*, cpu)"
        )
    globs = tuple(w for w in words if w != CPU)
    return FailOn(text, None, globs, cpu_slices=CPU in words)
