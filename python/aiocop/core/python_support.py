"""Which CPython versions aiocop knows, and what it does on one it does not.

Tested: CPython 3.11 to 3.15 with the GIL, each by `make test`. What each
version changes for us, read from CPython's sources:

- 3.11: `PyFrame_GetLasti`, needed by the native stack walk. A pending call
  queued from another thread does not set the main thread's eval breaker
  (`recorder/src/eval_breaker.rs` sets it).
- 3.12: the same eval-breaker gap; eager tasks (`asyncio.eager_task_factory`)
  run a task's first step inside the callback that created it.
- 3.13: `time.sleep` raises its own audit event, so it is no longer patched;
  a pending call queued from another thread reaches the main thread by
  itself at its next eval-breaker check.
- 3.14: asyncio's C tasks keep the tasks of a thread in a linked list of
  their own (for free-threading) rather than a WeakSet (CPython's
  InternalDocs/asyncio.md, gh-128002, PR #128869), which the monitor
  never reads; each task step still runs as a `TaskStepMethWrapper` handle
  (checked in sid's `_asyncio`, 3.14 and 3.15), which `what_ran.rs`
  recognises by its type name and layout. The interpreter's frame layout
  changed again; the stack walk uses only `PyFrame_GetCode`,
  `PyFrame_GetLasti` and `PyFrame_GetBack`, which hide it. New: PEP 768's
  `sys.remote_exec`, with the audit events `sys.remote_exec` (in the caller)
  and `cpython.remote_debugger_script` (in the target), which
  `python -m aiocop attach` uses; the audit hook ignores both, as any event
  it does not know.
- 3.15: Debian's 3.15.2 builds `_asyncio` into the interpreter
  (`sys.builtin_module_names`; 3.14.10's is in lib-dynload), which nothing
  here depends on; no change to the APIs we call; pending calls still reach the main thread by themselves
  (tests/test_python_versions.py checks 3.13 to 3.15).

A newer version runs with the same public C API, and what we only know
per version is turned off there, said once in the ``aiocop`` log at import:
recording's samples of the main thread through pending calls, since whether
a pending call reaches the main thread by itself changed before (3.13); they
take the GIL instead, which is slower to come but cannot miss
(`recorder/src/sampler.rs`, `pending_calls_reach_the_main_thread_by_themselves`).

Free-threaded builds (3.13t, 3.14t) are refused at import with one line: the
monitor's timing assumes one thread runs Python at a time, and Debian's
packages, which `make test` uses, have none to test on.
"""

import logging
import sys
import sysconfig

OLDEST_SUPPORTED = (3, 11)
NEWEST_TESTED = (3, 15)

logger = logging.getLogger("aiocop")


def free_threaded_refusal(gil_disabled: bool, version: tuple[int, int]) -> str | None:
    """The one-line reason aiocop cannot run on this build, or None."""
    if not gil_disabled:
        return None
    major, minor = version
    return (
        f"aiocop does not support free-threaded CPython ({major}.{minor}t): its monitor assumes one thread "
        f"runs Python at a time; use the standard build (python{major}.{minor})"
    )


def turned_off(version: tuple[int, int]) -> list[str]:
    """What aiocop turns off on `version` because it was not tested there."""
    if version <= NEWEST_TESTED:
        return []
    return ["recording's samples of the main thread through pending calls (they take the GIL instead)"]


def check_running_python() -> None:
    """Refuses a free-threaded build; on an untested newer version, says once what is off."""
    version = sys.version_info[:2]
    refusal = free_threaded_refusal(bool(sysconfig.get_config_var("Py_GIL_DISABLED")), version)
    if refusal is not None:
        raise ImportError(refusal)
    off = turned_off(version)
    if off:
        newest = ".".join(map(str, NEWEST_TESTED))
        logger.warning(
            "aiocop was tested up to Python %s, not on %d.%d: turned off: %s", newest, *version, "; ".join(off)
        )
