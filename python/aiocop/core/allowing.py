"""The allow-list in force in this process: what the monitor lets block.

Entries come from ``aiocop.allow(...)``, from ``python -m aiocop record
--allowlist FILE`` (or ``AIOCOP_ALLOWLIST``), or from a caller with an
``AllowList`` of its own (the pytest plugin), and are checked by
``aiocop.core.allowlist``. The native side matches them (``_native.set_allowlist``):
an allowed event is still reported and recorded, marked with its entry
(``BlockingEventInfo["allowed_by"]``, the trace's allowed events), and
``raise_on_violations`` ignores it.

With no entry in force the monitor's cost is one atomic load per blocking
event: an allow-list is only consulted when one is set.
"""

import logging
import threading
from collections.abc import Sequence

from aiocop import _native
from aiocop.core.allowlist import AllowEntry, AllowList, make_entry

logger = logging.getLogger("aiocop")

# The event table, in the native side's index order.
_EVENT_NAMES: tuple[str, ...] = tuple(name for name, _weight, _source in _native.blocking_events())

_lock = threading.Lock()
_in_force = AllowList()
# What the native side counted before the list in force was last replaced.
_fired_before: dict[AllowEntry, int] = {}


def allow(identity: str, events: Sequence[str] | None = None, reason: str | None = None) -> AllowEntry:
    """Let the code named by ``identity`` block without failing ``raise_on_violations``.

    ``identity`` is ``"module:qualname"`` (``"myapp.config:load_settings"``,
    ``"shop.views:CartView.total"``) or ``"module.*"`` (a module and its
    sub-modules). An event is allowed when any frame of its stack has that
    identity and its name matches one of ``events`` (globs over aiocop's
    event names, ``["open", "socket.*"]``; default: every event). Allowed
    events are still reported and recorded, marked with the entry.

    Raises:
        aiocop.core.allowlist.AllowListError: (a ValueError) the identity or
            events are not valid; nothing changes.
    """
    entry = make_entry(identity, events, reason, source="aiocop.allow()")
    with _lock:
        _put_in_force(_in_force.extended([entry]))
    return entry


def use_allowlist(allow_list: AllowList) -> None:
    """Put ``allow_list``'s entries in force, replacing those before (an empty list turns allowing off)."""
    with _lock:
        _put_in_force(AllowList(allow_list.entries))


def clear_allowlist() -> None:
    """Allow nothing again."""
    use_allowlist(AllowList())


def allowlist_in_force() -> AllowList:
    """A copy of the entries in force, with ``fired``: how many events each allowed since it was put in force."""
    with _lock:
        snapshot = AllowList(_in_force.entries)
        snapshot.fired.update(_counts())
    return snapshot


def _counts() -> dict[AllowEntry, int]:
    native = _native.allowlist_fired()
    return {entry: _fired_before.get(entry, 0) + count for entry, count in zip(_in_force.entries, native, strict=False)}


def _put_in_force(allow_list: AllowList) -> None:
    global _in_force, _fired_before
    kept_counts = _counts()
    _native.set_allowlist([(entry.identity, _event_indices(entry)) for entry in allow_list.entries])
    _in_force = allow_list
    _fired_before = {entry: kept_counts.get(entry, 0) for entry in allow_list.entries}


def _event_indices(entry: AllowEntry) -> list[int]:
    indices = [index for index, name in enumerate(_EVENT_NAMES) if entry.allows_event(name)]
    if not indices:
        logger.warning(
            "allow-list entry %s (%s): events %s match none of the events aiocop watches",
            entry.source,
            entry.identity,
            list(entry.events),
        )
    return indices
