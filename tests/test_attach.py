"""``python -m aiocop attach PID``, end to end: a server started without aiocop, recorded for a few seconds
through ``sys.remote_exec`` (3.14+), read back by the real analyzer; and the refusals, one line each, exit 2.

On 3.11 to 3.13 only the command's own refusal runs here; the rest runs on 3.14 and 3.15 (`make test`
runs those inside the Debian sid root, tools/sid-root.sh), where none of it may be skipped.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import aiocop
import pytest
from conftest import report_json
from test_web_loop_time import PATHS, WEBAPP, client, free_port, line_of, wait_for_server

ATTACH = [sys.executable, "-m", "aiocop", "attach"]
on_3_14_and_newer = pytest.mark.skipif(sys.version_info < (3, 14), reason="sys.remote_exec is new in 3.14")


def attach(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*ATTACH, *args], capture_output=True, text=True, timeout=timeout)


def start(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process that never imported aiocop, once it printed its first line ("ready")."""
    environment = {k: v for k, v in (env or os.environ).items() if not k.startswith("AIOCOP_")}
    process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def serve(tmp_path: Path, loop: str) -> tuple[subprocess.Popen, int]:
    (tmp_path / "webapp.py").write_text(WEBAPP)
    port = free_port()
    runner = (
        "import asyncio, uvicorn\n"
        f"config = uvicorn.Config('webapp:app', port={port}, log_level='warning', loop={loop!r})\n"
        "print('ready', flush=True)\n"
        "uvicorn.Server(config).run()\n"
    )
    server = start([sys.executable, "-c", runner], tmp_path)
    asyncio.run(wait_for_server(port, timeout_s=10))
    return server, port


def load(port: int, seconds: float) -> dict[str, int]:
    """Four keep-alive connections asking for each route in turn, from a thread of the test."""
    counts: dict[str, int] = {}

    async def drive() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client(port, c, deadline, counts) for c in range(4)))

    thread = threading.Thread(target=asyncio.run, args=(drive(),))
    thread.start()
    thread.join()
    return counts


def serves_the_clean_route(port: int, requests: int = 20) -> None:
    for _ in range(requests):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/clean", timeout=5) as answer:
            assert answer.read() == b"ok"


# A pure step in the target: a Handle of a function that does nothing, run 2,000 times, the best of 50 short
# rounds, so that one round runs unpreempted on a loaded machine (the HTTP round trip was too noisy to compare).
# Before attaching that is asyncio's own Handle._run; after detaching it must be again (aiocop's, unmonitored,
# cost twice as much).
PURE_STEP = """
import asyncio, asyncio.events, time
loop = asyncio.new_event_loop()  # not run, nor monitored: only the handle's reference
handle = asyncio.events.Handle(lambda: None, (), loop)
rounds = []
for _ in range(50):
    started = time.perf_counter_ns()
    for _ in range(2_000):
        handle._run()
    rounds.append((time.perf_counter_ns() - started) / 2_000)
loop.close()
state["pure_step_ns"] = min(rounds)
"""


