"""Recording to trace files, read back with the native (Rust) reader.

Each test records a known workload in a fresh interpreter (a real
subprocess): recording is process-wide state, and several tests end the
process abruptly on purpose.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import aiocop

WORKLOAD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    import aiocop

    def blocking_open(path):
        with open(path, "w") as f:  # LINE_OPEN
            f.write("x")

    async def worker(path):
        for _ in range(3):
            blocking_open(path)
            await asyncio.sleep(0)
        time.sleep(0.04)  # LINE_SLEEP
        for _ in range(100):
            await asyncio.sleep(0)

    async def main(path):
        aiocop.activate()
        await asyncio.sleep(0)
        await asyncio.create_task(worker(path), name="the-worker")
    """
)


def line_of(marker: str) -> int:
    return next(n for n, line in enumerate(WORKLOAD.splitlines(), start=1) if marker in line)


def run_python(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def record_workload(tmp_path: Path, extra: str = "") -> dict:
    trace = tmp_path / "trace.bin"
    script = WORKLOAD + textwrap.dedent(
        f"""
        aiocop.start_recording({str(trace)!r}, label="v1.4.2", flush_interval_s=0.05)
        asyncio.run(main({str(tmp_path / "f.txt")!r}))
        {extra}
        summary = aiocop.stop_recording()
        print(__import__("json").dumps(summary))
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["path"] == str(trace)
    return summary


def test_round_trip_counts_names_stacks_and_severities(tmp_path):
    summary = record_workload(tmp_path)
    trace = aiocop.read_trace(tmp_path / "trace.bin")

    assert trace["cut_short"] is False
    assert trace["footer"]["slices"] == summary["slices"] == len(trace["slices"])
    assert summary["dropped"] == 0 and trace["dropped"] == 0
    assert summary["bytes"] == (tmp_path / "trace.bin").stat().st_size

    header = trace["header"]
    assert header["label"] == "v1.4.2"
    assert header["pid"] > 0 and header["threshold_ns"] == 30_000_000 and header["trace_depth"] == 20
    assert ("open", 10) in header["event_table"] and ("time.sleep", 50) in header["event_table"]

    worker_slices = [s for s in trace["slices"] if s["what"] == "worker"]
    # 3 steps with an open, 1 with the sleep (up to the first of the 100
    # yields), 99 pure steps, and the last one that returns.
    assert len(worker_slices) == 104
    opens = [s for s in worker_slices if [e["event"] for e in s["events"]] == ["open"]]
    assert len(opens) == 3
    for slice_ in opens:
        [event] = slice_["events"]
        assert event["args"].startswith(str(tmp_path / "f.txt") + ", w")
        assert event["stack"][0].endswith(f":{line_of('LINE_OPEN')}:blocking_open")
        assert event["stack"][1].endswith(":worker")
        assert slice_["score"] == 10 and slice_["task"] == "the-worker"
        assert 0 <= event["offset_ns"] <= slice_["duration_ns"]
    [sleep] = [s for s in worker_slices if [e["event"] for e in s["events"]] == ["time.sleep"]]
    assert sleep["exceeded"] is True and sleep["score"] == 50 and sleep["duration_ns"] >= 40_000_000
    assert sleep["events"][0]["stack"][0].endswith(f":{line_of('LINE_SLEEP')}:worker")
    pure = [s for s in worker_slices if not s["events"]]
    assert len(pure) == 100 and not any(s["exceeded"] for s in pure)
    assert all(s["task"] == "the-worker" for s in pure), "every step of a task is named by the task"


def test_every_slice_is_recorded_with_what_ran_and_its_thread(tmp_path):
    record_workload(tmp_path)
    trace = aiocop.read_trace(tmp_path / "trace.bin")
    names = {s["what"] for s in trace["slices"]}
    assert {"main", "worker"} <= names
    assert {s["thread"] for s in trace["slices"]} == {1}
    # Task steps carry their task's name; plain callbacks none.
    tasks = {(s["what"], s["task"]) for s in trace["slices"]}
    assert ("worker", "the-worker") in tasks
    assert any(what == "main" and task and task.startswith("Task-") for what, task in tasks)
    assert all(task is not None for what, task in tasks if what in ("main", "worker"))


def test_recording_context_manager_and_is_recording(tmp_path):
    trace = tmp_path / "ctx.bin"
    script = textwrap.dedent(
        f"""
        import asyncio, os, aiocop
        async def main():
            aiocop.activate()
            await asyncio.sleep(0)
            os.stat(".")
        with aiocop.recording({str(trace)!r}, label="sha-abc") as path:
            assert aiocop.is_recording() and path == {str(trace)!r}
            asyncio.run(main())
        assert not aiocop.is_recording()
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    read = aiocop.read_trace(trace)
    assert read["header"]["label"] == "sha-abc"
    assert [e["event"] for s in read["slices"] for e in s["events"]] == ["os.stat"]


def test_recording_without_stop_is_finished_at_exit(tmp_path):
    trace = tmp_path / "atexit.bin"
    result = run_python(
        WORKLOAD + f"aiocop.start_recording({str(trace)!r})\nasyncio.run(main({str(tmp_path / 'f')!r}))\n"
    )
    assert result.returncode == 0, result.stderr
    read = aiocop.read_trace(trace)
    assert read["cut_short"] is False and len(read["slices"]) >= 104


def start_recording_forever(trace: Path, flush_interval_s: float, setup: str = "") -> subprocess.Popen:
    """A process that records an endless loop of os.stat steps; returns once it records."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        import aiocop
        {setup}
        async def forever():
            aiocop.activate()
            while True:
                os.stat(".")
                await asyncio.sleep(0.001)
        aiocop.start_recording({str(trace)!r}, flush_interval_s={flush_interval_s})
        print("recording", flush=True)
        asyncio.run(forever())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "recording\n"
    return process


def test_kill_9_leaves_everything_up_to_the_last_flush(tmp_path):
    trace = tmp_path / "killed.bin"
    process = start_recording_forever(trace, flush_interval_s=0.05)
    time.sleep(0.8)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    read = aiocop.read_trace(trace)
    assert read["cut_short"] is True and read["footer"] is None
    stats = [s for s in read["slices"] if [e["event"] for e in s["events"]] == ["os.stat"]]
    assert len(stats) > 50, "0.8 s of recording at a 50 ms flush interval must be on disk"


def test_sigterm_handled_by_the_app_loses_nothing(tmp_path):
    trace = tmp_path / "term.bin"
    # A flush interval longer than the run: everything must come from the clean exit.
    process = start_recording_forever(
        trace, flush_interval_s=10, setup="signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))"
    )
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0

    read = aiocop.read_trace(trace)
    assert read["cut_short"] is False
    assert read["footer"]["slices"] == len(read["slices"]) > 50


def test_forked_child_records_to_its_own_file(tmp_path):
    template = str(tmp_path / "worker-{pid}.bin")
    script = WORKLOAD + textwrap.dedent(
        f"""
        aiocop.start_recording({template!r}, flush_interval_s=0.05)
        asyncio.run(main({str(tmp_path / "parent.txt")!r}))
        pid = os.fork()
        if pid == 0:
            asyncio.run(main({str(tmp_path / "child.txt")!r}))
            aiocop.stop_recording()
            os._exit(0)
        os.waitpid(pid, 0)
        aiocop.stop_recording()
        print(pid)
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    child_pid = int(result.stdout)
    files = sorted(tmp_path.glob("worker-*.bin"))
    assert len(files) == 2
    child = aiocop.read_trace(tmp_path / f"worker-{child_pid}.bin")
    [parent_file] = [f for f in files if f.name != f"worker-{child_pid}.bin"]
    parent = aiocop.read_trace(parent_file)

    assert child["header"]["pid"] == child_pid != parent["header"]["pid"]
    child_args = {e["args"].split(",")[0] for s in child["slices"] for e in s["events"]}
    parent_args = {e["args"].split(",")[0] for s in parent["slices"] for e in s["events"]}
    assert str(tmp_path / "child.txt") in child_args and str(tmp_path / "parent.txt") not in child_args
    assert str(tmp_path / "parent.txt") in parent_args and str(tmp_path / "child.txt") not in parent_args


def test_unwritable_path_raises_a_clear_error_and_records_nothing(tmp_path):
    missing_dir = tmp_path / "no-such-dir" / "trace.bin"
    result = run_python(
        textwrap.dedent(
            f"""
            import aiocop
            try:
                aiocop.start_recording({str(missing_dir)!r})
            except OSError as error:
                print(error)
            print(aiocop.is_recording())
            """
        )
    )
    assert result.returncode == 0, result.stderr
    message, recording = result.stdout.splitlines()
    assert str(missing_dir) in message and "No such file or directory" in message
    assert recording == "False"


def test_a_full_device_at_start_raises_a_clear_error():
    result = run_python(
        textwrap.dedent(
            """
            import aiocop
            try:
                aiocop.start_recording("/dev/full")
            except OSError as error:
                print(error)
            print(aiocop.is_recording())
            """
        )
    )
    assert result.returncode == 0, result.stderr
    message, recording = result.stdout.splitlines()
    assert "/dev/full" in message and "No space left on device" in message
    assert recording == "False"


def test_disk_full_later_stops_recording_logs_once_and_the_app_goes_on(tmp_path):
    # RLIMIT_FSIZE makes writes past 64 KiB fail, as a full disk would.
    trace = tmp_path / "full.bin"
    script = WORKLOAD + textwrap.dedent(
        f"""
        import logging, resource, signal
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        aiocop.start_recording({str(trace)!r}, flush_interval_s=0.02)
        async def busy():
            aiocop.activate()
            for _ in range(60000):
                os.stat(".")
                await asyncio.sleep(0)
        asyncio.run(busy())
        time.sleep(0.1)
        print("app finished", aiocop.is_recording())
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "app finished False"
    assert result.stderr.count(f"aiocop stopped recording to '{trace}'") == 1, result.stderr
    read = aiocop.read_trace(trace)
    assert read["cut_short"] is True and len(read["slices"]) > 0


def test_a_stalled_writer_drops_and_counts_slices_without_blocking_the_loop(tmp_path):
    fifo = tmp_path / "stalled.fifo"
    os.mkfifo(fifo)
    script = textwrap.dedent(
        f"""
        import asyncio, json, os, time, aiocop
        async def main():
            aiocop.activate()
            await asyncio.sleep(0)
            started = time.perf_counter()
            for _ in range(20000):
                os.stat(".")
                await asyncio.sleep(0)
            return time.perf_counter() - started
        aiocop.start_recording({str(fifo)!r}, flush_interval_s=0.01, max_buffered_slices=500)
        elapsed = asyncio.run(main())
        print(json.dumps({{"elapsed": elapsed}}), flush=True)
        print(json.dumps(aiocop.stop_recording()), flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    # Open the reading end but do not read: the pipe fills and the writer stalls.
    reader = os.open(fifo, os.O_RDONLY)
    first = json.loads(process.stdout.readline())
    assert first["elapsed"] < 10, "the loop must not wait for the writer"
    # Now drain the pipe so the writer can finish, keeping what it wrote.
    data = bytearray()
    while chunk := os.read(reader, 1 << 16):
        data += chunk
    os.close(reader)
    summary = json.loads(process.stdout.readline())
    assert process.wait(timeout=30) == 0
    assert summary["dropped"] > 0
    saved = tmp_path / "drained.bin"
    saved.write_bytes(bytes(data))
    read = aiocop.read_trace(saved)
    assert read["dropped"] == summary["dropped"]
    assert len(read["slices"]) + read["dropped"] >= 20000


def test_start_recording_runs_no_subprocess(tmp_path):
    # platform.platform() would run `uname -p`: a blocking call on the loop
    # of an application that starts recording from a coroutine.
    script = textwrap.dedent(
        f"""
        import sys, aiocop
        started = []
        sys.addaudithook(lambda event, args: started.append(args) if event == "subprocess.Popen" else None)
        aiocop.start_recording({str(tmp_path / "t.bin")!r})
        aiocop.stop_recording()
        print(started)
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_task_taking_the_place_of_one_that_ended_is_named_by_its_own_coroutine(tmp_path):
    # The recorder remembers the tasks of the thread by address, checked
    # through a weak reference: a new task allocated where the last one was
    # freed (CPython reuses the memory at once) must not inherit its name.
    # Each task is started by the done callback of the one before, so no
    # other task runs between them.
    trace = tmp_path / "reuse.bin"
    script = textwrap.dedent(
        f"""
        import asyncio, aiocop
        async def first():
            for _ in range(3):
                await asyncio.sleep(0)
        async def second():
            for _ in range(3):
                await asyncio.sleep(0)
        async def main():
            aiocop.activate()
            all_done = asyncio.get_running_loop().create_future()
            def start(n):
                if n == 200:
                    return all_done.set_result(None)
                task = asyncio.get_running_loop().create_task(first() if n % 2 else second())
                task.add_done_callback(lambda _: start(n + 1))
            start(0)
            await all_done
        aiocop.start_recording({str(trace)!r})
        asyncio.run(main())
        aiocop.stop_recording()
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    names = [s["what"] for s in aiocop.read_trace(trace)["slices"] if s["what"] in ("first", "second")]
    # Each task runs 4 steps (3 yields, then the return), alternating.
    assert names == [name for n in range(200) for name in ["first" if n % 2 else "second"] * 4]


def test_interleaved_tasks_are_each_named_by_their_own_coroutine(tmp_path):
    # A server's tasks take steps in turn: the recorder knows each task of
    # its thread by address (with a small cache in front), forgets dead
    # tasks when it holds 16,384, and all of them if they are all alive.
    # Waves of thousands of concurrent tasks of two kinds, with different
    # step counts, so that any task named after another changes the counts.
    trace = tmp_path / "interleaved.bin"
    script = textwrap.dedent(
        f"""
        import asyncio, aiocop
        async def short():
            for _ in range(2):
                await asyncio.sleep(0)
        async def long():
            for _ in range(4):
                await asyncio.sleep(0)
        async def main():
            aiocop.activate()
            for wave in (5_000, 5_000, 5_000, 17_000):
                await asyncio.gather(*(short() if n % 2 else long() for n in range(wave)))
        aiocop.start_recording({str(trace)!r}, flush_interval_s=60)
        asyncio.run(main())
        print(__import__("json").dumps(aiocop.stop_recording()))
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dropped"] == 0
    slices = [s for s in aiocop.read_trace(trace)["slices"] if s["what"] in ("short", "long")]
    tasks_of_each_kind = (5_000 + 5_000 + 5_000 + 17_000) // 2
    # Each task runs its yields and then the step that returns.
    names = [s["what"] for s in slices]
    assert names.count("short") == tasks_of_each_kind * 3
    assert names.count("long") == tasks_of_each_kind * 5
    # And each step carries its own task's name, forgotten tasks or not.
    steps_of_task = Counter((s["task"], s["what"]) for s in slices)
    assert len(steps_of_task) == 2 * tasks_of_each_kind
    assert all(
        name.startswith("Task-") and steps == (3 if what == "short" else 5)
        for (name, what), steps in steps_of_task.items()
    )


def test_plain_callbacks_are_named_by_their_code_and_have_no_task(tmp_path):
    # Callbacks that are not task steps (a protocol's methods, call_soon,
    # call_later) are named by what they run, cached by code object: two
    # methods of one class, a function, a lambda, and a functools.partial by
    # the function it calls.
    trace = tmp_path / "callbacks.bin"
    script = textwrap.dedent(
        f"""
        import asyncio, functools, aiocop
        def ping(n):
            pass
        class Protocol:
            def first(self):
                pass
            def second(self):
                pass
        async def main():
            aiocop.activate()
            loop = asyncio.get_running_loop()
            protocol = Protocol()
            for n in range(50):
                loop.call_soon(protocol.first)
                loop.call_soon(protocol.second)
                loop.call_soon(ping, n)
                loop.call_soon(lambda: None)
                loop.call_soon(functools.partial(ping, n))
                await asyncio.sleep(0)
        aiocop.start_recording({str(trace)!r})
        asyncio.run(main())
        aiocop.stop_recording()
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    slices = aiocop.read_trace(trace)["slices"]
    names = Counter(s["what"] for s in slices if s["task"] is None)
    assert names["Protocol.first"] == names["Protocol.second"] == 50
    assert names["ping"] == 100, "called directly, and through the partial"
    assert names["main.<locals>.<lambda>"] == 50
    # The task's 50 steps after the one that called activate().
    assert Counter(s["what"] for s in slices if s["task"] is not None)["main"] == 50


def test_a_handle_that_cancels_itself_while_running_is_named_by_its_callback(tmp_path):
    # Twisted's timers under daphne cancel their own handle while it runs,
    # which sets the handle's callback to None: what ran is read before the
    # callback runs, not after (1,516 slices were named `NoneType`).
    trace = tmp_path / "cancels.bin"
    script = textwrap.dedent(
        f"""
        import asyncio, aiocop
        handles = []
        def fire():
            handles[-1].cancel()
        async def main():
            aiocop.activate()
            loop = asyncio.get_running_loop()
            for _ in range(20):
                handles.append(loop.call_later(0, fire))
                await asyncio.sleep(0.001)
        aiocop.start_recording({str(trace)!r})
        asyncio.run(main())
        aiocop.stop_recording()
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    names = Counter(s["what"] for s in aiocop.read_trace(trace)["slices"])
    assert names["fire"] == 20, names
    assert "NoneType" not in names, names


def test_slices_with_events_keep_their_details_in_a_flush_of_several_chunks(tmp_path):
    # Details (events, task names) are buffered apart from the slices and
    # matched back in order; a flush of more slices than a chunk holds
    # (65,536) splits them over chunks.
    trace = tmp_path / "many.bin"
    script = textwrap.dedent(
        f"""
        import asyncio, os, aiocop
        async def worker():
            for n in range(70_000):
                if n % 1000 == 999:
                    os.stat(".")
                await asyncio.sleep(0)
        async def main():
            aiocop.activate()
            await asyncio.create_task(worker(), name="many")
        aiocop.start_recording({str(trace)!r}, flush_interval_s=60)
        asyncio.run(main())
        print(__import__("json").dumps(aiocop.stop_recording()))
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["chunks"] >= 2 and summary["dropped"] == 0
    worker = [s for s in aiocop.read_trace(trace)["slices"] if s["what"] == "worker"]
    with_events = [n for n, s in enumerate(worker) if s["events"]]
    assert with_events == list(range(999, 70_000, 1000))
    assert all(worker[n]["task"] == "many" and worker[n]["events"][0]["event"] == "os.stat" for n in with_events)
