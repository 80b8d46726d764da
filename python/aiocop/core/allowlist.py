"""The allow-list: blocking calls a project accepts, named by the code that makes them.

One parser reads both file forms, and every user of an allow-list (the
pytest plugin, ``aiocop.allow``, ``python -m aiocop record --allowlist``)
matches through ``AllowList.match``:

- ``pyproject.toml``, table ``[tool.aiocop]``, or ``aiocop.toml`` with the same
  keys at top level (an ``aiocop.toml`` beside a ``pyproject.toml`` wins, as
  ``ruff.toml`` does over ``[tool.ruff]``);
- key ``allow``: a list of identities (``"pkg.*"``) or tables
  ``{ id = "mod:Class.method", events = ["open", "socket.*"], reason = "..." }``.

An identity is ``module:qualname`` (a function's ``__name__`` of its globals
and ``co_qualname``, the identity ``aiocop-analyze diff`` uses) or
``module.*`` (that module and its sub-modules); it names no path or line, so
it survives moved files and edited code. An event is allowed by an entry when
any frame of its stack has the entry's identity and its name matches one of
the entry's globs. An entry that allowed nothing in a run is stale: the code
it excused is gone or no longer blocks, and the entry should go too.

Other keys of ``[tool.aiocop]`` are left to their readers (the pytest plugin
reads its options there); an entry's own keys are checked strictly, so a
misspelt ``event =`` is an error rather than an entry allowing every event.
"""

import errno
import os
import re
import stat
import threading
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TypeGuard

#: The file names looked for in a directory, the first found wins.
FILE_NAMES = ("aiocop.toml", "pyproject.toml")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = rf"{_NAME}(?:\.{_NAME})*"
# co_qualname parts: names, and the compiler's own ("<locals>", "<lambda>", "<module>", "<genexpr>").
_QUALNAME_PART = rf"(?:{_NAME}|<{_NAME}>)"
_FUNCTION_IDENTITY = re.compile(rf"{_MODULE}:{_QUALNAME_PART}(?:\.{_QUALNAME_PART})*")
_MODULE_IDENTITY = re.compile(rf"{_MODULE}\.\*")
_ENTRY_KEYS = frozenset({"id", "events", "reason"})
#: What an entry without ``events`` allows: every event.
ALL_EVENTS = ("*",)


class AllowListError(ValueError):
    """An allow-list that cannot be used; the message is one line naming the file, the entry and the problem."""


@dataclass(frozen=True)
class AllowEntry:
    """One allowed identity, the event globs it allows (default: all) and why."""

    identity: str
    events: tuple[str, ...] = ALL_EVENTS
    reason: str | None = None
    #: Where the entry was written, for messages: ``file:allow[index]``.
    source: str = "<allow>"

    def allows_event(self, event_name: str) -> bool:
        return any(fnmatchcase(event_name, pattern) for pattern in self.events)


class AllowList:
    """Entries in file order, and how many events each allowed (``fired``) since it was built."""

    def __init__(self, entries: Iterable[AllowEntry] = ()) -> None:
        self.entries: tuple[AllowEntry, ...] = tuple(entries)
        self.fired: dict[AllowEntry, int] = dict.fromkeys(self.entries, 0)
        # Matches may come from several threads' audit hooks at once.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"AllowList({list(self.entries)!r})"

    def extended(self, entries: Iterable[AllowEntry]) -> "AllowList":
        """A new list with these entries after this one's (counts start again at zero)."""
        return AllowList((*self.entries, *entries))

    def match(self, event_name: str, frames: Sequence[tuple[str, str]]) -> AllowEntry | None:
        """The first entry (in file order) allowing this event, or None.

        ``frames`` are the stack's (module, qualname) pairs, innermost first.
        Every entry that allows the event counts as fired, not only the one
        returned: an entry overlapping another is not stale while its code
        still blocks.
        """
        if not self.entries:
            return None
        identities = frame_identities(frames)
        allowing = [entry for entry in self.entries if entry.identity in identities and entry.allows_event(event_name)]
        if not allowing:
            return None
        with self._lock:
            for entry in allowing:
                self.fired[entry] += 1
        return allowing[0]

    def stale(self) -> list[AllowEntry]:
        """The entries that allowed no event so far, in file order."""
        return [entry for entry in self.entries if self.fired[entry] == 0]


def frame_identities(frames: Iterable[tuple[str, str]]) -> set[str]:
    """Every identity the frames answer to: ``module:qualname`` and ``pkg.*`` for each enclosing package."""
    identities = set()
    for module, qualname in frames:
        identities.add(f"{module}:{qualname}")
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            identities.add(".".join(parts[:depth]) + ".*")
    return identities


def is_identity(text: object) -> TypeGuard[str]:
    """Whether ``text`` is written as an identity: ``module:qualname`` or ``module.*``."""
    return isinstance(text, str) and bool(_FUNCTION_IDENTITY.fullmatch(text) or _MODULE_IDENTITY.fullmatch(text))


