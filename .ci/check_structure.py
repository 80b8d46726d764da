#!/usr/bin/env python3
"""Fails on an import circle between the modules of a crate or of the Python package.

The code should read one way (record -> trace file -> read -> aggregate -> resolve -> report):
a module may use another only if that one does not, directly or through others, use it back.

    python .ci/check_structure.py                      # the repository's crates and package
    python .ci/check_structure.py --rust DIR ...       # Rust source roots (each holding lib.rs or main.rs)
    python .ci/check_structure.py --python DIR ...     # Python package directories

Exit status: 0 when no circle is found beyond ALLOWED_CIRCLES, 1 when one is (each printed with
the path around it), 2 for a directory that does not exist.

What counts as a use:
- Rust: a `crate::a::b` or `super::a` path in code, or a `use` of a child module (`use child::x`),
  outside comments and outside the `#[cfg(test)]` tail of a file. A path names the deepest module
  file it reaches (`crate::recording::registry::x` is recording/registry.rs; `crate::recording::x`
  is recording/mod.rs). The crate root (lib.rs, main.rs) is left out: it assembles the modules;
  so is a module's use of its own parent (a `mod.rs` and its children are one unit).
- Python: module-level `import aiocop...`, `from aiocop... import` and relative imports (imports
  inside functions and under `if TYPE_CHECKING:` are not run at import time and do not count).
  `from pkg import name` uses the module pkg.name if there is one, else pkg.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RUST_ROOTS = ["recorder/src", "src", "analyzer/src"]
PYTHON_PACKAGES = ["python/aiocop"]

# Circles that are known and allowed for now. Each entry is the set of modules of one circle, as
# printed; a circle is allowed only if all of its modules are inside one entry, so a new module
# joining one fails the check. The analyzer's circles of issue 19 are untangled: the list is empty,
# and should stay so.
ALLOWED_CIRCLES: list[frozenset[str]] = []

Graph = dict[str, set[str]]


# ---------------------------------------------------------------- Rust


def rust_module_name(root: Path, file: Path) -> str | None:
    """`a::b` for root/a/b.rs or root/a/b/mod.rs; None for the crate root or a binary."""
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts in (["lib"], ["main"]) or parts[0] == "bin":
        return None
    if parts[-1] == "mod":
        parts.pop()
    return "::".join(parts)


CODE_PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self|\w+)::\{([^;]*)\}", re.S)
USE_CHILD = re.compile(r"\buse\s+(\w+)::")


def strip_rust_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def without_test_tail(text: str) -> str:
    """The file up to its `#[cfg(test)]` module, which may use anything of its parent."""
    marker = re.search(r"^#\[cfg\(test\)\]", text, re.M)
    return text[: marker.start()] if marker else text


def resolve_rust(modules: set[str], base: list[str], segments: list[str]) -> str | None:
    """The deepest known module that `base` + `segments` reaches."""
    path = list(base)
    found = "::".join(path) if "::".join(path) in modules else None
    for segment in segments:
        path.append(segment)
        name = "::".join(path)
        if name not in modules:
            break
        found = name
    return found


def rust_graph(root: Path) -> Graph:
    files = {name: file for file in sorted(root.rglob("*.rs")) if (name := rust_module_name(root, file))}
    modules = set(files)
    graph: Graph = {name: set() for name in modules}
    for name, file in files.items():
        here = name.split("::")
        # Where `super` and `self` point from this file's top level.
        selfish = here
        parent = here[:-1]
        text = without_test_tail(strip_rust_comments(file.read_text(encoding="utf-8")))
        references: list[tuple[list[str], list[str]]] = []
        for anchor, rest in CODE_PATH.findall(text):
            base = {"crate": [], "super": parent, "self": selfish}[anchor]
            references.append((base, rest.strip(":").split("::")))
        for anchor, group in USE_GROUP.findall(text):
            base = {"crate": [], "super": parent, "self": selfish}.get(anchor, selfish + [anchor])
            for item in re.split(r"[,{}]", group):
                item = item.strip().split(" as ")[0].strip()
                if item and item not in ("self", "*"):
                    references.append((base, [s for s in item.split("::") if s]))
        for first in USE_CHILD.findall(text):
            if first not in ("crate", "super", "self") and "::".join(here + [first]) in modules:
                references.append((here, [first]))
        for base, segments in references:
            target = resolve_rust(modules, base, segments)
            if target and target != name and not name.startswith(target + "::"):
                graph[name].add(target)
    return graph


# ---------------------------------------------------------------- Python


def python_module_name(package: Path, file: Path) -> str:
    parts = [package.name, *file.relative_to(package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_level_imports(tree: ast.Module) -> Iterable[ast.Import | ast.ImportFrom]:
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        statement = pending.pop(0)
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            yield statement
        elif isinstance(statement, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(statement.test):
                pending.extend(statement.body + statement.orelse)
        elif isinstance(statement, ast.Try):
            pending.extend(statement.body + statement.orelse + statement.finalbody)
            for handler in statement.handlers:
                pending.extend(handler.body)


def python_graph(package: Path) -> Graph:
    files = {python_module_name(package, f): f for f in sorted(package.rglob("*.py*")) if f.suffix in (".py", ".pyi")}
    modules = set(files)
    graph: Graph = {name: set() for name in modules}
    for name, file in files.items():
        if file.suffix != ".py":
            continue
        is_package = file.name == "__init__.py"
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        targets: list[str] = []
        for statement in module_level_imports(tree):
            if isinstance(statement, ast.Import):
                targets += [alias.name for alias in statement.names]
                continue
            if statement.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (statement.level - 1)]
                source = ".".join(anchor + ([statement.module] if statement.module else []))
            else:
                source = statement.module or ""
            for alias in statement.names:
                submodule = f"{source}.{alias.name}"
                targets.append(submodule if submodule in modules else source)
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


# ---------------------------------------------------------------- circles


def circles(graph: Graph) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected group of more than one module, with one path around it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [(group, path_around(graph, group)) for group in groups]


def path_around(graph: Graph, group: list[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, within the group."""
    start, members = group[0], set(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph[node] & members):
                if other == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if other not in previous:
                    previous[other] = node
                    following.append(other)
        frontier = following
    return group


