"""Every module-level name of aiocop 1.2.1, public or private, exists here with the same meaning.

The names come from tests/data/aiocop_1_2_1_names.json, written by
tests/data/extract_1_2_1_names.py from 1.2.1's wheel (see its doc for how to
run it): each module's whole namespace, with what each name is. Checked here:
that it exists; that a constant has 1.2.1's value; that a function, class or
method takes the same parameters, with the same defaults (ours may add
optional ones after them); that an imported name is the same object; and, in
a fresh interpreter where nothing is set up yet, that each state global reads
as 1.2.1's does right after import. What assigning the state globals does is
tested in test_state_1_2_1.py.
"""

import dataclasses
import importlib
import inspect
import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import aiocop
import pytest

NAMES_FILE = Path(__file__).parent / "data" / "aiocop_1_2_1_names.json"
REFERENCE = json.loads(NAMES_FILE.read_text())
MODULES: dict[str, dict[str, Any]] = REFERENCE["modules"]

# Constants whose value is about the installed distribution, not about aiocop's behaviour.
DISTRIBUTION_METADATA = {("aiocop", "__version__"), ("aiocop", "__author__")}


def for_this_python(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as 1.2.1 has it on this Python: the newest recorded version not newer than this one."""
    if "by_python" not in entry:
        return entry
    versions = sorted(entry["by_python"], key=lambda v: tuple(map(int, v.split("."))))
    mine = sys.version_info[:2]
    chosen = [v for v in versions if tuple(map(int, v.split("."))) <= mine] or versions[:1]
    return entry["by_python"][chosen[-1]]


def entries(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for module, names in MODULES.items():
        for name, entry in names.items():
            entry = for_this_python(entry)
            if entry is not None and entry["kind"] == kind:
                found.append((module, name, entry))
    return found


def ids(cases: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [f"{module}.{name}" for module, name, _ in cases]


def decoded(entry: dict[str, Any]) -> Any:
    value = entry["value"]
    return {"set": set, "frozenset": frozenset, "tuple": tuple}.get(entry["type"], lambda v: v)(value)


def assert_compatible_parameters(ours: Any, recorded: list[dict[str, Any]] | None, what: str) -> None:
    """Ours takes 1.2.1's parameters, in order, of the same kinds and defaults; any extra one is optional."""
    if recorded is None:
        return
    parameters = list(inspect.signature(ours).parameters.values())
    assert [p.name for p in parameters[: len(recorded)]] == [p["name"] for p in recorded], what
    for parameter, theirs in zip(parameters, recorded, strict=False):
        assert parameter.kind.name == theirs["kind"], f"{what}: {parameter.name}"
        default = None if parameter.default is inspect.Parameter.empty else repr(parameter.default)
        assert default == theirs.get("default"), f"{what}: default of {parameter.name}"
    for extra in parameters[len(recorded) :]:
        optional = extra.default is not inspect.Parameter.empty or extra.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        assert optional, f"{what}: {extra.name} is required here, and unknown to 1.2.1"


def test_the_reference_covers_every_module_of_1_2_1():
    assert REFERENCE["source"] == "aiocop-1.2.1-py3-none-any.whl"
    assert set(MODULES) == {
        "aiocop",
        "aiocop.core",
        "aiocop.core.audit_patcher",
        "aiocop.core.blocking_io",
        "aiocop.core.callbacks",
        "aiocop.core.cpu_sampler",
        "aiocop.core.severity",
        "aiocop.core.slow_tasks",
        "aiocop.core.state",
        "aiocop.exceptions",
        "aiocop.types",
        "aiocop.types.events",
        "aiocop.types.severity",
    }


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_name_of_the_module_exists(module):
    namespace = importlib.import_module(module)
    missing = [name for name in MODULES[module] if not hasattr(namespace, name)]
    assert missing == [], f"{module} lacks 1.2.1's {missing}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_star_import_gives_at_least_1_2_1s_names(module):
    def star_names(names: dict[str, Any], all_names: list[str] | None) -> set[str]:
        return set(all_names) if all_names is not None else {name for name in names if not name.startswith("_")}

    recorded_all = MODULES[module].get("__all__")
    theirs = star_names(MODULES[module], decoded(for_this_python(recorded_all)) if recorded_all else None)
    namespace = importlib.import_module(module)
    ours = star_names(vars(namespace), getattr(namespace, "__all__", None))
    assert theirs - ours == set()


CONSTANTS = entries("constant")


@pytest.mark.parametrize(("module", "name", "entry"), CONSTANTS, ids=ids(CONSTANTS))
def test_constant_has_1_2_1s_value(module, name, entry):
    ours = getattr(importlib.import_module(module), name)
    theirs = decoded(entry)
    if (module, name) in DISTRIBUTION_METADATA:
        assert isinstance(ours, str | None)
    elif name == "__all__":
        assert set(theirs) <= set(ours)
    elif name == "_AIOCOP_PACKAGE_DIR":
        assert theirs == "<wheel>/aiocop/"
        assert ours == os.path.dirname(os.path.abspath(aiocop.__file__)) + os.sep
    else:
        assert type(ours) is type(theirs)
        assert ours == theirs


FUNCTIONS = entries("function")


@pytest.mark.parametrize(("module", "name", "entry"), FUNCTIONS, ids=ids(FUNCTIONS))
def test_function_takes_1_2_1s_parameters(module, name, entry):
    ours = getattr(importlib.import_module(module), name)
    assert inspect.isfunction(ours) or inspect.isbuiltin(ours)
    assert_compatible_parameters(ours, entry["parameters"], f"{module}.{name}")
    # The same function wherever 1.2.1 imported it from.
    assert ours is getattr(importlib.import_module(entry["module"]), entry["qualname"])


CLASSES = entries("class")


@pytest.mark.parametrize(("module", "name", "entry"), CLASSES, ids=ids(CLASSES))
def test_class_has_1_2_1s_fields_and_methods(module, name, entry):
    ours = getattr(importlib.import_module(module), name)
    assert isinstance(ours, type)
    assert (ours.__module__, ours.__qualname__) == (entry["module"], entry["qualname"])
    assert [f"{base.__module__}.{base.__qualname__}" for base in ours.__bases__] == entry["bases"]
    if "typeddict_keys" in entry:
        assert typing.is_typeddict(ours)
        # 1.2.1's keys, in order and required; keys added since are optional (NotRequired).
        keys = list(ours.__annotations__)
        assert keys[: len(entry["typeddict_keys"])] == entry["typeddict_keys"]
        assert ours.__required_keys__ >= set(entry["typeddict_keys"])
        assert ours.__required_keys__ <= set(entry["typeddict_keys"])
    if "dataclass_fields" in entry:
        assert dataclasses.is_dataclass(ours)
        assert ours.__dataclass_params__.frozen == entry["frozen"]
        fields = [field.name for field in dataclasses.fields(ours)]
        assert fields[: len(entry["dataclass_fields"])] == entry["dataclass_fields"]
    assert_compatible_parameters(ours, entry.get("parameters"), f"{module}.{name}()")
    for method, parameters in entry.get("methods", {}).items():
        assert_compatible_parameters(getattr(ours, method), parameters, f"{module}.{name}.{method}")


IMPORTED = entries("imported")


@pytest.mark.parametrize(("module", "name", "entry"), IMPORTED, ids=ids(IMPORTED))
def test_imported_name_is_the_same_object(module, name, entry):
    ours = getattr(importlib.import_module(module), name)
    qualname = getattr(ours, "__qualname__", None) or getattr(ours, "_name", None)
    assert (ours.__module__, qualname) == (entry["module"], entry["qualname"])


ALIASES = entries("alias")


@pytest.mark.parametrize(("module", "name", "entry"), ALIASES, ids=ids(ALIASES))
def test_type_alias_is_1_2_1s(module, name, entry):
    assert repr(getattr(importlib.import_module(module), name)) == entry["repr"]


MODULE_ENTRIES = entries("module")


@pytest.mark.parametrize(("module", "name", "entry"), MODULE_ENTRIES, ids=ids(MODULE_ENTRIES))
def test_module_attribute_is_the_same_module(module, name, entry):
    assert getattr(importlib.import_module(module), name) is importlib.import_module(entry["name"])


OBJECTS = entries("object")


@pytest.mark.parametrize(("module", "name", "entry"), OBJECTS, ids=ids(OBJECTS))
def test_object_is_of_1_2_1s_kind(module, name, entry):
    ours = getattr(importlib.import_module(module), name)
    assert f"{type(ours).__module__}.{type(ours).__qualname__}" == entry["type"]
    if "logger_name" in entry:
        assert ours.name == entry["logger_name"]
    if "contextvar_name" in entry:
        assert ours is aiocop.core.state.raise_on_violations
        assert ours.name == entry["contextvar_name"]
        assert repr(ours.get()) == entry["contextvar_default"]


STATE = entries("state")

# Imports every module in a new interpreter, before any setup call, and
# prints each state global 1.2.1 has, as it reads there.
_READ_STATE = """
import importlib, json, sys
wanted = json.loads(sys.argv[1])
values = {}
for module, names in wanted.items():
    namespace = importlib.import_module(module)
    for name in names:
        value = getattr(namespace, name)
        values[f"{module}.{name}"] = [type(value).__name__, value]
print(json.dumps(values))
"""


@pytest.fixture(scope="module")
def state_right_after_import():
    wanted: dict[str, list[str]] = {}
    for module, name, _ in STATE:
        wanted.setdefault(module, []).append(name)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AIOCOP_")}
    completed = subprocess.run(
        [sys.executable, "-c", _READ_STATE, json.dumps(wanted)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=True,
    )
    return json.loads(completed.stdout)


@pytest.mark.parametrize(("module", "name", "entry"), STATE, ids=ids(STATE))
def test_state_reads_as_1_2_1s_right_after_import(state_right_after_import, module, name, entry):
    type_name, value = state_right_after_import[f"{module}.{name}"]
    assert (type_name, value) == (entry["type"], entry["value"])
