"""``python -m aiocop attach PID``: record a running Python 3.14+ process that never imported aiocop.

    python -m aiocop attach PID -o trace.bin [--duration 30] [--label L] [--aiocop-path DIR]

Through ``sys.remote_exec`` (PEP 768) it asks the target to run a short
script that imports aiocop and starts recording as ``python -m aiocop
record`` would: every loop already running (asyncio or uvloop, any thread)
is monitored from its next callback on. After the duration, or on Ctrl-C,
a second script stops the recording, which writes the trace out complete,
and turns monitoring off (so does SIGTERM or SIGHUP, as a supervisor or a
closed terminal sends them): the audit hook and the patched functions stay in
the process (an audit hook cannot be removed) but do nothing, asyncio's
``Handle._run`` and uvloop loops' scheduling methods are their own again,
and the sampling thread stops.

The target must be able to import aiocop: the same environment with aiocop
installed, or ``--aiocop-path`` naming the directory that holds the
``aiocop`` package, built for the target's Python. ``sys.remote_exec`` runs
the scripts on the target's main thread, the next time it runs Python code:
a main thread blocked for good in a C call (``Thread.join()`` without a
timeout) never runs them, and attach gives up after ``--start-timeout``.

Should this command die without stopping it (SIGKILL, a lost machine), the
target stops recording by itself ``--start-timeout`` + 5 s after the
duration: a recording left behind never runs on.

This side (the command) and the target's side (``start_in_target``,
``stop_in_target``) talk through a status file in a private directory.

Exit status: 0 once the trace is written (also when the target exited
during the recording: its trace is complete up to then); 2 when attaching
is refused (no such process, not Python, another Python version, remote
debugging disabled, no permission, aiocop not importable there).
"""

import argparse
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROG = "python -m aiocop attach"
STATUS_FILE = "status"
# How long after the duration, beyond --start-timeout, the target stops by itself
# when this command never came back to stop it.
SELF_STOP_MARGIN_S = 5.0


class Refused(Exception):
    """Attaching is not possible; the message says why, in one line."""


# The longest --duration or --start-timeout: a week. Past threading's
# TIMEOUT_MAX the target's self-stop timer would fail in the target's own
# process, and nan or inf would reach the script it runs.
MAX_SECONDS = 7 * 24 * 3600.0


