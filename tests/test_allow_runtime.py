"""The allow-list at run time (issue 21 item 6) and from a recording (item 5).

``aiocop.allow`` and ``python -m aiocop record --allowlist``: an allowed
event is still reported (marked ``allowed_by``) and recorded (marked in the
trace, counted by the analyzer), and ``raise_on_violations`` ignores it.
``aiocop-analyze allowlist`` turns a recording into a ``[tool.aiocop]``
block that, loaded, allows every event the recording saw.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import aiocop
import pytest
from aiocop.core.allowing import allowlist_in_force, clear_allowlist, use_allowlist
from aiocop.core.allowlist import AllowListError, load_allowlist, parse_allowlist
from conftest import analyze, report_json, run_monitored


@pytest.fixture(autouse=True)
def no_allowlist_left():
    clear_allowlist()
    yield
    clear_allowlist()


async def sleep_50ms():
    time.sleep(0.05)


async def read_a_file():
    with open(__file__, "rb") as source:
        source.read(1)
    time.sleep(0.05)


def test_an_allowed_call_is_reported_marked_and_not_raised(slow_tasks):
    entry = aiocop.allow(f"{__name__}:sleep_50ms", events=["time.*"], reason="the test's own sleep")
    with aiocop.raise_on_violations():
        run_monitored(sleep_50ms)  # raises HighSeverityBlockingIoException if not allowed
    [(event, info)] = slow_tasks.blocking_named("time.sleep")
    assert info["allowed_by"] == f"{__name__}:sleep_50ms"
    assert event.severity_level == "high", "allowed events are counted, never hidden"
    assert allowlist_in_force().fired[entry] == 1
    assert allowlist_in_force().stale() == []


def test_an_entry_allows_only_its_events(slow_tasks):
    aiocop.allow(f"{__name__}:sleep_50ms", events=["open"])
    with aiocop.raise_on_violations(), pytest.raises(aiocop.HighSeverityBlockingIoException):
        run_monitored(sleep_50ms)
    [(_, info)] = slow_tasks.blocking_named("time.sleep")
    assert "allowed_by" not in info, "without an allow-list entry the dict is aiocop 1.2.1's"


def test_a_module_entry_allows_any_function_of_it_and_only_allowed_events_are_spared(slow_tasks):
    aiocop.allow(f"{__name__}.*", events=["open"])
    with aiocop.raise_on_violations(), pytest.raises(aiocop.HighSeverityBlockingIoException):
        run_monitored(read_a_file)  # the sleep after the open is not allowed: still raised
    [(_, opened)] = slow_tasks.blocking_named("open")
    [(_, slept)] = slow_tasks.blocking_named("time.sleep")
    assert opened["allowed_by"] == f"{__name__}.*"
    assert "allowed_by" not in slept


def test_entries_that_allowed_nothing_are_stale_and_counts_survive_a_new_entry(slow_tasks):
    used = aiocop.allow(f"{__name__}:sleep_50ms")
    run_monitored(sleep_50ms)
    unused = aiocop.allow("nowhere.module:function")
    run_monitored(sleep_50ms)
    in_force = allowlist_in_force()
    assert in_force.fired == {used: 2, unused: 0}
    assert in_force.stale() == [unused]


def test_a_file_list_can_be_put_in_force(slow_tasks, tmp_path):
    (tmp_path / "aiocop.toml").write_text(f'allow = [{{ id = "{__name__}:sleep_50ms", reason = "file" }}]\n')
    use_allowlist(load_allowlist(tmp_path))
    with aiocop.raise_on_violations():
        run_monitored(sleep_50ms)
    assert [entry.reason for entry in allowlist_in_force().entries] == ["file"]


def test_a_bad_entry_is_refused_and_nothing_changes():
    aiocop.allow("good:entry")
    with pytest.raises(AllowListError, match=r"^aiocop\.allow\(\): id 'no identity' is not an identity"):
        aiocop.allow("no identity")
    with pytest.raises(ValueError, match="events must be a list"):
        aiocop.allow("m:f", events="open")  # type: ignore[arg-type]
    assert [entry.identity for entry in allowlist_in_force().entries] == ["good:entry"]


# A program with blocking calls in three functions of its own and one in a
# library module (json's encoder does no I/O, so asyncio's own sleep stands
# in: the call through a library frame is allowed by the app frame above it).
PROGRAM = textwrap.dedent(
    """
    import asyncio, os, socket, sys, time
    import aiocop

    def load_settings():
        with open(__file__) as source:
            return source.read(10)

    async def handler(port):
        load_settings()
        time.sleep(0.06)
        socket.create_connection(("127.0.0.1", port)).close()

    async def main():
        server = socket.create_server(("127.0.0.1", 0))
        aiocop.enable_raise_on_violations()
        await asyncio.sleep(0)
        await handler(server.getsockname()[1])
        server.close()

    asyncio.run(main())
    print("program ran")
    """
)


def record(tmp_path, trace, *options):
    script = tmp_path / "app.py"
    script.write_text(PROGRAM)
    command = [sys.executable, "-m", "aiocop", "record", "-o", str(trace), *options, "--", str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_without_an_allowlist_the_program_fails_on_its_blocking(tmp_path):
    result = record(tmp_path, tmp_path / "t.bin")
    assert result.returncode != 0
    assert "HighSeverityBlockingIoException" in result.stderr


def test_record_allowlist_spares_the_program_and_the_report_counts_what_was_allowed(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.aiocop]\nallow = [{ id = "__main__:handler", reason = "legacy" }]\n')
    trace = tmp_path / "t.bin"
    result = record(tmp_path, trace, "--allowlist", str(project))
    assert (result.returncode, result.stdout) == (0, "program ran\n"), result.stderr
    totals = report_json(str(trace))["totals"]
    allowed = totals["allowed_events"]
    # The handler's open, sleep, connect and the imports under them; not main's own bind.
    assert 4 <= allowed < totals["events"], totals
    assert totals["allowed_by"] == {"__main__:handler": allowed}
    text = analyze(str(trace)).stdout
    assert f"Allowed by an allow-list: {allowed} of the blocking events: __main__:handler {allowed}\n" in text


def test_a_bad_allowlist_is_one_line_naming_the_option_the_file_and_the_entry(tmp_path):
    (tmp_path / "aiocop.toml").write_text('allow = ["fine.*", "shop/views.py:12"]\n')
    trace = tmp_path / "t.bin"
    result = record(tmp_path, trace, "--allowlist", str(tmp_path / "aiocop.toml"))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("python -m aiocop record: --allowlist cannot be used (")
    assert f"{tmp_path / 'aiocop.toml'}:allow[1]: id 'shop/views.py:12' is not an identity" in line
    assert "program ran" not in result.stdout
    assert not trace.exists()


def test_a_fifo_as_the_allowlist_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "aiocop.toml"
    os.mkfifo(fifo)
    started = time.monotonic()
    result = record(tmp_path, tmp_path / "t.bin", "--allowlist", str(fifo))
    assert time.monotonic() - started < 30, "the program waited on the FIFO"
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"{fifo}: cannot read the allow-list: not a regular file" in line


def test_a_fifo_in_the_environment_warns_once_and_the_program_runs(tmp_path):
    fifo = tmp_path / "allow.toml"
    os.mkfifo(fifo)
    script = tmp_path / "quiet.py"
    script.write_text("import asyncio\nasyncio.run(asyncio.sleep(0.01))\nprint('program ran')\n")
    env = {**os.environ, "AIOCOP_RECORD": str(tmp_path / "t.bin"), "AIOCOP_ALLOWLIST": str(fifo)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert (result.returncode, result.stdout) == (0, "program ran\n"), result.stderr
    assert result.stderr.count("not a regular file") == 1, result.stderr


def test_a_directory_without_an_allowlist_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = record(tmp_path, tmp_path / "t.bin", "--allowlist", str(empty))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "--allowlist names a directory with neither aiocop.toml nor pyproject.toml" in line


def test_allowlist_output_pasted_into_pyproject_allows_every_event_the_recording_saw(tmp_path):
    first = tmp_path / "first.bin"
    failed = record(tmp_path, first)
    assert failed.returncode != 0, "the program fails on its blocking without an allow-list"
    made = analyze("allowlist", str(first))
    assert made.returncode == 0, made.stderr
    assert '{ id = "__main__:handler"' in made.stdout
    assert '{ id = "__main__:load_settings", events = ["open"] }' in made.stdout

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "app"\n\n' + made.stdout)
    parsed = load_allowlist(project)
    identities = {entry.identity for entry in parsed.entries}
    assert {"__main__:main", "__main__:handler", "__main__:load_settings"} <= identities

    second = tmp_path / "second.bin"
    result = record(tmp_path, second, "--allowlist", str(project))
    assert (result.returncode, result.stdout) == (0, "program ran\n"), result.stderr
    totals = report_json(str(second))["totals"]
    assert totals["events"] >= 3
    assert totals["allowed_events"] == totals["events"]


def test_allowlist_help_teaches():
    result = analyze("allowlist", "--help")
    assert result.returncode == 0
    for words in ("[tool.aiocop]", "module:qualname", "innermost frame of your code", "Examples:", "--app-root"):
        assert words in result.stdout, words


def test_allowlist_of_a_missing_trace_is_one_line_and_exit_2(tmp_path):
    result = analyze("allowlist", str(tmp_path / "none.bin"))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "none.bin" in result.stderr


def test_the_json_report_still_parses_with_the_new_totals(tmp_path):
    trace = tmp_path / "t.bin"
    record(tmp_path, trace)
    document = json.loads(analyze("--format", "json", str(trace)).stdout)
    assert document["totals"]["allowed_events"] == 0
    assert document["totals"]["traces_before_allowed"] == 0
    assert parse_allowlist("", "aiocop.toml").entries == ()


def test_allowed_events_past_the_50_kept_in_a_slice_are_counted_too(tmp_path):
    script = tmp_path / "many.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os

            async def scan():
                for _ in range(60):
                    os.stat("/")

            asyncio.run(scan())
            """
        )
    )
    (tmp_path / "aiocop.toml").write_text('allow = ["__main__:scan"]\n')
    trace = tmp_path / "t.bin"
    command = [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--allowlist", str(tmp_path), "--"]
    result = subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    totals = report_json(str(trace))["totals"]
    assert (totals["dropped_events"], totals["allowed_events"]) == (10, 60), totals
    assert totals["allowed_by"] == {"__main__:scan": 50}, "the kept ones by entry"