def in_target_state(pid: int, tmp_path: Path) -> dict:
    """What aiocop's state is inside the target, asked through sys.remote_exec as attach does."""
    answer = tmp_path / "state.json"
    answer.unlink(missing_ok=True)
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            state = {{"imported": "aiocop" in sys.modules}}
            {PURE_STEP.strip().replace(chr(10), chr(10) + " " * 12)}
            if state["imported"]:
                import aiocop, gc
                from aiocop import _native
                uvloop = sys.modules.get("uvloop")
                loops = [o for o in gc.get_objects() if uvloop and isinstance(o, uvloop.Loop)]
                state.update(
                    monitoring=aiocop.is_monitoring_active(),
                    recording=_native.is_recording(),
                    patched_uvloop_methods=sorted(n for loop in loops for n in vars(loop) if n.startswith("call_")),
                    watchdog="aiocop-cpu-sampler" in [t.name for t in __import__("threading").enumerate()],
                )
            with open({str(answer) + ".tmp"!r}, "w") as f:
                json.dump(state, f)
            import os
            os.replace({str(answer) + ".tmp"!r}, {str(answer)!r})
            """
        )
    )
    sys.remote_exec(pid, str(probe))  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not answer.exists():
        assert time.monotonic() < deadline, "the target did not run the probe"
        time.sleep(0.02)
    return json.loads(answer.read_text())


def assert_routes_ranked(trace: Path, app: str) -> None:
    """The report of the attached recording ranks the routes as one recorded from the start does."""
    report = report_json("--by", "app-frame", str(trace))
    groups = report["loop_time"]["groups"]
    # Pure Python: sampled, never `native` (its samples wait for no C call).
    assert groups[0]["key"].endswith(":crunch") and groups[0]["via"] == ["samples"], groups[:3]
    by_key = {g["key"]: g for g in groups}
    for marker, function in [("LINE_SQLITE", "db"), ("LINE_OPEN", "read_file")]:
        group = by_key[f"{app}:{line_of(marker)}:{function}"]
        assert group["via"] == ["events"] and group["io_ms"] > 0, group
    assert f"{app}:{line_of('LINE_SQLITE')}:db" in [g["key"] for g in report["groups"]]


@on_3_14_and_newer
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_attach_records_a_running_server_then_leaves_it_serving_with_aiocop_inert(tmp_path, loop):
    server, port = serve(tmp_path, loop)
    try:
        before = in_target_state(server.pid, tmp_path)
        assert before.pop("imported") is False
        serves_the_clean_route(port)
        trace = tmp_path / "t.bin"
        attaching = subprocess.Popen(
            [*ATTACH, str(server.pid), "-o", str(trace), "--duration", "4", "--label", "attached"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        counts = load(port, 3.0)
        # Attaching again while it records changes nothing and says why.
        again = attach(str(server.pid), "-o", str(tmp_path / "other.bin"), "--duration", "1")
        _, stderr = attaching.communicate(timeout=60)
        assert attaching.returncode == 0, stderr
        assert "stopped;" in stderr and str(trace) in stderr
        assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
        assert "already recording to" in again.stderr and not (tmp_path / "other.bin").exists()

        assert all(counts.get(path, 0) >= 10 for path in PATHS), counts
        recorded = aiocop.read_trace(trace)
        assert recorded["header"]["label"] == "attached"
        assert recorded["footer"] is not None, "the trace was closed"
        assert_routes_ranked(trace, str(tmp_path / "webapp.py"))

        # Detached: the server keeps serving, with monitoring off and uvloop's own methods back.
        after = in_target_state(server.pid, tmp_path)
        after_step_ns = after.pop("pure_step_ns")
        assert after == {
            "imported": True,
            "monitoring": False,
            "recording": False,
            "patched_uvloop_methods": [],
            "watchdog": False,
        }
        serves_the_clean_route(port)
        assert after_step_ns < 2 * before["pure_step_ns"], (before, after_step_ns)
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGINT)
        stop(server)


THREAD_LOOP = textwrap.dedent(
    """
    import asyncio, os, threading, time

    async def main():
        while True:
            os.stat(".")          # LINE_STAT
            # 20 ms: off the main thread, samples are taken with the GIL, which the loop's
            # thread gives up only every switch interval (5 ms; recorder/src/sampler.rs),
            # so a 5 ms slice gets a sample only by luck.
            end = time.perf_counter() + 0.020
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0.005)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="loop-thread", daemon=True)
    thread.start()
    print("ready", flush=True)
    # sys.remote_exec runs attach's scripts on the main thread: it must run Python now and then.
    while thread.is_alive():
        time.sleep(0.1)
    """
)


@on_3_14_and_newer
def test_attach_monitors_a_loop_already_running_on_another_thread(tmp_path):
    (tmp_path / "loop.py").write_text(THREAD_LOOP)
    target = start([sys.executable, "loop.py"], tmp_path)
    try:
        trace = tmp_path / "t.bin"
        result = attach(str(target.pid), "-o", str(trace), "--duration", "2")
        assert result.returncode == 0, result.stderr
        recorded = aiocop.read_trace(trace)
        # One thread's loop, the one started before aiocop came: its task's steps, from the next one on.
        assert len({s["thread"] for s in recorded["slices"]}) == 1
        assert len(recorded["slices"]) > 50
        assert "main" in {s["what"] for s in recorded["slices"]}
        stats = [e for s in recorded["slices"] for e in s["events"] if e["event"].startswith("os.stat")]
        assert stats, "the blocking call on the loop's thread was recorded"
        assert any(s["samples"] for s in recorded["slices"]), "20 ms slices get samples"
        # Attached again after detaching: recorded the same way, samples too.
        again = attach(str(target.pid), "-o", str(tmp_path / "again.bin"), "--duration", "1")
        assert again.returncode == 0, again.stderr
        recorded = aiocop.read_trace(tmp_path / "again.bin")
        assert len(recorded["slices"]) > 20 and any(s["samples"] for s in recorded["slices"])
        assert target.poll() is None
    finally:
        stop(target)


def as_from_a_terminal() -> None:
    """Ctrl-C in a terminal reaches a foreground process whose SIGINT and SIGHUP are not ignored. The
    test runner may run with them ignored (SIGINT in a background job of a non-interactive shell, SIGHUP
    under nohup), which its children inherit and Python keeps: such an attach rightly ignores them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@on_3_14_and_newer
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_ctrl_c_or_sigterm_stops_the_recording_early_with_the_trace_complete(tmp_path, stop_signal):
    (tmp_path / "loop.py").write_text(THREAD_LOOP)
    target = start([sys.executable, "loop.py"], tmp_path)
    try:
        trace = tmp_path / "t.bin"
        attaching = subprocess.Popen(
            [*ATTACH, str(target.pid), "-o", str(trace), "--duration", "60"],
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=as_from_a_terminal,
        )
        assert attaching.stderr is not None and "recording" in attaching.stderr.readline()
        time.sleep(1)
        started = time.monotonic()
        attaching.send_signal(stop_signal)
        assert attaching.wait(timeout=30) == 0, attaching.stderr.read()
        assert time.monotonic() - started < 10
        assert "stopped;" in attaching.stderr.read()
        recorded = aiocop.read_trace(trace)
        assert recorded["footer"] is not None and len(recorded["slices"]) > 20
        assert in_target_state(target.pid, tmp_path)["recording"] is False
        assert target.poll() is None
    finally:
        stop(target)


