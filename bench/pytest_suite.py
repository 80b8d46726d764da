"""A real async library's own test suite, with and without ``pytest --aiocop``.

Downloads the library's sdist from the package index (pip download, cached
under --cache), runs its tests from the source tree with this interpreter,
alternating the modes so that machine noise hits both alike, and prints the
median wall time of each mode, their ratio (target: at most 1.1), and what
the gate found (the summary section of one --aiocop run).

    .venv/bin/python bench/pytest_suite.py                      # aiofiles 25.1.0, 5 runs a mode, ~1 min
    .venv/bin/python bench/pytest_suite.py --runs 9 --package aiofiles==25.1.0

Modes: ``off`` (aiocop's plugin loaded, not asked for), ``no-plugin``
(``-p no:aiocop``), ``on`` (``--aiocop --aiocop-warn-only``, so that both run
the same tests to the end), ``record`` (``on`` plus ``--aiocop-record``).
The suite's own failures without aiocop are its own (printed once).
"""

import argparse
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

MODES = {
    "no-plugin": ["-p", "no:aiocop"],
    "off": [],
    "on": ["--aiocop", "--aiocop-warn-only"],
    "record": ["--aiocop", "--aiocop-warn-only", "--aiocop-record", "{tmp}/suite-{{pid}}.bin"],
}


def source_tree(package: str, cache: Path) -> Path:
    """The sdist's unpacked tree (downloaded once)."""
    cache.mkdir(parents=True, exist_ok=True)
    name = package.split("==")[0]
    archives = sorted(cache.glob(f"{name}-*.tar.gz"))
    if not archives:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                package,
                "-d",
                cache,
            ],
            check=True,
        )
        archives = sorted(cache.glob(f"{name}-*.tar.gz"))
    tree = cache / archives[-1].name.removesuffix(".tar.gz")
    if not tree.exists():
        with tarfile.open(archives[-1]) as archive:
            archive.extractall(cache, filter="data")
    return tree


def run_suite(tree: Path, extra: list[str]) -> tuple[float, float, str]:
    """Wall time and CPU time (user + system, of pytest and its children) of one run, and its output."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=tree,
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu_s, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="aiofiles==25.1.0")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "aiocop-bench-suites")
    options = parser.parse_args()
    tree = source_tree(options.package, options.cache)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu_times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {}
        for run in range(options.runs):
            order = list(MODES)[run % len(MODES) :] + list(MODES)[: run % len(MODES)]
            for mode in order:
                extra = [arg.format(tmp=tmp) for arg in MODES[mode]]
                elapsed, cpu_s, outputs[mode] = run_suite(tree, extra)
                times[mode].append(elapsed)
                cpu_times[mode].append(cpu_s)
                print(f"run {run + 1} {mode}: {elapsed:.2f} s, CPU {cpu_s:.2f} s", file=sys.stderr)
    print(f"{options.package}: {outputs['off'].strip().splitlines()[-1]}")
    for what, table in (("wall", times), ("CPU", cpu_times)):
        base = statistics.median(table["no-plugin"])
        for mode, measured in table.items():
            median = statistics.median(measured)
            spread = f"{min(measured):.2f}-{max(measured):.2f}"
            print(f"{what:4} {mode:10} median {median:.2f} s ({spread}), x{median / base:.2f} of no-plugin")
    summary = outputs["on"].split("= aiocop =")[-1].split("short test summary")[0]
    print("what --aiocop found:" + summary.split("\n", 1)[-1].rstrip("= \n"))


if __name__ == "__main__":
    main()