def check(label: str, graph: Graph, allowed: list[frozenset[str]]) -> list[str]:
    """One message per circle in `graph` that no allowed entry covers."""
    found = []
    for group, path in circles(graph):
        members = {f"{label}:{module}" for module in group}
        if any(members <= entry for entry in allowed):
            continue
        others = sorted(set(group) - set(path))
        also = f" (and, through them: {', '.join(others)})" if others else ""
        found.append(f"{label}: import circle: {' -> '.join(path)}{also}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rust", nargs="*", type=Path, help="Rust source roots (default: the repository's crates)")
    parser.add_argument("--python", nargs="*", type=Path, help="Python package directories (default: python/aiocop)")
    options = parser.parse_args(argv)
    explicit = options.rust is not None or options.python is not None
    rust_roots = options.rust or ([] if explicit else [REPO / root for root in RUST_ROOTS])
    packages = options.python or ([] if explicit else [REPO / package for package in PYTHON_PACKAGES])
    for directory in [*rust_roots, *packages]:
        if not directory.is_dir():
            print(f"check_structure: '{directory}' is not a directory", file=sys.stderr)
            return 2

    def label(directory: Path) -> str:
        directory = directory.resolve()
        return str(directory.relative_to(REPO)) if directory.is_relative_to(REPO) else str(directory)

    allowed = ALLOWED_CIRCLES if not explicit else []
    problems = [p for root in rust_roots for p in check(label(root), rust_graph(root), allowed)]
    problems += [p for package in packages for p in check(label(package), python_graph(package), allowed)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        count = len(problems)
        print(f"check_structure: {count} import circle(s); a module may not use one that uses it back", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
