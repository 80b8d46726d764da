"""Writes aiocop_1_2_1_names.json: every module-level name of aiocop 1.2.1, for tests/test_surface_1_2_1.py.

Run by hand, only when the reference changes (it needs the network once, the
tests never do):

    pip download --no-deps aiocop==1.2.1 -d /tmp/aiocop121
    python tests/data/extract_1_2_1_names.py /tmp/aiocop121/aiocop-1.2.1-py3-none-any.whl \\
        /root/.pyenv/versions/3.11.7/bin/python3 \\
        /root/.pyenv/versions/3.12.1/bin/python3 \\
        /root/.pyenv/versions/3.13.0/bin/python3

The wheel is unpacked into a temporary directory and every module in it is
imported there by each given interpreter, started with ``-I -S`` so that no
other aiocop (ours, installed in site-packages) can shadow 1.2.1's. Each
module's namespace is walked as a user sees it (``vars(module)``), private
names and imported names included; only the import machinery's own dunders
(``__name__``, ``__spec__``, ...) are left out.

Each name gets one entry, by kind:

- ``module``: a submodule or an imported module, by name;
- ``class`` / ``function``: aiocop's own ones with their constructor or call
  signature (parameter names, kinds and default reprs), a class's fields
  (TypedDict keys, dataclass fields) and methods;
- ``imported``: a class or function from another package (``wraps``,
  ``perf_counter_ns``, ``Any``), by module and qualname: ours must be the
  very same object;
- ``alias``: a typing alias (``SlowTaskCallback``), by repr;
- ``constant``: an UPPER_CASE value, ``__all__``, and the metadata dunders,
  with its JSON-encoded value;
- ``state``: any other value (``_monitoring_active``, ``patched_functions``),
  with its value right after import, before any setup call;
- ``object``: anything else (a logger, a lock, a ContextVar), by type and
  the attributes that say which one it is.

An entry whose description differs between the interpreters (time.sleep is
patched only before 3.13, lock types changed in 3.13) is stored once per
Python version under ``by_python``.
"""

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from typing import Any

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aiocop_1_2_1_names.json")