def _check_seconds(option: str, value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise Refused(f"{option} must be a number of seconds, more than 0 and at most {MAX_SECONDS:g}, not {value:g}")


def add_parser(commands: Any) -> None:
    attach = commands.add_parser(
        "attach",
        help="record a running Python 3.14+ process for a while, without restarting it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    attach.add_argument("pid", type=int, help="process id of the running Python program")
    attach.add_argument("-o", "--output", required=True, help="trace file the target writes; {pid} expands")
    attach.add_argument("--duration", type=float, default=30.0, help="seconds to record (default: 30)")
    attach.add_argument("--label", help='names the release or build recorded ("v1.4.2", a git sha)')
    attach.add_argument("--aiocop-path", help="directory holding the aiocop package, if the target cannot import it")
    attach.add_argument(
        "--start-timeout", type=float, default=10.0, help="seconds to wait for the target to start (default: 10)"
    )


def main(args: argparse.Namespace) -> int:
    try:
        return _attach(args)
    except Refused as refusal:
        print(f"{PROG}: {refusal}", file=sys.stderr)
        return 2


def _attach(args: argparse.Namespace) -> int:
    _check_seconds("--duration", args.duration)
    _check_seconds("--start-timeout", args.start_timeout)
    if sys.version_info < (3, 14) or not hasattr(sys, "remote_exec"):
        raise Refused(
            f"needs Python 3.14 or newer (sys.remote_exec), this is {sys.version_info.major}.{sys.version_info.minor}; "
            "on 3.11 to 3.13 start the program under `python -m aiocop record -o trace.bin -- ...` instead"
        )
    pid = args.pid
    _check_target(pid)
    output = os.path.abspath(args.output)  # the target's working directory is not ours
    workdir = tempfile.mkdtemp(prefix="aiocop-attach-")
    try:
        status = Path(workdir) / STATUS_FILE
        self_stop_after = args.duration + args.start_timeout + SELF_STOP_MARGIN_S
        started = _run_in_target(
            pid, workdir, "start", output, args.aiocop_path, args.start_timeout, (args.label, self_stop_after)
        )
        print(f"{PROG}: recording {pid} to {started} for {args.duration:g} s (Ctrl-C stops)", file=sys.stderr)
        if not _wait_while_alive(pid, args.duration):
            print(f"{PROG}: {pid} exited during the recording; its trace {started} ends there", file=sys.stderr)
            return 0
        status.unlink(missing_ok=True)
        summary = _run_in_target(pid, workdir, "stop", output, args.aiocop_path, args.start_timeout)
        print(f"{PROG}: stopped; {summary}", file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _StopEarly(Exception):
    """SIGTERM or SIGHUP arrived while recording: stop the target's recording now, as Ctrl-C does."""


def _wait_while_alive(pid: int, duration_s: float) -> bool:
    """Sleeps for the duration or until Ctrl-C, SIGTERM or SIGHUP; False if the target exited meanwhile."""
    deadline = time.monotonic() + duration_s
    previous = _stop_early_on(signal.SIGTERM, signal.SIGHUP)
    try:
        while time.monotonic() < deadline:
            if not _alive(pid):
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    except (KeyboardInterrupt, _StopEarly):
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _alive(pid)


def _stop_early_on(*signals: signal.Signals) -> dict[signal.Signals, Any]:
    """Makes each signal stop the wait, unless it is ignored (nohup's SIGHUP); the handlers it replaced."""

    def stop_early(signum: int, frame: object) -> None:
        raise _StopEarly(signum)

    previous = {}
    for signum in signals:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, stop_early)
    return previous


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _check_target(pid: int) -> None:
    """Refuses, before touching the target, what can be told from outside."""
    if pid <= 0 or not _alive(pid):
        raise Refused(f"no running process with pid {pid}")
    version = _target_python_version(pid)
    ours = sys.version_info[:2]
    if version is not None and version != ours:
        hint = (
            "attach needs 3.14 or newer: start it under `python -m aiocop record` instead"
            if version < (3, 14)
            else f"run attach with that Python: python{version[0]}.{version[1]} -m aiocop attach"
        )
        raise Refused(f"process {pid} runs Python {version[0]}.{version[1]}, this is {ours[0]}.{ours[1]}; {hint}")
    if _remote_debugging_disabled(pid):
        raise Refused(
            f"process {pid} disabled remote debugging (PYTHON_DISABLE_REMOTE_DEBUG or -X disable_remote_debug); "
            "restart it without, or under `python -m aiocop record`"
        )


def _target_python_version(pid: int) -> tuple[int, int] | None:
    """The target's Python version from its executable's or libpython's name, if one says it."""
    names = []
    try:
        names.append(os.path.basename(os.readlink(f"/proc/{pid}/exe")))
        names += [line.rsplit("/", 1)[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()]
    except OSError:
        return None
    for name in names:
        match = re.fullmatch(r"(?:python|libpython)(\d+)\.(\d+)[a-z]*(?:\.so.*)?", name)
        if match:
            return int(match[1]), int(match[2])
    return None


def _remote_debugging_disabled(pid: int) -> bool:
    """Whether the target was started with remote debugging turned off (unreadable: not known, False)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    pairs = zip(arguments, arguments[1:], strict=False)
    if b"-Xdisable_remote_debug" in arguments or (b"-X", b"disable_remote_debug") in pairs:
        return True
    return any(
        v.startswith(b"PYTHON_DISABLE_REMOTE_DEBUG=") and v != b"PYTHON_DISABLE_REMOTE_DEBUG=" for v in environment
    )


def _run_in_target(
    pid: int,
    workdir: str,
    action: str,
    output: str,
    aiocop_path: str | None,
    timeout_s: float,
    start: tuple[str | None, float] | None = None,
) -> str:
    """Has the target run `action` (start, given (label, self-stop seconds), or stop) and returns what it
    answered; Refused on an error."""
    script = Path(workdir) / f"{action}.py"
    status = Path(workdir) / STATUS_FILE
    script.write_text(_target_script(action, output, aiocop_path, str(status), start))
    try:
        sys.remote_exec(pid, str(script))  # type: ignore[attr-defined]
    except PermissionError:
        raise Refused(
            f"no permission to attach to process {pid}: run as its user or root "
            "(and with /proc/sys/kernel/yama/ptrace_scope at 0 or 1)"
        ) from None
    except (RuntimeError, OSError) as error:
        raise Refused(_remote_exec_error(pid, error)) from None
    deadline = time.monotonic() + timeout_s
    while not status.exists():
        if not _alive(pid):
            raise Refused(f"process {pid} exited before it ran aiocop's {action} script")
        if time.monotonic() > deadline:
            raise Refused(
                f"process {pid} did not run aiocop's {action} script within {timeout_s:g} s: "
                "sys.remote_exec runs it on the main thread, the next time that runs Python code "
                "(not while it waits in Thread.join() or another C call for good)"
            )
        time.sleep(0.02)
    answer = status.read_text()
    if answer.startswith("error: "):
        raise Refused(f"process {pid}: {answer[len('error: ') :]}")
    return answer


def _remote_exec_error(pid: int, error: Exception) -> str:
    text = str(error)
    if "PyRuntime" in text or "debug offsets" in text:
        return f"process {pid} is not a Python process (no CPython runtime found in its memory)"
    if "not enabled" in text:
        return f"process {pid} disabled remote debugging: restart it without, or under `python -m aiocop record`"
    return f"cannot attach to process {pid}: {text}"


def _target_script(
    action: str, output: str, aiocop_path: str | None, status: str, start: tuple[str | None, float] | None
) -> str:
    """The script the target runs: it never raises there, it answers in the status file."""
    path_line = f"sys.path.insert(0, {aiocop_path!r})\n" if aiocop_path else ""
    if action == "start":
        assert start is not None
        label, self_stop_after = start
        call = f"answer = attach.start_in_target({output!r}, label={label!r}, self_stop_after_s={self_stop_after!r})"
    else:
        call = "answer = attach.stop_in_target()"
    return (
        "import os, sys\n"
        f"{path_line}"
        "try:\n"
        "    from aiocop import attach\n"
        f"    {call}\n"
        "except ImportError as error:\n"
        f"    answer = 'error: cannot import aiocop ({{}}); give --aiocop-path, built for Python {{}}.{{}}'.format("
        "error, *sys.version_info[:2])\n"
        "except Exception as error:\n"
        "    answer = 'error: ' + ' '.join(str(error).split())\n"
        f"with open({status + '.tmp'!r}, 'w') as status:\n"
        "    status.write(answer)\n"
        f"os.replace({status + '.tmp'!r}, {status!r})\n"
    )


# The target's side: run on its main thread by the scripts above.

_state: dict[str, Any] = {}
# Held while stopping: the stop script (main thread) and the self-stop timer may both come.
_stopping = threading.Lock()


def start_in_target(output: str, *, label: str | None, self_stop_after_s: float | None = None) -> str:
    """Starts recording every loop in this process; the path written, or 'error: ...'. With
    self_stop_after_s, the recording stops by itself then if stop_in_target was not called before."""
    from aiocop import _native
    from aiocop.core import autorecord, state

    if _native.is_recording():
        return f"error: already recording to {_native.recording_path()}; nothing changed"
    import asyncio.events

    from aiocop.core import cpu_sampler

    _state["was_monitoring"] = state.is_monitoring_active()
    _state.setdefault("sampler_was_started", _native.is_sampler_started())
    _state.setdefault("original_handle_run", asyncio.events.Handle.__dict__["_run"])
    if _state.get("sampler_stopped_at_detach"):
        cpu_sampler.start_cpu_sampling()  # detect_slow_tasks, which started it the first time, runs once
    uvloop_loops = _unpatched_uvloop_loops()
    written = autorecord.record_everything(output, label=label)
    # record_everything monitors the loop running on this (the main) thread
    # and loops that start later; loops already running on other threads
    # are stock asyncio (timed by Handle._run, now that every loop is
    # monitored) or uvloop (patched here), and all of them go back at stop.
    from aiocop.core import slow_tasks

    if not _native.install_handle_run(asyncio.events.Handle) and "aiocop_handle_run" in _state:
        asyncio.events.Handle._run = _state["aiocop_handle_run"]  # type: ignore[method-assign]  # made once
    _state["aiocop_handle_run"] = asyncio.events.Handle.__dict__["_run"]
    for loop in uvloop_loops:
        if not getattr(loop, "_aiocop_patched", False):
            slow_tasks._patch_loop(loop)
            loop._aiocop_patched = True
    _state["uvloop_loops"] = uvloop_loops
    _state["attached"] = True
    if self_stop_after_s is not None:
        _state["self_stop"] = _self_stop_timer(self_stop_after_s)
    return written


def _self_stop_timer(after_s: float) -> threading.Timer:
    """A daemon timer that stops the recording if the attach command never comes back to (killed, lost)."""

    def stop_left_behind() -> None:
        import logging

        logging.getLogger("aiocop").warning(
            "aiocop attach: no stop came %.0f s after the recording started; stopping it here", after_s
        )
        stop_in_target()

    timer = threading.Timer(after_s, stop_left_behind)
    timer.name = "aiocop-attach-self-stop"
    timer.daemon = True
    timer.start()
    return timer


def _unpatched_uvloop_loops() -> list[Any]:
    """uvloop loops made before aiocop came, found among the live objects (once, at attach)."""
    uvloop = sys.modules.get("uvloop")
    if uvloop is None:
        return []
    import gc

    return [o for o in gc.get_objects() if isinstance(o, uvloop.Loop) and not getattr(o, "_aiocop_patched", False)]


def stop_in_target() -> str:
    """Stops the recording and turns monitoring off again (unless the program had it on). Called by the
    attach command's stop script on the main thread, or by the self-stop timer: whichever comes second
    finds the recording already stopped."""
    with _stopping:
        return _stop_in_target()


def _stop_in_target() -> str:
    from aiocop import _native
    from aiocop.core import recorder, slow_tasks, state

    self_stop = _state.pop("self_stop", None)
    if self_stop is not None:
        self_stop.cancel()
    if not _state.pop("attached", False):
        return "the recording had already stopped"
    summary = recorder.stop_recording()
    _native.set_monitor_all_loops(False)
    for loop in _state.pop("uvloop_loops", []):
        for name, _ in slow_tasks._SCHEDULING_METHODS:
            loop.__dict__.pop(name, None)
        loop.__dict__.pop("call_exception_handler", None)
        loop.__dict__.pop("_aiocop_patched", None)
    if not _state.pop("was_monitoring", False):
        state.deactivate()
        # Unmonitored, aiocop's Handle._run still cost a pure step about twice asyncio's own (measured 164 ns
        # and 355 ns on 3.15, tests/test_attach.py): asyncio's goes back.
        import asyncio.events

        asyncio.events.Handle._run = _state["original_handle_run"]  # type: ignore[method-assign]
    if not _state["sampler_was_started"]:
        _stop_the_watchdog()

    if summary is None:
        return "the recording had already stopped"
    written = f"{summary['slices']} slices, {summary['events']} blocking events to {summary['path']}"
    return written if summary["error"] is None else f"{written} (error: {summary['error']})"


def _stop_the_watchdog() -> None:
    """Stops the sampling thread attach started: idle, it still wakes every few milliseconds, which
    measurably slowed a uvloop server's requests (tests/test_attach.py)."""
    import threading

    from aiocop import _native
    from aiocop.core import cpu_sampler

    _native.set_sampler_started(False)
    _native.stop_sampler()
    for thread in threading.enumerate():
        if thread.name == cpu_sampler.WATCHDOG_THREAD_NAME:
            thread.join(timeout=1.0)
    _state["sampler_stopped_at_detach"] = True
