"""Which process of a deployment is recording: the one the user started, or one it started.

A recording started from ``python -m aiocop record`` or ``AIOCOP_RECORD``
passes on to every Python process the program starts, through the
environment: the recording settings (``AIOCOP_RECORD`` and friends) and the
process the user started (``AIOCOP_ROOT_PID``, ``AIOCOP_ROOT_COMMAND``), so
that a worker's trace header says which ``uvicorn ...`` it belongs to.
"""

import json
import os
import sys
from typing import TypedDict

ROOT_PID_VARIABLE = "AIOCOP_ROOT_PID"
ROOT_COMMAND_VARIABLE = "AIOCOP_ROOT_COMMAND"


class ProcessInfo(TypedDict):
    """What a trace header says of the process that wrote it."""

    parent_pid: int
    root_command: list[str]
    role: str
    sys_path: list[str]


def claim_root(command: list[str], *, redact: bool = False) -> None:
    """Mark this process as the one the user started, for the processes it starts (once).

    The command goes into the environment of every process this one starts
    (and so is seen by whatever reads their environment): with ``redact``,
    only the program's name does.
    """
    if ROOT_PID_VARIABLE not in os.environ:
        os.environ[ROOT_PID_VARIABLE] = str(os.getpid())
        os.environ[ROOT_COMMAND_VARIABLE] = json.dumps(reduced(command) if redact else command)


def reduced(command: list[str]) -> list[str]:
    """A command line reduced to its program's name (``--redact``): arguments may hold secrets."""
    return [os.path.basename(command[0])] if command else []


def is_descendant() -> bool:
    """Whether a recording process started this one (and this one is not it)."""
    root = os.environ.get(ROOT_PID_VARIABLE)
    return root is not None and root != str(os.getpid())


def describe(*, redact: bool = False) -> ProcessInfo:
    """This process, for the trace header; with ``redact``, no arguments and no ``sys.path``."""
    root_command = _root_command()
    return {
        "parent_pid": os.getppid(),
        "root_command": reduced(root_command) if redact else root_command,
        "role": _role(),
        "sys_path": [] if redact else [entry for entry in sys.path if isinstance(entry, str)],
    }


def _root_command() -> list[str]:
    try:
        command = json.loads(os.environ.get(ROOT_COMMAND_VARIABLE, "null"))
    except ValueError:
        command = None
    if isinstance(command, list) and all(isinstance(word, str) for word in command):
        return command
    return list(sys.argv)


def _role() -> str:
    if not is_descendant():
        return "main"
    # multiprocessing's children run `python -c '...' --multiprocessing-fork`.
    if "--multiprocessing-fork" in sys.argv:
        return "spawn child"
    if any("multiprocessing.forkserver" in word for word in getattr(sys, "orig_argv", [])):
        return "forkserver"
    return "subprocess"
