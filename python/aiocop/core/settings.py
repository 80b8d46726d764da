"""The recording settings: one object, one rule set, the defaults written once.

Every way of starting a recording builds a ``RecordingSettings``: the
Python API from its keyword arguments, ``python -m aiocop record`` from its
options, and the start-up hook from ``AIOCOP_*`` environment variables. The
object checks itself when built, so a value that passes one way passes every
way, and each front only decides how to say no:

- the Python API raises ``SettingError`` (a ``ValueError``) naming the argument;
- the command line exits 2 with one line naming the option;
- the environment never stops the program: a bad variable is named in one
  warning and its setting keeps its default (see ``from_environment``).
"""

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

from aiocop.core.allowlist import AllowListError, find_allowlist_file, load_allowlist

DEFAULT_FLUSH_INTERVAL_S = 1.0
#: Slices buffered in memory at most before new ones are dropped (and counted).
DEFAULT_MAX_BUFFERED_SLICES = 1_000_000
DEFAULT_THRESHOLD_MS = 30.0
DEFAULT_TRACE_DEPTH = 20
#: While recording, a slice that runs this long gets stack samples...
DEFAULT_SAMPLE_AFTER_MS = 2.0
#: ...about this often, each standing for this much of the loop's time.
DEFAULT_SAMPLE_INTERVAL_MS = 1.0
#: How recording's samples are taken: "pending" (the loop thread samples itself
#: at its next eval-breaker check), "read" (the watchdog reads the loop thread's
#: frames, inside long C calls too), "validate" (reads, checked against pending
#: calls). See the README ("Reading the loop thread's frames").
SAMPLE_FRAMES_MODES = ("pending", "read", "validate")
DEFAULT_SAMPLE_FRAMES = "pending"
#: Permission bits of a new trace file: readable by its owner only (traces
#: hold command lines, paths and host names).
DEFAULT_FILE_MODE = 0o600

# The ranges: wide enough for any real use, narrow enough that every value
# converts to the recorder's integer nanoseconds and durations.
FLUSH_INTERVAL_RANGE_S = (0.01, 3600.0)
MAX_BUFFERED_SLICES_RANGE = (1, 1_000_000_000)
MAX_MILLISECONDS = 3_600_000.0  # one hour
TRACE_DEPTH_RANGE = (1, 1000)


class SettingError(ValueError):
    """A recording setting with a value outside its rules; ``name`` is the argument's name."""

    def __init__(self, name: str, value: object, problem: str) -> None:
        super().__init__(f"{name} {problem}, not {value!r}")
        self.name = name
        self.value = value
        self.problem = problem


@dataclass(frozen=True)
class RecordingSettings:
    """Everything a recording is started with. Building one checks every value (raises SettingError)."""

    path: str
    label: str | None = None
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    max_buffered_slices: int = DEFAULT_MAX_BUFFERED_SLICES
    threshold_ms: float = DEFAULT_THRESHOLD_MS
    trace_depth: int = DEFAULT_TRACE_DEPTH
    record_context: bool = False
    sample_after_ms: float = DEFAULT_SAMPLE_AFTER_MS
    sample_interval_ms: float = DEFAULT_SAMPLE_INTERVAL_MS
    sample_frames: str = DEFAULT_SAMPLE_FRAMES
    #: Permission bits of new trace files, exactly (the umask does not apply).
    file_mode: int = DEFAULT_FILE_MODE
    redact: bool = False
    #: With ``redact``, the context keys whose values are still recorded.
    redact_keep_context: tuple[str, ...] = ()
    #: An allow-list file (or a directory with aiocop.toml / pyproject.toml) to put in force.
    allowlist: str | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            check(field.name, getattr(self, field.name))

    def to_environment(self) -> dict[str, str]:
        """These settings as the ``AIOCOP_*`` variables that ``from_environment`` reads back."""
        environment = {}
        for name, rule in RULES.items():
            value = getattr(self, name)
            if value is not None:
                environment[rule.variable] = rule.to_text(value)
        return environment


class Rule(NamedTuple):
    """How one setting is named on each front, read from text and checked."""

    option: str  # of `python -m aiocop record`
    variable: str  # in the environment
    parse: Callable[[str], Any]  # text to value; ValueError if it is not one
    problem: Callable[[Any], str | None]  # what is wrong with a value, None if nothing
    to_text: Callable[[Any], str] = repr


def check(name: str, value: object) -> None:
    """Raise SettingError if ``value`` breaks the rules of setting ``name``."""
    problem = RULES[name].problem(value)
    if problem is not None:
        raise SettingError(name, value, problem)


def parse(name: str, text: str) -> Any:
    """The value of setting ``name`` written as ``text``, checked; SettingError if there is none."""
    rule = RULES[name]
    try:
        value = rule.parse(text)
    except ValueError:
        raise SettingError(name, text, rule.problem(None) or "is not valid") from None
    problem = rule.problem(value)
    if problem is not None:
        raise SettingError(name, text, problem)  # as written: "1e300", not 1e+300
    return value


def from_environment(environ: Mapping[str, str], warn: Callable[[str], None]) -> RecordingSettings | None:
    """The settings ``AIOCOP_RECORD`` and its companions describe, or None if it is unset or empty.

    A variable with a bad value never stops the program: ``warn`` is called
    once with a line naming the variable, its value and the problem, and
    that setting keeps its default; recording still starts. Except for
    ``AIOCOP_REDACT``: whoever set it wanted secrets kept out, so a value
    that is neither on nor off records nothing (and says so).
    """
    values: dict[str, Any] = {}
    for name, rule in RULES.items():
        text = environ.get(rule.variable)
        if text is None or (text == "" and name != "path"):
            continue
        try:
            values[name] = parse(name, text)
        except SettingError as error:
            if name in ("path", "redact"):
                warn(f"{rule.variable}={text!r}: {error.problem}; not recording")
                return None
            default = _DEFAULTS[name]
            shown = "none" if default is None else rule.to_text(default)  # as the variable takes it: 600, not 384
            warn(f"{rule.variable}={text!r} ignored: {error.problem}; using the default, {shown}")
    return RecordingSettings(**values) if "path" in values else None


