"""SlowTaskEvent objects made by the native side behave like ones made by hand.

The native side leaves blocking_events and cpu_stack_samples unformatted
until first read; everything a user can do with a dataclass must still see
the formatted values.
"""

import copy
import dataclasses
import inspect
import os
import pickle

import aiocop
from conftest import run_monitored


def one_stat_event(slow_tasks, tmp_path) -> tuple[aiocop.SlowTaskEvent, int]:
    async def body():
        line = inspect.currentframe().f_lineno + 1
        os.stat(tmp_path)
        return line

    line = run_monitored(body)
    [event] = slow_tasks.events
    return event, line


def test_blocking_events_read_later_are_those_of_the_slice(slow_tasks, tmp_path):
    event, line = one_stat_event(slow_tasks, tmp_path)

    # Other slices with other stacks run before the event is read.
    async def other():
        for _ in range(3):
            os.listdir(tmp_path)

    run_monitored(other)

    [info] = event.blocking_events
    assert info["event"] == f"os.stat({tmp_path})"
    assert info["entry_point"].endswith(f"test_event_objects.py:{line}:body")
    assert info["severity"] == 1
    assert event.blocking_events is event.blocking_events, "formatted once, then kept"


def test_native_event_equals_one_built_from_its_fields(slow_tasks, tmp_path):
    event, _ = one_stat_event(slow_tasks, tmp_path)
    rebuilt = aiocop.SlowTaskEvent(**{f.name: getattr(event, f.name) for f in dataclasses.fields(event)})

    assert event == rebuilt
    assert repr(event) == repr(rebuilt)
    assert dataclasses.asdict(event) == dataclasses.asdict(rebuilt)
    assert "_aiocop_pending" not in vars(event), "nothing native is left once both fields are read"


def test_native_event_pickles_and_copies_with_formatted_fields(slow_tasks, tmp_path):
    event, _ = one_stat_event(slow_tasks, tmp_path)

    for clone in (pickle.loads(pickle.dumps(event)), copy.copy(event), copy.deepcopy(event)):
        assert type(clone) is aiocop.SlowTaskEvent
        assert clone == event
        assert clone.blocking_events[0]["event"] == f"os.stat({tmp_path})"


def test_replace_gives_a_plain_event(slow_tasks, tmp_path):
    event, _ = one_stat_event(slow_tasks, tmp_path)
    replaced = dataclasses.replace(event, context={"k": "v"})

    assert replaced.context == {"k": "v"}
    assert replaced.blocking_events == event.blocking_events
    assert replaced.cpu_stack_samples == []


def test_event_is_frozen_and_unknown_attributes_still_raise(slow_tasks, tmp_path):
    event, _ = one_stat_event(slow_tasks, tmp_path)

    try:
        event.severity_score = 0  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("SlowTaskEvent must stay frozen")
    assert not hasattr(event, "no_such_field")
