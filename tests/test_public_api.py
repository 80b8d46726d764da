"""The public API of aiocop 1.2.1: modules, names and types."""

import dataclasses
import importlib

import aiocop
import pytest

TOP_LEVEL_ALL = {
    "patch_audit_functions",
    "start_blocking_io_detection",
    "detect_slow_tasks",
    "start_cpu_sampling",
    "is_cpu_sampling_started",
    "activate",
    "deactivate",
    "is_monitoring_active",
    "enable_raise_on_violations",
    "disable_raise_on_violations",
    "is_raise_on_violations_enabled",
    "raise_on_violations",
    "register_slow_task_callback",
    "unregister_slow_task_callback",
    "clear_slow_task_callbacks",
    "register_context_provider",
    "unregister_context_provider",
    "clear_context_providers",
    "ContextProvider",
    "reset_blocking_events",
    "format_blocking_event",
    "get_patched_functions",
    "get_blocking_events_dict",
    "get_slow_task_threshold_ms",
    "calculate_io_severity_score",
    "get_severity_level_from_score",
    "BlockingEventInfo",
    "CpuStackSample",
    "RawBlockingEvent",
    "SlowTaskEvent",
    "SlowTaskCallback",
    "IoSeverityLevel",
    "HighSeverityBlockingIoException",
    "WEIGHT_HEAVY",
    "WEIGHT_MODERATE",
    "WEIGHT_LIGHT",
    "WEIGHT_TRIVIAL",
    "THRESHOLD_HIGH",
    "THRESHOLD_MEDIUM",
    "THRESHOLD_LOW",
}

MODULE_NAMES = {
    "aiocop.core.blocking_io": [
        "start_blocking_io_detection",
        "reset_blocking_events",
        "format_blocking_event",
        "format_stack_frame",
        "get_blocking_events_dict",
        "BLOCKING_EVENTS",
        "BLOCKING_EVENTS_DICT",
        "MAX_EVENTS_PER_TASK",
    ],
    "aiocop.core.slow_tasks": ["detect_slow_tasks", "get_slow_task_threshold_ms", "SlowTaskCallback"],
    "aiocop.core.state": [
        "activate",
        "deactivate",
        "is_monitoring_active",
        "enable_raise_on_violations",
        "disable_raise_on_violations",
        "is_raise_on_violations_enabled",
        "raise_on_violations",
        "raise_on_violations_context",
        "register_on_activate_hook",
    ],
    "aiocop.core.callbacks": [
        "ContextProvider",
        "SlowTaskCallback",
        "register_slow_task_callback",
        "unregister_slow_task_callback",
        "clear_slow_task_callbacks",
        "register_context_provider",
        "unregister_context_provider",
        "clear_context_providers",
    ],
    "aiocop.core.cpu_sampler": ["start_cpu_sampling", "is_cpu_sampling_started", "format_cpu_samples"],
    "aiocop.core.audit_patcher": [
        "patch_audit_functions",
        "get_patched_functions",
        "FUNCTIONS_TO_PATCH",
        "FUNCTIONS_TO_PATCH_DICT",
    ],
    "aiocop.core.severity": ["calculate_io_severity_score", "get_severity_level_from_score"],
    "aiocop.types": ["BlockingEventInfo", "RawBlockingEvent", "SlowTaskEvent", "IoSeverityLevel"],
    "aiocop.types.events": ["BlockingEventInfo", "CpuStackSample", "RawBlockingEvent", "SlowTaskEvent"],
    "aiocop.types.severity": [
        "IoSeverityLevel",
        "WEIGHT_HEAVY",
        "WEIGHT_MODERATE",
        "WEIGHT_LIGHT",
        "WEIGHT_TRIVIAL",
        "THRESHOLD_HIGH",
        "THRESHOLD_MEDIUM",
        "THRESHOLD_LOW",
    ],
    "aiocop.exceptions": ["HighSeverityBlockingIoException"],
}

# Names re-exported by the top-level package, and where they come from.
REEXPORTED_FROM = {
    "aiocop.core.audit_patcher": ["patch_audit_functions", "get_patched_functions"],
    "aiocop.core.blocking_io": [
        "start_blocking_io_detection",
        "reset_blocking_events",
        "format_blocking_event",
        "get_blocking_events_dict",
    ],
    "aiocop.core.callbacks": [
        "register_slow_task_callback",
        "unregister_slow_task_callback",
        "clear_slow_task_callbacks",
        "register_context_provider",
        "unregister_context_provider",
        "clear_context_providers",
    ],
    "aiocop.core.cpu_sampler": ["start_cpu_sampling", "is_cpu_sampling_started"],
    "aiocop.core.severity": ["calculate_io_severity_score", "get_severity_level_from_score"],
    "aiocop.core.slow_tasks": ["detect_slow_tasks", "get_slow_task_threshold_ms"],
    "aiocop.core.state": [
        "activate",
        "deactivate",
        "is_monitoring_active",
        "enable_raise_on_violations",
        "disable_raise_on_violations",
        "is_raise_on_violations_enabled",
    ],
    "aiocop.types.events": ["BlockingEventInfo", "CpuStackSample", "RawBlockingEvent", "SlowTaskEvent"],
    "aiocop.exceptions": ["HighSeverityBlockingIoException"],
}

SLOW_TASK_EVENT_FIELDS = [
    "elapsed_ms",
    "threshold_ms",
    "exceeded_threshold",
    "severity_score",
    "severity_level",
    "reason",
    "blocking_events",
    "context",
    "cpu_stack_samples",
]


