"""aiocop's pytest plugin, through real pytest runs (pytester, each in a subprocess of its own).

Each test writes a small test suite, runs pytest on it as a user would
(``pytest --aiocop``), and reads what pytest printed and its exit status;
recordings are read back by the real aiocop-analyze.
"""

import re

import pytest
from conftest import report_json

pytest_plugins = ["pytester"]

# pytest-asyncio reads this in a subprocess run's own ini file.
INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


SLEEPING_TEST = """
import asyncio
import time

import pytest


@pytest.mark.asyncio
async def test_sleeps():
    await asyncio.sleep(0)
    time.sleep(0.05)


@pytest.mark.asyncio
async def test_awaits():
    await asyncio.sleep(0.01)
"""


def test_a_coroutine_that_sleeps_fails_with_the_event_its_stack_and_a_fix(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)

    result = run(pytester, "--aiocop")

    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "aiocop: 1 slice(s) blocked the event loop during the test (--aiocop-fail-on=medium)" in out
    assert "time.sleep(0.05)  [weight 50]" in out
    # The stack from the test's own code, with its identity (module:qualname).
    assert re.search(r"test_sleeping\.py:10 test_sleeping:test_sleeps", out), out
    assert re.search(r"held the loop (\d+\.\d) ms", out)
    assert float(re.search(r"held the loop (\d+\.\d) ms", out).group(1)) >= 50
    assert "fix: use `await asyncio.sleep(...)`" in out
    assert re.search(r"FAIL +test_sleeping\.py::test_sleeps: 1 blocking event\(s\) \(time\.sleep\)", out), out
    assert "test_awaits" not in out.split("aiocop: 1 test(s) blocked the loop")[1]


def test_without_the_option_the_plugin_does_nothing(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)

    run(pytester).assert_outcomes(passed=2)
    run(pytester, "-p", "no:aiocop").assert_outcomes(passed=2)