def make_entry(identity: object, events: object = None, reason: object = None, source: str = "<allow>") -> AllowEntry:
    """One checked entry (raises AllowListError naming ``source``); events None means all events."""
    if not is_identity(identity):
        raise AllowListError(
            f"{source}: id {identity!r} is not an identity: write 'module:qualname' (mod:Class.method) or 'module.*'"
        )
    return AllowEntry(identity, _checked_events(events, source), _checked_reason(reason, source), source)


def _checked_events(events: object, source: str) -> tuple[str, ...]:
    if events is None:
        return ALL_EVENTS
    if isinstance(events, str) or not isinstance(events, Sequence):
        raise AllowListError(f"{source}: events must be a list of event-name globs, not {events!r}")
    if not events:
        raise AllowListError(
            f"{source}: events is empty, so the entry allows nothing; leave it out to allow every event"
        )
    for pattern in events:
        if not isinstance(pattern, str) or not pattern.strip():
            raise AllowListError(
                f"{source}: events must hold non-empty strings (globs like 'open', 'socket.*'), not {pattern!r}"
            )
    return tuple(events)


def _checked_reason(reason: object, source: str) -> str | None:
    if reason is not None and not isinstance(reason, str):
        raise AllowListError(f"{source}: reason must be a string, not {reason!r}")
    return reason


def entries_from_items(items: object, source: str) -> list[AllowEntry]:
    """The entries of an ``allow`` list as written in TOML (strings or tables); ``source`` names its file."""
    if not isinstance(items, list):
        raise AllowListError(f"{source}: allow must be a list of identities or tables, not {items!r}")
    return [_entry_from_item(item, f"{source}:allow[{index}]") for index, item in enumerate(items)]


def _entry_from_item(item: object, source: str) -> AllowEntry:
    if isinstance(item, str):
        return make_entry(item, source=source)
    if not isinstance(item, dict):
        raise AllowListError(
            f"{source}: an entry is a string identity or a table with id, events, reason, not {item!r}"
        )
    unknown = sorted(set(item) - _ENTRY_KEYS)
    if unknown:
        raise AllowListError(f"{source}: unknown key {unknown[0]!r} (an entry has id, events, reason)")
    if "id" not in item:
        raise AllowListError(f"{source}: the table has no id (write id = 'module:qualname' or 'module.*')")
    return make_entry(item["id"], item.get("events"), item.get("reason"), source)


def parse_allowlist(text: str, source: str) -> AllowList:
    """The allow-list in TOML text ``source``: its ``[tool.aiocop]`` table, or its top level (aiocop.toml)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AllowListError(f"{source}: not valid TOML: {error}") from None
    return AllowList(entries_from_items(_aiocop_table(document, source).get("allow", []), source))


def _aiocop_table(document: dict[str, object], source: str) -> dict[str, object]:
    # A pyproject.toml keeps its settings under [tool.aiocop]; so may any file
    # without a top-level `allow` (a pyproject copied under another name).
    tool = document.get("tool")
    if Path(source).name != "pyproject.toml" and ("allow" in document or not isinstance(tool, dict)):
        return document
    table = tool.get("aiocop", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise AllowListError(f"{source}: tool.aiocop must be a table, not {table!r}")
    return table


def find_allowlist_file(directory: Path) -> Path | None:
    """The file whose allow-list applies in ``directory``: aiocop.toml, else pyproject.toml, else None."""
    for name in FILE_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def load_allowlist(path_or_dir: str | Path) -> AllowList:
    """The allow-list of a file, or of a directory's aiocop.toml / pyproject.toml (empty if it has neither)."""
    path = Path(path_or_dir)
    if path.is_dir():
        found = find_allowlist_file(path)
        if found is None:
            return AllowList()
        path = found
    try:
        text = read_regular_file(path)
    except (OSError, UnicodeDecodeError) as error:
        raise AllowListError(
            f"{path}: cannot read the allow-list: {getattr(error, 'strerror', None) or error}"
        ) from None
    return parse_allowlist(text, str(path))


# The largest allow-list read (a project's pyproject.toml is a few kB).
MAX_ALLOWLIST_BYTES = 4 << 20


def read_regular_file(path: Path) -> str:
    """The text of ``path``, refused unless it is a regular file of a sane size.

    Opened without blocking and checked by its descriptor: a FIFO, a device or
    a socket given as the allow-list (or swapped in after a check) would
    otherwise stop the monitored program at start-up, waiting for a writer."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(descriptor, "rb") as file:
        facts = os.fstat(file.fileno())
        if not stat.S_ISREG(facts.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if facts.st_size > MAX_ALLOWLIST_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_ALLOWLIST_BYTES >> 20} MiB")
        return file.read(MAX_ALLOWLIST_BYTES + 1).decode("utf-8")
