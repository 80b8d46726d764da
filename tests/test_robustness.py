"""aiocop never crashes or corrupts the monitored program: re-entrant audit
events during garbage collection, forks, and reference cycles through its
native wrappers."""

import gc
import os
import subprocess
import sys
import textwrap

import aiocop
from aiocop import _native
from conftest import run_monitored


class OpensAFileWhenCollected:
    """Garbage whose finalizer does blocking I/O, collected at arbitrary points."""

    path = os.devnull

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        with open(self.path):
            pass


def test_finalizers_doing_io_during_event_capture_do_not_crash(slow_tasks, tmp_path):
    # With a threshold of 1 every allocation may run the collector, including
    # the ones made while the audit hook captures a stack: the finalizers'
    # open() then raises an audit event inside the hook.
    async def body():
        for _ in range(200):
            OpensAFileWhenCollected()
            os.stat(tmp_path)

    old_threshold = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        run_monitored(body)
    finally:
        gc.set_threshold(*old_threshold)
        gc.collect()

    stats = [
        info for event in slow_tasks.events for info in event.blocking_events if info["event"].startswith("os.stat(")
    ]
    dropped = sum(event.dropped_blocking_events for event in slow_tasks.events)
    assert len(stats) + dropped >= 200 - 50, "os.stat events must still be recorded"


def test_forked_child_detects_blocking_io_and_samples_cpu(tmp_path):
    script = textwrap.dedent(
        """
        import asyncio, os, sys, time
        import aiocop

        aiocop.patch_audit_functions()
        aiocop.start_blocking_io_detection()
        events = []
        aiocop.detect_slow_tasks(threshold_ms=30, on_slow_task=events.append)

        def spin():
            deadline = time.perf_counter() + 0.08
            while time.perf_counter() < deadline:
                pass

        async def main():
            aiocop.activate()
            await asyncio.sleep(0)
            os.stat(".")
            await asyncio.sleep(0)
            spin()
            await asyncio.sleep(0)

        pid = os.fork()
        if pid == 0:
            asyncio.run(main())
            reasons = sorted(e.reason for e in events)
            sampled = any("spin" in s["entry_point"] for e in events for s in e.cpu_stack_samples)
            os.write(1, f"{reasons} {sampled}".encode())
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['cpu_blocking', 'io_blocking'] True"


def test_native_wrappers_expose_what_they_hold_to_the_garbage_collector():
    def target() -> None:
        pass

    audited = _native.AuditedFunction(target, "os.stat")
    assert target in gc.get_referents(audited)

    patched = _native.schedule_patch(target, 0)
    [schedule_target] = gc.get_referents(patched)
    assert target in gc.get_referents(schedule_target)


def test_scheduling_stand_in_routes_the_callback_through_run_monitored():
    seen = []

    def call_later(delay, callback, *args, context=None):
        seen.append((delay, callback, args, context))
        return "handle"

    patched = _native.schedule_patch(call_later, 1)
    assert patched(0.5, print, "a", "b", context="ctx") == "handle"
    [(delay, callback, args, context)] = seen
    assert (delay, args[0], args[1:], context) == (0.5, print, ("a", "b"), "ctx")
    assert callback.__name__ == "run_monitored"

    # run_monitored calls the callback with its arguments, monitored or not.
    results = []
    callback(results.append, "ran")
    assert results == ["ran"]


def test_cycle_through_a_patched_loop_method_is_collected():
    import weakref

    class Owner:
        def call_soon(self, callback, *args, context=None):
            return callback

    owner = Owner()
    owner.call_soon = _native.schedule_patch(owner.call_soon, 0)  # owner -> patch -> bound method -> owner
    alive = weakref.ref(owner)
    del owner
    gc.collect()
    assert alive() is None


def test_patched_functions_keep_their_identity_for_users():
    import socket
    import time

    assert time.sleep.__name__ == "sleep"
    assert os.stat.__wrapped__.__name__ == "stat"
    assert socket.socket.connect.__qualname__ == "socket.connect"
    with socket.socket() as sock:
        assert sock.connect.__self__ is sock
    assert aiocop.get_patched_functions()[0] == "os.getcwd"


# A daemon thread inside one of aiocop's native frames when the program exits:
# on 3.11-3.13 the finalizing interpreter ends such a thread with pthread_exit,
# whose unwind aborted the whole process (SIGABRT) when it crossed aiocop.
DAEMON_AT_EXIT = {
    "an audited time.sleep": """
        aiocop.patch_audit_functions()
        aiocop.start_blocking_io_detection()

        def daemon():
            while True:
                time.sleep(0.01)
    """,
    "a monitored callback that blocks": """
        aiocop.start_blocking_io_detection()
        aiocop.detect_slow_tasks(threshold_ms=100)

        def daemon():
            async def main():
                aiocop.activate()
                while True:
                    await asyncio.sleep(0.005)
                    time.sleep(0.02)

            asyncio.run(main())
    """,
    "a context provider that blocks": """
        aiocop.start_blocking_io_detection()
        aiocop.detect_slow_tasks(threshold_ms=100)
        # 5 ms: under the 10 ms after which a slow provider is disabled.
        aiocop.register_context_provider(lambda: time.sleep(0.005) or {})

        def daemon():
            async def main():
                aiocop.activate()
                while True:
                    await asyncio.sleep(0.001)

            asyncio.run(main())
    """,
    "a recorded loop polling its selector": """
        aiocop.start_recording(sys.argv[1])

        def daemon():
            async def main():
                aiocop.activate()
                while True:
                    await asyncio.sleep(0.01)

            asyncio.run(main())
    """,
}


def test_a_daemon_thread_inside_aiocop_at_exit_does_not_abort_the_program(tmp_path):
    for name, setup in DAEMON_AT_EXIT.items():
        script = tmp_path / "app.py"
        script.write_text(
            "import asyncio, sys, threading, time\nimport aiocop\n"
            + textwrap.dedent(setup)
            + "\nthreading.Thread(target=daemon, daemon=True).start()\ntime.sleep(0.1)\n"
        )
        for attempt in range(3):
            result = subprocess.run(
                [sys.executable, str(script), str(tmp_path / f"trace-{attempt}.bin")],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, f"{name}, run {attempt}: exit {result.returncode}\n{result.stderr[-2000:]}"