def test_the_ini_option_turns_it_on(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    pytester.makeini(INI + "aiocop = true\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)

    result.assert_outcomes(passed=1, failed=1)


def test_warn_only_reports_without_failing(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)

    result = run(pytester, "--aiocop", "--aiocop-warn-only", "-rA")

    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "time.sleep(0.05)" in out
    assert "aiocop: 1 test(s) blocked the loop (1 over --aiocop-fail-on)" in out
    assert re.search(r"warn +test_sleeping\.py::test_sleeps", out), out


STAT_TEST = """
import os

import pytest


@pytest.mark.asyncio
async def test_stats(tmp_path):
    os.stat(tmp_path)
"""


def test_fail_on_chooses_what_fails(pytester):
    pytester.makepyfile(test_stat=STAT_TEST)

    # os.stat weighs 1: under the default (medium) it is counted, not failed.
    result = run(pytester, "--aiocop")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ok   test_stat.py::test_stats: 1 blocking event(s) (os.stat)*"])

    run(pytester, "--aiocop", "--aiocop-fail-on=any").assert_outcomes(failed=1)
    run(pytester, "--aiocop", "--aiocop-fail-on=low").assert_outcomes(failed=1)
    run(pytester, "--aiocop", "--aiocop-fail-on=os.*").assert_outcomes(failed=1)
    run(pytester, "--aiocop", "--aiocop-fail-on=time.sleep,socket.*").assert_outcomes(passed=1)


def test_an_unknown_fail_on_value_is_a_usage_error_in_one_line(pytester):
    pytester.makepyfile(test_stat=STAT_TEST)

    result = run(pytester, "--aiocop", "--aiocop-fail-on=severe")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == [
        "ERROR: --aiocop-fail-on='severe': 'severe' names no blocking event aiocop knows"
        " (give a level: low, medium, high; any; or event names such as time.sleep, socket.*, cpu)"
    ], result.stderr.str()


def test_aiocop_skip_leaves_a_test_alone(pytester):
    pytester.makepyfile(
        test_skip="""
        import time
        import pytest

        @pytest.mark.aiocop_skip
        @pytest.mark.asyncio
        async def test_sleeps_on_purpose():
            time.sleep(0.02)
        """
    )

    run(pytester, "--aiocop").assert_outcomes(passed=1)


def test_a_blocking_async_fixture_is_reported_against_the_fixture_and_its_test(pytester):
    pytester.makepyfile(
        test_fixture="""
        import time
        import pytest
        import pytest_asyncio

        @pytest_asyncio.fixture
        async def slow_resource():
            time.sleep(0.02)
            yield 1

        @pytest.mark.asyncio
        async def test_uses_it(slow_resource):
            assert slow_resource == 1
        """
    )

    result = run(pytester, "--aiocop")

    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "ERROR at setup of test_uses_it" in out
    assert "aiocop: 1 slice(s) blocked the event loop during its setup" in out
    assert "the slice in fixture 'slow_resource' held the loop" in out
    assert re.search(r"test_fixture\.py:7 test_fixture:slow_resource", out), out


def test_anyio_tests_are_gated(pytester):
    pytester.makepyfile(
        test_anyio_suite="""
        import time
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_blocks():
            time.sleep(0.02)
        """
    )

    result = run(pytester, "--aiocop")

    result.assert_outcomes(failed=1)
    assert "time.sleep(0.02)" in result.stdout.str()


def test_asyncio_run_in_a_sync_test_and_uvloop_are_gated(pytester):
    pytester.makepyfile(
        test_runs="""
        import asyncio
        import socket
        import time

        import uvloop

        async def blocks():
            time.sleep(0.02)

        def test_asyncio_run():
            asyncio.run(blocks())

        def test_uvloop():
            uvloop.run(blocks())

        def test_no_loop_no_gate():
            time.sleep(0.02)
        """
    )

    result = run(pytester, "--aiocop")

    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(["*FAIL test_runs.py::test_asyncio_run*", "*FAIL test_runs.py::test_uvloop*"])


def test_blocking_on_a_session_scoped_loop_is_the_test_that_did_it(pytester):
    pytester.makepyfile(
        test_shared_loop="""
        import asyncio
        import time
        import pytest

        @pytest.mark.asyncio(loop_scope="session")
        async def test_first():
            await asyncio.sleep(0)

        @pytest.mark.asyncio(loop_scope="session")
        async def test_second():
            time.sleep(0.02)

        @pytest.mark.asyncio(loop_scope="session")
        async def test_third():
            await asyncio.sleep(0)
        """
    )

    result = run(pytester, "--aiocop", "-v")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_first PASSED*", "*test_second FAILED*", "*test_third PASSED*"])


def test_a_background_task_blocking_later_is_the_later_test(pytester):
    pytester.makepyfile(
        test_background="""
        import asyncio
        import time
        import pytest

        started = []

        async def ticks():
            await asyncio.sleep(0.05)
            time.sleep(0.02)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_starts_it():
            started.append(asyncio.get_running_loop().create_task(ticks()))

        @pytest.mark.asyncio(loop_scope="module")
        async def test_while_it_runs():
            await asyncio.sleep(0.2)
        """
    )

    result = run(pytester, "--aiocop", "-v")

    result.stdout.fnmatch_lines(["*test_starts_it PASSED*", "*test_while_it_runs FAILED*"])


def test_a_cpu_slice_over_the_threshold_fails_by_default(pytester):
    pytester.makepyfile(
        test_cpu="""
        import time
        import pytest

        @pytest.mark.asyncio
        async def test_spins():
            end = time.perf_counter() + 0.08
            while time.perf_counter() < end:
                pass
        """
    )

    result = run(pytester, "--aiocop")

    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(r"CPU: the loop ran one callback for \d+\.\d ms without yielding \(threshold 30 ms\)", out), out
    assert "asyncio.to_thread" in out
    run(pytester, "--aiocop", "--aiocop-fail-on=time.sleep").assert_outcomes(passed=1)


def test_a_recording_gives_every_slice_its_test(pytester, tmp_path):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    trace = tmp_path / "run.bin"

    run(pytester, "--aiocop", f"--aiocop-record={trace}").assert_outcomes(passed=1, failed=1)

    report = report_json("--by", "context:test", str(trace))
    keys = {group["key"] for group in report["loop_time"]["groups"]}
    assert {"test_sleeping.py::test_sleeps", "test_sleeping.py::test_awaits"} <= keys, keys
    [blocking] = report["groups"]
    assert blocking["key"] == "test_sleeping.py::test_sleeps"


def test_xdist_workers_write_a_trace_each_covering_every_test(pytester, tmp_path):
    pytester.makepyfile(
        **{
            f"test_part{n}": f"""
            import asyncio
            import time
            import pytest

            @pytest.mark.asyncio
            async def test_a{n}():
                time.sleep(0.02)

            @pytest.mark.asyncio
            async def test_b{n}():
                await asyncio.sleep(0)
            """
            for n in range(3)
        }
    )

    result = run(pytester, "--aiocop", f"--aiocop-record={tmp_path}/run-{{pid}}.bin", "-n", "2")

    result.assert_outcomes(passed=3, failed=3)
    traces = sorted(tmp_path.glob("run-*.bin"))
    assert len(traces) == 2, traces
    report = report_json("--by", "context:test", *map(str, traces))
    keys = {group["key"] for group in report["loop_time"]["groups"]}
    every_test = {f"test_part{n}.py::test_{ab}{n}" for n in range(3) for ab in "ab"}
    assert every_test <= keys, keys
    assert {g["key"] for g in report["groups"]} == {f"test_part{n}.py::test_a{n}" for n in range(3)}
    # The controller's summary counts the workers' tests.
    assert "aiocop: 3 test(s) blocked the loop (3 failed by --aiocop-fail-on)" in result.stdout.str()


def test_an_unwritable_recording_path_is_a_usage_error(pytester, tmp_path):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)

    result = run(pytester, "--aiocop", f"--aiocop-record={tmp_path}/missing/dir/run.bin")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--aiocop-record=" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_an_empty_recording_path_is_a_usage_error_not_a_run_without_recording(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)

    result = run(pytester, "--aiocop", "--aiocop-record=")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == [
        "ERROR: --aiocop-record=: path must be a non-empty string of UTF-8 text without NUL characters, not ''"
    ]


def test_an_ini_switch_that_is_not_a_truth_value_is_a_usage_error_naming_it(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    pytester.makeini(INI + "aiocop = maybe\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == ["ERROR: ini option aiocop: invalid truth value 'maybe' (give true or false)"]


ALLOWING_PYPROJECT = """
[tool.aiocop]
allow = [
    { id = "test_sleeping:test_sleeps", events = ["time.sleep"], reason = "the test sleeps on purpose" },
    "nothing_blocks_here.*",
]
"""


def test_blocking_allowed_by_the_file_passes_and_is_counted_and_a_stale_entry_is_listed(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    pytester.makepyprojecttoml(ALLOWING_PYPROJECT)

    result = run(pytester, "--aiocop")

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    assert "aiocop: 0 test(s) blocked the loop, 1 allowed event(s) in 1 test(s), 1 stale allow-list entry" in out
    assert re.search(r"ok +test_sleeping\.py::test_sleeps: 0 blocking event\(s\), 1 allowed", out), out
    assert re.search(r"stale: 'nothing_blocks_here\.\*' at .*pyproject\.toml:allow\[1\] matched nothing", out), out


def test_stale_fail_fails_the_session_on_a_stale_entry(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    pytester.makepyprojecttoml(ALLOWING_PYPROJECT)

    result = run(pytester, "--aiocop", "--aiocop-stale=fail")

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_an_entry_that_fired_in_one_xdist_worker_is_not_stale(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST, test_other="def test_a(): pass\ndef test_b(): pass\n")
    pytester.makepyprojecttoml('[tool.aiocop]\nallow = ["test_sleeping:test_sleeps"]\n')

    result = run(pytester, "--aiocop", "--aiocop-stale=fail", "-n", "2")

    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    assert "0 stale allow-list entries" in result.stdout.str()


def test_an_event_glob_that_does_not_match_does_not_allow(pytester):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    pytester.makefile(".toml", aiocop='allow = [{ id = "test_sleeping.*", events = ["socket.*"] }]\n')

    run(pytester, "--aiocop").assert_outcomes(passed=1, failed=1)


def test_the_marker_allows_for_its_test_only(pytester):
    pytester.makepyfile(
        test_marked="""
        import time
        import pytest

        async def helper():
            time.sleep(0.02)

        @pytest.mark.aiocop(allow=["test_marked:helper"])
        @pytest.mark.asyncio
        async def test_allowed():
            await helper()

        @pytest.mark.asyncio
        async def test_not_allowed():
            await helper()
        """
    )

    result = run(pytester, "--aiocop", "-v")

    result.stdout.fnmatch_lines(["*test_allowed PASSED*", "*test_not_allowed FAILED*"])


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "pyproject.toml",
            '[tool.aiocop]\nallow = ["views.py:12"]\n',
            "pyproject.toml:allow[0]: id 'views.py:12' is not an identity",
        ),
        ("aiocop.toml", "allow = [ { id = ", "aiocop.toml: not valid TOML"),
        ("pyproject.toml", '[tool.aiocop]\nallow = [{ id = "a:b", event = ["open"] }]\n', "unknown key 'event'"),
    ],
)
def test_a_bad_allow_list_stops_the_session_with_one_line(pytester, file, content, message):
    pytester.makepyfile(test_sleeping=SLEEPING_TEST)
    (pytester.path / file).write_text(content)

    result = run(pytester, "--aiocop")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: ") and message in errors[0], result.stderr.str()
    assert "Traceback" not in result.stdout.str()


def test_a_bad_marker_entry_errors_its_test_in_one_line(pytester):
    pytester.makepyfile(
        test_bad_marker="""
        import pytest

        @pytest.mark.aiocop(allow=["not an identity"])
        def test_marked():
            pass

        def test_other():
            pass
        """
    )

    result = run(pytester, "--aiocop")

    result.assert_outcomes(errors=1, passed=1)
    out = result.stdout.str()
    assert "test_marked @pytest.mark.aiocop:allow[0]: id 'not an identity' is not an identity" in out
    assert "During handling" not in out