def _number(low: float, high: float, unit: str, *, above_low: bool = False) -> Callable[[Any], str | None]:
    lower = f"more than {low:.10g}" if above_low else f"{low:.10g} or more"
    rule = f"must be a number of {unit}, {lower} and at most {high:.10g}"

    def problem(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return rule
        too_low = value <= low if above_low else value < low
        return rule if too_low or value > high else None

    return problem


def _integer(low: int, high: int, unit: str) -> Callable[[Any], str | None]:
    rule = f"must be a whole number of {unit}, from {low} to {high}"

    def problem(value: Any) -> str | None:
        is_integer = isinstance(value, int) and not isinstance(value, bool)
        return None if is_integer and low <= value <= high else rule

    return problem


def _sample_frames(value: Any) -> str | None:
    return None if value in SAMPLE_FRAMES_MODES else f"must be one of {', '.join(SAMPLE_FRAMES_MODES)}"


def _mode_bits(value: Any) -> str | None:
    is_integer = isinstance(value, int) and not isinstance(value, bool)
    return None if is_integer and 0 <= value <= 0o777 else "must be permission bits in octal, from 000 to 777"


def _parse_octal(text: str) -> int:
    """Permission bits written in octal, as chmod takes them ("640", "0o640")."""
    return int(text.strip().removeprefix("0o"), 8)


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false (1 or 0)"


def _parse_flag(text: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
    try:
        return words[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def _text(*, optional: bool) -> Callable[[Any], str | None]:
    rule = "must be a non-empty string of UTF-8 text without NUL characters"

    def problem(value: Any) -> str | None:
        if optional and value is None:
            return None
        return None if isinstance(value, str) and value and "\0" not in value and _is_utf8(value) else rule

    return problem


def _is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8, as the recorder and the trace need; a file name
    or variable of other bytes comes to Python with surrogate escapes, which cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _allowlist(value: Any) -> str | None:
    text_problem = _text(optional=True)(value)
    if text_problem is not None or value is None:
        return text_problem
    if os.path.isdir(value) and find_allowlist_file(Path(value)) is None:
        return "names a directory with neither aiocop.toml nor pyproject.toml"
    try:
        load_allowlist(value)
    except AllowListError as error:
        return f"cannot be used ({error})"
    return None


def _keys(value: Any) -> str | None:
    rule = "must be a tuple of context keys (strings)"
    is_keys = isinstance(value, tuple) and all(isinstance(key, str) and key and _is_utf8(key) for key in value)
    return None if is_keys else rule


def _parse_keys(text: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in text.split(",") if key.strip())


_milliseconds = _number(0.0, MAX_MILLISECONDS, "milliseconds")

RULES: dict[str, Rule] = {
    "path": Rule("--output", "AIOCOP_RECORD", str, _text(optional=False), str),
    "label": Rule("--label", "AIOCOP_LABEL", str, _text(optional=True), str),
    "flush_interval_s": Rule(
        "--flush-interval", "AIOCOP_FLUSH_INTERVAL_S", float, _number(*FLUSH_INTERVAL_RANGE_S, "seconds")
    ),
    "max_buffered_slices": Rule(
        "--max-buffered-slices", "AIOCOP_MAX_BUFFERED_SLICES", int, _integer(*MAX_BUFFERED_SLICES_RANGE, "slices")
    ),
    "threshold_ms": Rule(
        "--threshold-ms", "AIOCOP_THRESHOLD_MS", float, _number(0.0, MAX_MILLISECONDS, "milliseconds", above_low=True)
    ),
    "trace_depth": Rule("--trace-depth", "AIOCOP_TRACE_DEPTH", int, _integer(*TRACE_DEPTH_RANGE, "frames")),
    "record_context": Rule(
        "--record-context", "AIOCOP_RECORD_CONTEXT", _parse_flag, _flag, lambda on: "1" if on else "0"
    ),
    "sample_after_ms": Rule("--sample-after-ms", "AIOCOP_SAMPLE_AFTER_MS", float, _milliseconds),
    "sample_interval_ms": Rule("--sample-interval-ms", "AIOCOP_SAMPLE_INTERVAL_MS", float, _milliseconds),
    "sample_frames": Rule("--sample-frames", "AIOCOP_SAMPLE_FRAMES", str.strip, _sample_frames, str),
    "file_mode": Rule("--file-mode", "AIOCOP_FILE_MODE", _parse_octal, _mode_bits, lambda mode: f"{mode:03o}"),
    "redact": Rule("--redact", "AIOCOP_REDACT", _parse_flag, _flag, lambda on: "1" if on else "0"),
    "redact_keep_context": Rule(
        "--redact-keep-context", "AIOCOP_REDACT_KEEP_CONTEXT", _parse_keys, _keys, lambda keys: ",".join(keys)
    ),
    # Absolute, so that child processes started elsewhere find the same file.
    "allowlist": Rule("--allowlist", "AIOCOP_ALLOWLIST", os.path.abspath, _allowlist, str),
}

_DEFAULTS: dict[str, Any] = {field.name: field.default for field in fields(RecordingSettings)}
