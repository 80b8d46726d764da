"""Command line of the aiocop package: record an unmodified program.

    python -m aiocop record -o trace.bin [--label L] [--threshold-ms N] [--trace-depth N]
        [--sample-after-ms N] [--sample-interval-ms N] [--file-mode 640] [--redact]
        [--allowlist pyproject.toml] -- script.py args
    python -m aiocop record -o trace.bin -- -m package args

Every event loop the program creates, on any thread, asyncio or uvloop, is
monitored without the program calling aiocop, and every monitored callback
slice is written to the trace. Every Python process the program starts
(multiprocessing children, server workers, subprocesses) records to a file
of its own: {pid} in the path expands to its process id; without {pid}, a
child's file is the path with .<pid> appended. A process that runs no event
loop leaves no file. Trace files are created new, never through a symlink,
readable by their owner only unless --file-mode widens them; a path another
recording holds (or that is a symlink, another user's file or a file that
is not an aiocop trace) is left alone and the process records to
<path>.<pid> instead. A FIFO no process reads is
refused. At exit, aiocop waits at most 2 s for the trace to be written.
Analyze the traces with ``aiocop-analyze``.

Exit status: the program's own; 2 for a usage error, a setting out of its
range (one line naming the option) or a trace that cannot be written.
"""

import argparse
import importlib.util
import os
import runpy
import sys
from typing import Any

from aiocop import attach
from aiocop.core import autorecord, lineage, settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiocop",
        description="Record where an asyncio program blocks its event loop.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser(
        "record",
        help="run a program and record every event-loop callback and blocking call to a trace file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Values are read as text and checked by aiocop.core.settings, the one
    # rule set the Python API and the environment use too.
    record.add_argument("-o", "--output", required=True, help="trace file to write; {pid} expands to the process id")
    record.add_argument("--label", help='names the release or build recorded ("v1.4.2", a git sha)')
    record.add_argument(
        "--threshold-ms",
        metavar="MS",
        help=f"a slice this long is slow (more than 0; default: {settings.DEFAULT_THRESHOLD_MS:g})",
    )
    record.add_argument(
        "--trace-depth",
        metavar="FRAMES",
        help=f"stack frames kept per event ({settings.TRACE_DEPTH_RANGE[0]} to {settings.TRACE_DEPTH_RANGE[1]};"
        f" default: {settings.DEFAULT_TRACE_DEPTH})",
    )
    record.add_argument(
        "--flush-interval",
        dest="flush_interval_s",
        metavar="SECONDS",
        help="seconds between writes ({:g} to {:g}; default: {:g})".format(
            *settings.FLUSH_INTERVAL_RANGE_S, settings.DEFAULT_FLUSH_INTERVAL_S
        ),
    )
    record.add_argument(
        "--max-buffered-slices",
        metavar="N",
        help="slices kept in memory for the writer at most; past it, slices are dropped and counted"
        f" (default: {settings.DEFAULT_MAX_BUFFERED_SLICES:,})",
    )
    record.add_argument(
        "--record-context", action="store_true", help="also record context provider values (may be sensitive)"
    )
    record.add_argument(
        "--sample-after-ms",
        metavar="MS",
        help="a slice this long gets stack samples, to say where the loop's time went"
        f" (default: {settings.DEFAULT_SAMPLE_AFTER_MS:g}; 0: off)",
    )
    record.add_argument(
        "--sample-interval-ms",
        metavar="MS",
        help="how often such a slice is sampled; each sample stands for this long"
        f" (default: {settings.DEFAULT_SAMPLE_INTERVAL_MS:g})",
    )
    record.add_argument(
        "--redact",
        action="store_true",
        help="keep secrets out of the trace: command lines reduced to the program's name, event arguments"
        " (paths, hosts, subprocess arguments) hashed, context values, sys.path and host name left out",
    )
    record.add_argument(
        "--redact-keep-context",
        action="append",
        default=[],
        metavar="KEY",
        help="with --redact --record-context, still record this context key's values (repeatable)",
    )
    record.add_argument(
        "--sample-frames",
        metavar="MODE",
        help="how samples are taken: pending (the loop thread samples itself at its next eval-breaker check;"
        " default), read (aiocop's sampler thread reads the loop thread's frames, inside long C calls too),"
        " validate (read, each checked against a pending sample)",
    )
    record.add_argument(
        "--file-mode",
        metavar="OCTAL",
        help="permission bits of new trace files, in octal as chmod takes them"
        f" (default: {settings.DEFAULT_FILE_MODE:03o}; 640: group may read)",
    )
    record.add_argument(
        "--allowlist",
        metavar="FILE",
        help="put an allow-list in force: a pyproject.toml ([tool.aiocop]), an aiocop.toml, or a directory"
        " holding one; allowed blocking is still recorded, marked allowed, and raise_on_violations ignores it",
    )
    record.add_argument("target", nargs=argparse.REMAINDER, help="-- script.py args, or -- -m module args")
    attach.add_parser(commands)
    return parser