# Runs inside each interpreter with the unpacked wheel first on sys.path;
# prints {module name: {name: entry}} as JSON.
_CHILD = r"""
import dataclasses
import importlib
import inspect
import json
import os
import sys
import types
import typing

root = sys.argv[1]
sys.path.insert(0, root)

MACHINERY = {"__name__", "__doc__", "__file__", "__loader__", "__spec__", "__package__", "__builtins__",
             "__cached__", "__path__", "__annotations__"}
CLASS_MACHINERY = {"__dict__", "__weakref__", "__module__", "__doc__", "__annotations__", "__qualname__",
                   "__orig_bases__", "__parameters__", "__required_keys__", "__optional_keys__", "__total__",
                   "__dataclass_fields__", "__dataclass_params__", "__match_args__", "__hash__", "__eq__",
                   "__repr__", "__setattr__", "__delattr__", "__readonly_keys__",
                   "__mutable_keys__", "__static_attributes__", "__firstlineno__", "__annotate__",
                   "__annotations_cache__", "__getstate__", "__setstate__", "__replace__"}


def module_names():
    names = []
    for directory, _, files in os.walk(os.path.join(root, "aiocop")):
        for file in files:
            if file.endswith(".py"):
                relative = os.path.relpath(os.path.join(directory, file), root)[:-3].split(os.sep)
                if relative[-1] == "__init__":
                    relative = relative[:-1]
                names.append(".".join(relative))
    return sorted(names)


def encode(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value, type(value).__name__
    if isinstance(value, (list, tuple)):
        return [encode(item)[0] for item in value], type(value).__name__
    if isinstance(value, (set, frozenset)):
        return sorted(encode(item)[0] for item in value), type(value).__name__
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: encode(item)[0] for key, item in value.items()}, "dict"
    raise TypeError(type(value))


def parameters(function):
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    described = []
    for parameter in signature.parameters.values():
        entry = {"name": parameter.name, "kind": parameter.kind.name}
        if parameter.default is not inspect.Parameter.empty:
            entry["default"] = repr(parameter.default)
        described.append(entry)
    return described


def is_aiocop(obj):
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "aiocop"


def describe_class(cls):
    entry = {"kind": "class", "module": cls.__module__, "qualname": cls.__qualname__,
             "bases": [f"{base.__module__}.{base.__qualname__}" for base in cls.__bases__]}
    if typing.is_typeddict(cls):
        entry["typeddict_keys"] = list(cls.__annotations__)
    elif dataclasses.is_dataclass(cls):
        entry["dataclass_fields"] = [field.name for field in dataclasses.fields(cls)]
        entry["frozen"] = cls.__dataclass_params__.frozen
        entry["parameters"] = parameters(cls)
    else:
        entry["parameters"] = parameters(cls)
    methods = {}
    for name, member in sorted(vars(cls).items()):
        if name not in CLASS_MACHINERY and inspect.isfunction(member):
            methods[name] = parameters(member)
    if methods:
        entry["methods"] = methods
    return entry


def imported_name(value):
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None) or getattr(value, "_name", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return {"kind": "imported", "module": module, "qualname": qualname}
    return None


def describe(name, value):
    if isinstance(value, types.ModuleType):
        return {"kind": "module", "name": value.__name__}
    if isinstance(value, type) and is_aiocop(value):
        return describe_class(value)
    if inspect.isfunction(value) and is_aiocop(value):
        return {"kind": "function", "module": value.__module__, "qualname": value.__qualname__,
                "parameters": parameters(value)}
    if not isinstance(value, type) and typing.get_origin(value) is not None:
        return {"kind": "alias", "repr": repr(value)}
    if isinstance(value, type) or inspect.isroutine(value) or type(value).__module__ == "typing":
        imported = imported_name(value)
        if imported is not None:
            return imported
    try:
        encoded, type_name = encode(value)
    except TypeError:
        entry = {"kind": "object", "type": f"{type(value).__module__}.{type(value).__qualname__}"}
        if type(value).__name__ in {"Logger", "RootLogger"}:
            entry["logger_name"] = value.name
        if type(value).__name__ == "ContextVar":
            entry["contextvar_name"] = value.name
            entry["contextvar_default"] = repr(value.get())
        return entry
    if isinstance(encoded, str) and encoded.startswith(root):
        # A path into the unpacked wheel (_AIOCOP_PACKAGE_DIR): only its part inside the wheel means anything.
        encoded = "<wheel>" + encoded[len(root) :]
    constant = name.lstrip("_").isupper() or name in {"__all__", "__version__", "__author__"}
    return {"kind": "constant" if constant else "state", "type": type_name, "value": encoded}


result = {}
for module_name in module_names():
    module = importlib.import_module(module_name)
    result[module_name] = {
        name: describe(name, value) for name, value in sorted(vars(module).items()) if name not in MACHINERY
    }
print(json.dumps(result))
"""


def _names_seen_by(python: str, root: str) -> tuple[str, dict[str, dict[str, Any]]]:
    version = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    output = subprocess.run(
        [python, "-I", "-S", "-c", _CHILD, root], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    return version, json.loads(output)


def main(wheel: str, pythons: list[str]) -> None:
    with tempfile.TemporaryDirectory() as root:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(root)
        seen = dict(_names_seen_by(python, root) for python in pythons)

    versions = sorted(seen, key=lambda v: tuple(int(part) for part in v.split(".")))
    merged: dict[str, dict[str, Any]] = {}
    for module in sorted({module for names in seen.values() for module in names}):
        merged[module] = {}
        for name in sorted({name for names in seen.values() for name in names.get(module, {})}):
            entries = {version: seen[version].get(module, {}).get(name) for version in versions}
            first = entries[versions[0]]
            if all(entry == first for entry in entries.values()):
                merged[module][name] = first
            else:
                merged[module][name] = {"by_python": entries}

    document = {
        "source": os.path.basename(wheel),
        "pythons": versions,
        "modules": merged,
    }
    with open(OUTPUT, "w") as file:
        json.dump(document, file, indent=1, sort_keys=False)
        file.write("\n")
    counts = ", ".join(f"{module} {len(names)}" for module, names in merged.items())
    print(f"wrote {OUTPUT}: {counts}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} aiocop-1.2.1-py3-none-any.whl PYTHON...")
    main(sys.argv[1], sys.argv[2:])
