"""Command line of the aiocop package: record an unmodified program.

    python -m aiocop record -o trace.bin [--label L] [--threshold-ms N] [--trace-depth N]
        [--sample-after-ms N] [--sample-interval-ms N] -- script.py args
    python -m aiocop record -o trace.bin -- -m package args

Every event loop the program creates, on any thread, asyncio or uvloop, is
monitored without the program calling aiocop, and every monitored callback
slice is written to the trace. Every Python process the program starts
(multiprocessing children, server workers, subprocesses) records to a file
of its own: {pid} in the path expands to its process id; without {pid}, a
child's file is the path with .<pid> appended. A process that runs no event
loop leaves no file. Analyze the traces with ``aiocop-analyze``.

Exit status: the program's own; 2 for a usage error or a trace that cannot
be written.
"""

import argparse
import runpy
import sys
from typing import Any

from aiocop import attach
from aiocop.core import autorecord, lineage


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
    record.add_argument("-o", "--output", required=True, help="trace file to write; {pid} expands to the process id")
    record.add_argument("--label", help='names the release or build recorded ("v1.4.2", a git sha)')
    record.add_argument("--threshold-ms", type=float, default=30, help="a slice this long is slow (default: 30)")
    record.add_argument("--trace-depth", type=int, default=20, help="stack frames kept per event (default: 20)")
    record.add_argument("--flush-interval", type=float, default=1.0, help="seconds between writes (default: 1)")
    record.add_argument(
        "--record-context", action="store_true", help="also record context provider values (may be sensitive)"
    )
    record.add_argument(
        "--sample-after-ms",
        type=_milliseconds,
        default=2.0,
        help="a slice this long gets stack samples, to say where the loop's time went (default: 2; 0: off)",
    )
    record.add_argument(
        "--sample-interval-ms",
        type=_milliseconds,
        default=1.0,
        help="how often such a slice is sampled; each sample stands for this long (default: 1)",
    )
    record.add_argument("target", nargs=argparse.REMAINDER, help="-- script.py args, or -- -m module args")
    attach.add_parser(commands)
    return parser


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more milliseconds, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "attach":
        return attach.main(args)
    target = args.target[1:] if args.target[:1] == ["--"] else args.target
    if not target or target == ["-m"]:
        print("python -m aiocop record: name a script or -m module to run after --", file=sys.stderr)
        return 2
    sys.argv = target  # the trace header records the program's command line, not ours
    lineage.claim_root(target)
    settings: dict[str, Any] = {
        "label": args.label,
        "threshold_ms": args.threshold_ms,
        "trace_depth": args.trace_depth,
        "flush_interval_s": args.flush_interval,
        "record_context": args.record_context,
        "sample_after_ms": args.sample_after_ms,
        "sample_interval_ms": args.sample_interval_ms,
    }
    try:
        autorecord.record_everything(args.output, **settings)
    except OSError as error:
        print(f"python -m aiocop record: {error}", file=sys.stderr)
        return 2
    autorecord.pass_on_to_children(args.output, **settings)
    return _run(target)


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