def test_top_level_all_lists_the_public_api():
    assert set(aiocop.__all__) >= TOP_LEVEL_ALL
    for name in TOP_LEVEL_ALL:
        assert hasattr(aiocop, name), name


def test_version_is_a_string():
    assert isinstance(aiocop.__version__, str)
    assert aiocop.__version__


@pytest.mark.parametrize("module_name", sorted(MODULE_NAMES))
def test_module_imports_and_exposes_names(module_name):
    module = importlib.import_module(module_name)

    missing = [name for name in MODULE_NAMES[module_name] if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("module_name", sorted(REEXPORTED_FROM))
def test_top_level_names_are_the_module_objects(module_name):
    module = importlib.import_module(module_name)

    for name in REEXPORTED_FROM[module_name]:
        assert getattr(aiocop, name) is getattr(module, name), name


def test_raise_on_violations_is_the_context_manager_class():
    from aiocop.core.state import raise_on_violations_context

    assert aiocop.raise_on_violations is raise_on_violations_context


def test_blocking_io_limits_and_tables():
    from aiocop.core import audit_patcher, blocking_io

    assert blocking_io.MAX_EVENTS_PER_TASK == 50
    assert blocking_io.BLOCKING_EVENTS == set(blocking_io.BLOCKING_EVENTS_DICT)
    assert blocking_io.BLOCKING_EVENTS_DICT == aiocop.get_blocking_events_dict()
    assert audit_patcher.FUNCTIONS_TO_PATCH == list(audit_patcher.FUNCTIONS_TO_PATCH_DICT)
    assert audit_patcher.FUNCTIONS_TO_PATCH_DICT.items() <= blocking_io.BLOCKING_EVENTS_DICT.items()


def test_format_stack_frame_shortens_paths():
    from aiocop.core.blocking_io import format_stack_frame

    assert format_stack_frame(("/repo/src/pkg/mod.py", 3, "f")) == "pkg/mod.py:3:f"
    assert format_stack_frame(("/v/lib/python3.11/site-packages/lib/x.py", 4, "g")) == "lib/x.py:4:g"
    assert format_stack_frame(("/usr/lib/python3.11/asyncio/events.py", 5, "h")) == "events.py:5:h"
    assert format_stack_frame(("/opt/app/main.py", 6, "i")) == "/opt/app/main.py:6:i"


def test_format_cpu_samples_aggregates_and_orders_by_count():
    from aiocop.core.cpu_sampler import format_cpu_samples

    hot = [("/opt/app.py", 10, "spin"), ("/opt/app.py", 20, "main")]
    cold = [("/opt/app.py", 11, "spin"), ("/opt/app.py", 20, "main")]

    assert format_cpu_samples([cold, hot, hot]) == [
        {"trace": "/opt/app.py:10:spin <- /opt/app.py:20:main", "entry_point": "/opt/app.py:10:spin", "count": 2},
        {"trace": "/opt/app.py:11:spin <- /opt/app.py:20:main", "entry_point": "/opt/app.py:11:spin", "count": 1},
    ]
    assert format_cpu_samples([]) == []


def test_slow_task_event_is_a_frozen_dataclass_with_the_listed_fields():
    assert dataclasses.is_dataclass(aiocop.SlowTaskEvent)
    names = [f.name for f in dataclasses.fields(aiocop.SlowTaskEvent)]
    assert names[: len(SLOW_TASK_EVENT_FIELDS)] == SLOW_TASK_EVENT_FIELDS

    event = aiocop.SlowTaskEvent(12.5, 30.0, False, 10, "medium", "io_blocking", [])

    assert event.context == {}
    assert event.cpu_stack_samples == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.elapsed_ms = 1.0


def test_slow_task_event_defaults_are_not_shared():
    first = aiocop.SlowTaskEvent(1.0, 30.0, False, 0, "low", "io_blocking", [])
    second = aiocop.SlowTaskEvent(1.0, 30.0, False, 0, "low", "io_blocking", [])

    assert first.context is not second.context
    assert first.cpu_stack_samples is not second.cpu_stack_samples


def test_slow_task_event_replace_and_equality():
    event = aiocop.SlowTaskEvent(
        elapsed_ms=40.0,
        threshold_ms=30.0,
        exceeded_threshold=True,
        severity_score=0,
        severity_level="low",
        reason="cpu_blocking",
        blocking_events=[],
    )

    with_context = dataclasses.replace(event, context={"k": "v"})

    assert with_context.context == {"k": "v"}
    assert with_context != event
    assert dataclasses.replace(with_context, context={}) == event


def test_typed_dict_keys():
    assert list(aiocop.RawBlockingEvent.__annotations__) == [
        "event_name",
        "raw_args",
        "raw_stack",
        "timestamp",
        "severity",
    ]
    # 1.2.1's keys, required; allowed_by only on an event an allow-list allowed (aiocop.allow).
    assert list(aiocop.BlockingEventInfo.__annotations__) == ["event", "trace", "entry_point", "severity", "allowed_by"]
    assert aiocop.BlockingEventInfo.__required_keys__ == {"event", "trace", "entry_point", "severity"}
    assert list(aiocop.CpuStackSample.__annotations__) == ["trace", "entry_point", "count"]


def test_severity_level_literal():
    assert set(aiocop.IoSeverityLevel.__args__) == {"low", "medium", "high"}
