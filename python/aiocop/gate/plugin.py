"""The active half of aiocop's pytest plugin: a pytest plugin object, registered by ``aiocop.pytest_plugin``.

It sets up monitoring of every loop, tells the collector which test (phase,
fixture) is running, turns a phase's failing slices into its failure (or a
report section with ``--aiocop-warn-only``), and writes the summary:
tests with blocking, allowed blocking, stale allow-list entries. Under
pytest-xdist each worker gates its own tests; the per-test numbers travel
to the controller on the reports (``report.aiocop``) and the allow-list
entries that fired in ``workeroutput``, so the controller's summary and its
stale entries cover the whole run.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import pytest

from aiocop.core import autorecord, callbacks, recorder, settings
from aiocop.core.allowlist import AllowEntry, AllowList, AllowListError, entries_from_items, load_allowlist
from aiocop.gate import messages
from aiocop.gate.collector import Collector, TestBlocking, Where
from aiocop.gate.policy import DEFAULT_FAIL_ON, FailOn, parse_fail_on
from aiocop.pytest_plugin import options_of

logger = logging.getLogger("aiocop")

_WORKER_FIRED = "aiocop_fired"


class Gate:
    """Monitors the session's loops and fails the tests that block them."""

    def __init__(
        self,
        config: pytest.Config,
        fail_on: FailOn,
        allowlist: AllowList,
        warn_only: bool,
        stale_fails: bool,
        record: str | None,
        threshold_ms: float,
    ) -> None:
        self.config = config
        self.fail_on = fail_on
        self.allowlist = allowlist
        self.warn_only = warn_only
        self.stale_fails = stale_fails
        self.record = record
        self.threshold_ms = threshold_ms
        self.collector = Collector(fail_on, allowlist)
        #: nodeid -> the numbers its reports carried (from every worker, under xdist).
        self.tests: dict[str, dict[str, Any]] = {}
        #: Allow-list entries (by source) that fired in pytest-xdist's workers.
        self.fired_in_workers: set[str] = set()
        self.recorded_path: str | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Gate:
        """The gate the options ask for; a bad option or allow-list is a usage error (exit 4), in one line."""
        options = options_of(config)
        try:
            fail_on = parse_fail_on(options["fail_on"] or DEFAULT_FAIL_ON)
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
        threshold_ms = options["threshold_ms"] if options["threshold_ms"] is not None else 30.0
        if not 0 < threshold_ms <= 3_600_000:
            raise pytest.UsageError(f"--aiocop-threshold-ms={threshold_ms:g}: must be more than 0 and at most 3600000")
        return cls(
            config,
            fail_on,
            _load_allowlist(config),
            warn_only=options["warn_only"],
            stale_fails=options["stale"] == "fail",
            record=options["record"],
            threshold_ms=threshold_ms,
        )

    # ------------------------------------------------------------ session

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        if _is_xdist_controller(config):
            return  # the workers run the tests, each monitoring its own loops
        if self.record is not None:  # an empty path is refused by the settings, not taken for none
            self._start_recording()
        else:
            autorecord.monitor_every_loop(threshold_ms=self.threshold_ms, trace_depth=settings.DEFAULT_TRACE_DEPTH)
        # First, so that it reads each slice's native details before another callback uses them up.
        callbacks._slow_task_callbacks.insert(0, self.collector.on_slice)

    def _start_recording(self) -> None:
        assert self.record is not None
        try:
            chosen = settings.RecordingSettings(
                path=self.record, label="pytest", threshold_ms=self.threshold_ms, record_context=True
            )
            callbacks.register_context_provider(self._test_context)
            self.recorded_path = autorecord.record_with(chosen)
        except (ValueError, OSError) as error:
            raise pytest.UsageError(f"--aiocop-record={self.record}: {error}") from None

    def _test_context(self) -> dict[str, str]:
        where = self.collector.where
        return {"test": where.nodeid} if where is not None else {}

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.collector.on_slice in callbacks._slow_task_callbacks:
            callbacks._slow_task_callbacks.remove(self.collector.on_slice)
        if self.recorded_path is not None:
            recorder.stop_recording()
            callbacks.unregister_context_provider(self._test_context)

    # ------------------------------------------------------------ a test's phases

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        self.collector.skipping = item.get_closest_marker("aiocop_skip") is not None
        self.collector.test_allowlist = _marker_allowlist(item)
        return (yield from self._running(item, "setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._running(item, "call"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, Any, Any]:
        return (yield from self._running(item, "teardown"))

    def _running(self, item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
        self.collector.where = Where(item.nodeid, phase)
        try:
            return (yield)
        finally:
            self.collector.where = None

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Generator[None, Any, Any]:
        outer = self.collector.where
        if outer is not None:
            self.collector.where = Where(outer.nodeid, outer.phase, fixturedef.argname)
        try:
            return (yield)
        finally:
            self.collector.where = outer

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, pytest.TestReport]:
        report: pytest.TestReport = yield
        blocking = self.collector.blocking_of(item.nodeid)
        failing = blocking.failing(report.when)
        if failing:
            text = messages.failure(failing, report.when, self.fail_on.text)
            if self.warn_only or not report.passed:
                report.sections.append(("aiocop", text))
            else:
                report.outcome = "failed"
                report.longrepr = text
        if report.when == "teardown":
            report.aiocop = _numbers(blocking)  # type: ignore[attr-defined]
            self.collector.by_test.pop(item.nodeid, None)
            self.collector.test_allowlist = None
            self.collector.skipping = False
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        numbers = getattr(report, "aiocop", None)
        counted = ("blocking_events", "allowed_events", "cpu_slices")
        if isinstance(numbers, dict) and any(numbers.get(key) for key in counted):
            self.tests[report.nodeid] = numbers

    # ------------------------------------------------------------ the session's end

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist: a worker finished; keep which allow-list entries fired there."""
        fired = getattr(node, "workeroutput", {}).get(_WORKER_FIRED, [])
        self.fired_in_workers.update(fired)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        worker_output = getattr(self.config, "workeroutput", None)
        if worker_output is not None:
            worker_output[_WORKER_FIRED] = sorted(self._fired_here())
            return
        if self.stale_fails and self.stale_entries() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _fired_here(self) -> set[str]:
        return {entry.source for entry, fired in self.allowlist.fired.items() if fired > 0}

    def stale_entries(self) -> list[AllowEntry]:
        """Allow-list entries that allowed nothing anywhere in the run (in any worker, under xdist)."""
        fired = self._fired_here() | self.fired_in_workers
        return [entry for entry in self.allowlist.entries if entry.source not in fired]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if getattr(self.config, "workeroutput", None) is not None:
            return
        terminalreporter.write_sep("=", "aiocop")
        for line in summary_lines(self.tests, self.stale_entries(), self.collector.outside_tests, self):
            terminalreporter.write_line(line)


def summary_lines(
    tests: dict[str, dict[str, Any]], stale: list[AllowEntry], outside_tests: int, gate: Gate
) -> list[str]:
    """The summary section: per-test counts in pytest's style, then stale entries."""
    blocked = {n: t for n, t in tests.items() if t["blocking_events"] or t["cpu_slices"]}
    failed = [n for n, t in blocked.items() if t["failing_slices"]]
    allowed = {n: t for n, t in tests.items() if t["allowed_events"]}
    lines = [
        "aiocop: "
        + ", ".join(
            [
                f"{len(blocked)} test(s) blocked the loop"
                + (f" ({len(failed)} {'over' if gate.warn_only else 'failed by'} --aiocop-fail-on)" if blocked else ""),
                f"{sum(t['allowed_events'] for t in allowed.values())} allowed event(s) in {len(allowed)} test(s)",
                f"{len(stale)} stale allow-list entr{'y' if len(stale) == 1 else 'ies'}",
            ]
        ),
    ]
    ranked = sorted(tests.items(), key=lambda kv: (-kv[1]["blocking_events"] - kv[1]["cpu_slices"], kv[0]))
    for nodeid, numbers in ranked[:20]:
        verdict = "ok" if not numbers["failing_slices"] else "warn" if gate.warn_only else "FAIL"
        lines.append(
            f"  {verdict:4} {nodeid}: {numbers['blocking_events']} blocking event(s)"
            + (f" ({numbers['events']})" if numbers.get("events") else "")
            + (f", {numbers['cpu_slices']} CPU slice(s)" if numbers["cpu_slices"] else "")
            + (f", {numbers['allowed_events']} allowed" if numbers["allowed_events"] else "")
        )
    if len(ranked) > 20:
        lines.append(f"  ... and {len(ranked) - 20} more test(s)")
    lines.extend(_stale_line(entry) for entry in stale)
    if stale:
        lines.append("  (remove stale entries, or --aiocop-stale=fail to fail the session on them)")
    if outside_tests:
        lines.append(f"  {outside_tests} slice(s) blocked outside any test (collection, session start or end)")
    return lines


def _numbers(blocking: TestBlocking) -> dict[str, Any]:
    numbers: dict[str, Any] = dict(blocking.counts())
    numbers["events"] = messages.event_names([e for s in blocking.slices for e in s.unallowed])
    return numbers


def _stale_line(entry: AllowEntry) -> str:
    events = "" if entry.events == ("*",) else f" (events {', '.join(entry.events)})"
    return f"  stale: {entry.identity!r}{events} at {entry.source} matched nothing in this run"


def _is_xdist_controller(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")


def _load_allowlist(config: pytest.Config) -> AllowList:
    """The project's allow-list: aiocop.toml, else [tool.aiocop] in pyproject.toml, in the rootdir."""
    try:
        return load_allowlist(config.rootpath)
    except AllowListError as error:
        raise pytest.UsageError(str(error)) from None


def _marker_allowlist(item: pytest.Item) -> AllowList | None:
    """The test's ``@pytest.mark.aiocop(allow=[...])``, checked by the allow-list's own rules."""
    marker = item.get_closest_marker("aiocop")
    if marker is None or not marker.kwargs.get("allow"):
        return None
    try:
        return AllowList(entries_from_items(list(marker.kwargs["allow"]), f"{item.nodeid} @pytest.mark.aiocop"))
    except AllowListError as error:
        problem = str(error)
    pytest.fail(problem, pytrace=False)  # this test's setup errors, in one line; the others run