# The options given as text, by setting name (each option's dest); flags are values already.
_TEXT_OPTIONS = (
    "label",
    "threshold_ms",
    "trace_depth",
    "flush_interval_s",
    "max_buffered_slices",
    "sample_after_ms",
    "sample_interval_ms",
    "sample_frames",
    "file_mode",
    "allowlist",
)


def _settings(args: argparse.Namespace) -> settings.RecordingSettings:
    """The recording settings the options describe; SettingError naming the first bad one."""
    values: dict[str, Any] = {
        "path": args.output,
        "record_context": args.record_context,
        "redact": args.redact,
        "redact_keep_context": tuple(args.redact_keep_context),
    }
    for name in _TEXT_OPTIONS:
        text = getattr(args, name)
        if text is not None:
            values[name] = settings.parse(name, text)
    return settings.RecordingSettings(**values)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "attach":
        return attach.main(args)
    target = args.target[1:] if args.target[:1] == ["--"] else args.target
    if not target or target == ["-m"]:
        print("python -m aiocop record: name a script or -m module to run after --", file=sys.stderr)
        return 2
    try:
        chosen = _settings(args)
    except settings.SettingError as error:
        option = settings.RULES[error.name].option
        print(f"python -m aiocop record: {option} {error.problem}, not {error.value!r}", file=sys.stderr)
        return 2
    missing = _missing_target(target)
    if missing is not None:
        print(f"python -m aiocop record: {missing}", file=sys.stderr)
        return 2
    sys.argv = target  # the trace header records the program's command line, not ours
    lineage.claim_root(target, redact=chosen.redact)
    try:
        autorecord.record_with(chosen)
    except OSError as error:
        print(f"python -m aiocop record: {error}", file=sys.stderr)
        return 2
    autorecord.pass_on_to_children(chosen)
    return _run(target)


def _missing_target(target: list[str]) -> str | None:
    """Why the script or module cannot be run, as python would say it, or None; checked before
    recording starts, so that a typo leaves no trace file and no traceback of runpy's."""
    if target[0] == "-m":
        # Only the top-level package: finding a submodule would import its
        # parents before aiocop patches anything (their `from time import
        # sleep` would keep the unpatched function).
        top_level = target[1].partition(".")[0]
        try:
            found = bool(top_level) and importlib.util.find_spec(top_level) is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"no module named {top_level!r}"
    script = target[0]
    if os.path.isdir(script) and not os.path.exists(os.path.join(script, "__main__.py")):
        return f"can't find '__main__.py' in directory {script!r}"
    return None if os.path.exists(script) else f"can't open file {script!r}: no such file or directory"


def _run(target: list[str]) -> int:
    """Run the target as `python script.py args` or `python -m module args` would."""
    try:
        if target[0] == "-m":
            sys.argv = target[1:]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = target
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exit_request:
        return _exit_status(exit_request.code)
    return 0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