@on_3_14_and_newer
def test_a_recording_whose_attach_command_was_killed_stops_by_itself(tmp_path):
    (tmp_path / "loop.py").write_text(THREAD_LOOP)
    target = start([sys.executable, "loop.py"], tmp_path)
    try:
        trace = tmp_path / "t.bin"
        attaching = subprocess.Popen(
            [*ATTACH, str(target.pid), "-o", str(trace), "--duration", "1", "--start-timeout", "2"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert attaching.stderr is not None and "recording" in attaching.stderr.readline()
        attaching.kill()  # no stop script will come
        attaching.wait(timeout=10)
        assert in_target_state(target.pid, tmp_path)["recording"] is True
        # The target stops by itself --duration + --start-timeout + 5 s after the start (8 s here).
        deadline = time.monotonic() + 30
        while in_target_state(target.pid, tmp_path)["recording"]:
            assert time.monotonic() < deadline, "the recording ran on after its attach command died"
            time.sleep(0.5)
        state = in_target_state(target.pid, tmp_path)
        assert state["monitoring"] is False and state["watchdog"] is False, state
        recorded = aiocop.read_trace(trace)
        assert recorded["footer"] is not None and len(recorded["slices"]) > 20
        # Attached again, it records and stops as before.
        again = attach(str(target.pid), "-o", str(tmp_path / "again.bin"), "--duration", "1")
        assert again.returncode == 0, again.stderr
        assert aiocop.read_trace(tmp_path / "again.bin")["footer"] is not None
        assert target.poll() is None
    finally:
        stop(target)


@on_3_14_and_newer
def test_a_target_that_exits_during_the_recording_leaves_a_complete_trace(tmp_path):
    (tmp_path / "brief.py").write_text(THREAD_LOOP.replace("while thread.is_alive():", "for _ in range(20):"))
    target = start([sys.executable, "brief.py"], tmp_path)
    try:
        trace = tmp_path / "t.bin"
        result = attach(str(target.pid), "-o", str(trace), "--duration", "30")
        assert result.returncode == 0, result.stderr
        assert f"{target.pid} exited during the recording" in result.stderr
        recorded = aiocop.read_trace(trace)
        assert recorded["footer"] is not None and recorded["slices"]
    finally:
        stop(target)


# Runs Python every 50 ms on its main thread, where sys.remote_exec runs scripts.
SLEEPER = "import time; print('ready', flush=True); [time.sleep(0.05) for _ in range(1200)]"


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m aiocop attach: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@on_3_14_and_newer
def test_attach_to_a_pid_that_does_not_exist_is_refused(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert_refused(attach(str(gone.pid), "-o", str(tmp_path / "t.bin")), f"no running process with pid {gone.pid}")


@on_3_14_and_newer
def test_attach_to_a_process_that_is_not_python_is_refused(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.1)
        assert_refused(attach(str(sleeper.pid), "-o", str(tmp_path / "t.bin")), "is not a Python process")
    finally:
        stop(sleeper)


@on_3_14_and_newer
def test_attach_to_a_python_3_13_process_is_refused_pointing_at_record(tmp_path):
    python313 = shutil.which("python3.13")
    assert python313, "python3.13 is in the test environment (tools/sid-root.sh installs it in the sid root)"
    target = start([python313, "-c", SLEEPER], tmp_path)
    try:
        result = attach(str(target.pid), "-o", str(tmp_path / "t.bin"))
        assert_refused(result, f"process {target.pid} runs Python 3.13", "python -m aiocop record")
    finally:
        stop(target)


@on_3_14_and_newer
@pytest.mark.parametrize(
    "how", [["-X", "disable_remote_debug"], ["-Xdisable_remote_debug"], "PYTHON_DISABLE_REMOTE_DEBUG"]
)
def test_attach_to_a_process_with_remote_debugging_disabled_is_refused(tmp_path, how):
    env = dict(os.environ)
    options = how if isinstance(how, list) else []
    if isinstance(how, str):
        env[how] = "1"
    target = start([sys.executable, *options, "-c", SLEEPER], tmp_path, env)
    try:
        result = attach(str(target.pid), "-o", str(tmp_path / "t.bin"))
        assert_refused(result, "disabled remote debugging")
        assert not (tmp_path / "t.bin").exists()
    finally:
        stop(target)


@on_3_14_and_newer
@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run attach as another user")
def test_attach_without_permission_to_the_target_is_refused(tmp_path):
    setpriv = shutil.which("setpriv")
    assert setpriv, "util-linux's setpriv (essential in Debian)"
    target = start([sys.executable, "-c", SLEEPER], tmp_path)
    try:
        as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        result = subprocess.run(
            [*as_nobody, *ATTACH, str(target.pid), "-o", "/tmp/never.bin"], capture_output=True, text=True, timeout=60
        )
        assert_refused(result, f"no permission to attach to process {target.pid}")
    finally:
        stop(target)


@on_3_14_and_newer
def test_a_target_that_cannot_import_aiocop_is_refused_naming_aiocop_path(tmp_path):
    # A Python with no site-packages (-S -I) cannot import the aiocop installed beside this one.
    target = start([sys.executable, "-S", "-I", "-c", SLEEPER], tmp_path)
    try:
        result = attach(str(target.pid), "-o", str(tmp_path / "t.bin"), "--start-timeout", "5")
        assert_refused(result, "cannot import aiocop", "--aiocop-path")
    finally:
        stop(target)


@on_3_14_and_newer
def test_aiocop_path_lets_a_target_without_aiocop_on_its_path_record(tmp_path):
    loop = "import asyncio; print('ready', flush=True)\nasync def main():\n    while True: await asyncio.sleep(0.01)\n"
    (tmp_path / "isolated.py").write_text(loop + "asyncio.run(main())\n")
    target = start([sys.executable, "-S", "-I", "isolated.py"], tmp_path)
    try:
        site_packages = str(Path(aiocop.__file__).parent.parent)
        trace = tmp_path / "t.bin"
        result = attach(str(target.pid), "-o", str(trace), "--duration", "1", "--aiocop-path", site_packages)
        assert result.returncode == 0, result.stderr
        assert len(aiocop.read_trace(trace)["slices"]) > 20
    finally:
        stop(target)


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="on 3.11 to 3.13 only: attach runs from 3.14")
def test_before_3_14_attach_says_it_needs_3_14_and_points_at_record(tmp_path):
    target = start([sys.executable, "-c", SLEEPER], tmp_path)
    try:
        result = attach(str(target.pid), "-o", str(tmp_path / "t.bin"))
        assert_refused(result, "needs Python 3.14 or newer", "python -m aiocop record")
    finally:
        stop(target)


@pytest.mark.parametrize(("option", "value"), [("--duration", "nan"), ("--duration", "-1"), ("--start-timeout", "inf")])
def test_a_duration_or_timeout_out_of_range_is_refused_before_anything_is_tried(tmp_path, option, value):
    # nan and inf once reached the target's script (a NameError there) and
    # 1e300 its self-stop timer (an OverflowError in the target's thread).
    result = attach(str(os.getpid()), "-o", str(tmp_path / "t.bin"), f"{option}={value}")
    assert_refused(result, f"{option} must be a number of seconds, more than 0 and at most 604800, not {value}")
    assert not (tmp_path / "t.bin").exists()
