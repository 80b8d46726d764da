"""End to end: the one-file HTML report of a real recording, opened in headless Chromium.

A real asyncio program is recorded with ``python -m aiocop record``; the
real CLI writes ``report --format html`` and ``diff --format html``; Chromium
(Debian's ``chromium``, which ``.ci/run`` installs) opens each page and is
driven through the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, messages ending in a NUL byte: no port, no extra
package). The test takes a screenshot, and checks that the page's text holds
the top groups, that the console has no error (nor an uncaught exception)
and that no request left the page: the only request is the page's own
``file://`` URL.
"""

import base64
import fcntl
import functools
import json
import os
import select
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import analyze, report_json
from test_loop_time import record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

if CHROMIUM is None:
    # .ci/run installs it: in CI a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError("chromium is not installed (.ci/run installs Debian's chromium package)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

APP = textwrap.dedent(
    """
    import asyncio, os, sys, time

    def load_settings(path):
        with open(path) as f:
            return f.read()

    def scan_uploads(path):
        for _ in range(20):
            os.stat(path)

    def render_invoice():
        deadline = time.perf_counter() + 0.04
        while time.perf_counter() < deadline:
            pass

    async def handle(path, slow):
        load_settings(path)
        await asyncio.sleep(0)
        scan_uploads(path)
        await asyncio.sleep(0)
        render_invoice()
        if slow:
            time.sleep(0.03)
        await asyncio.sleep(0.01)

    async def main(path, rounds, slow):
        for i in range(rounds):
            await handle(path, slow and i % 2 == 0)
        await asyncio.sleep(0.2)  # an idle stretch: the busy share falls

    path, rounds, slow = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "slow"
    asyncio.run(main(path, rounds, slow))
    """
)


def record_side(tmp_path: Path, side: str, *args: str) -> Path:
    """A trace of APP recorded in a directory of its own, as a release's deployment is."""
    directory = tmp_path / side
    directory.mkdir()
    config = directory / "settings.toml"
    config.write_text("x = 1\n")
    return record(directory, APP, str(config), *args, name="shop_app.py")


def high_fd(fd: int) -> int:
    """`fd` moved to a number of at least 10."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """Headless Chromium driven through the DevTools protocol over a pipe."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Above 4, so that putting one at 3 or 4 cannot overwrite the other.
        to_chrome_r, from_chrome_w = (high_fd(fd) for fd in (to_chrome_r, from_chrome_w))
        # Chromium reads commands on fd 3 and answers on fd 4: a shell puts the pipes there.
        command = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            # bash, not sh: dash takes only one-digit descriptors in a redirection.
            ["bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', "bash", *command],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.from_chrome], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout=30.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read_message(timeout)
            if answer.get("id") == self.next_id:
                assert "error" not in answer, answer
                return answer["result"]
            self.events.append(answer)

    def wait_for(self, method: str, timeout=30.0) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(timeout)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, EOFError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)


def open_page(
    page: Path, screenshot: Path, profile: Path, sort_by: tuple[str, str] | None
) -> tuple[str, list[str], list[str]]:
    """Opens `page`, saves a screenshot; returns its text, its console errors and the URLs it requested.

    With `sort_by` (a table's selector and a number column's title), checks that
    two clicks on the title sort the table ascending; without, the page's
    scripts are off.
    """
    browser = Browser(profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 1800, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        if sort_by is None:
            browser.send("Emulation.setScriptExecutionDisabled", {"value": True}, session=session)
        browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        table, column = sort_by or ("", "")
        check = textwrap.dedent(
            """
            (() => {
              const table = document.querySelector(TABLE);
              if (!table) return 'no table ' + TABLE;
              const header = [...table.tHead.rows[0].cells].find(c => c.textContent === COLUMN);
              header.click(); header.click();
              const values = [...table.tBodies[0].rows].map(r => parseFloat(r.cells[header.cellIndex].dataset.sort));
              const ascending = values.every((v, i) => i === 0 || values[i - 1] <= v);
              return ascending && header.getAttribute('aria-sort') === 'ascending' ? 'ok' : String(values);
            })()
            """
        )
        check = check.replace("TABLE", json.dumps(table)).replace("COLUMN", json.dumps(column))
        if sort_by is not None:
            sorted_check = browser.send(
                "Runtime.evaluate", {"expression": check, "returnByValue": True}, session=session
            )
            if sorted_check["result"].get("value") != "ok":
                browser.events.append({"method": "sorting", "params": sorted_check})
        text = browser.send(
            "Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True}, session=session
        )["result"]["value"]
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        events = browser.events
    finally:
        browser.close()
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(json.dumps(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
        elif method == "sorting":
            errors.append(f"sorting: {params}")
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return text, errors, requests


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("html")
    return record_side(tmp, "base", "8", "fast"), record_side(tmp, "new", "8", "slow")


def test_the_html_report_opens_in_chromium_with_its_top_groups_and_no_error_nor_request(traces, tmp_path):
    _, trace = traces
    page = tmp_path / "report.html"
    result = analyze("report", str(trace), "--format", "html", "-o", str(page))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    # Web addresses only as SVG namespaces: names, never loaded.
    namespaces = ("http://www.w3.org/", "http://github.com/jonhoo/inferno")
    rest = functools.reduce(lambda text, ns: text.replace(ns, ""), namespaces, html)
    assert "http://" not in rest and "https://" not in rest

    text, errors, requests = open_page(
        page, tmp_path / "report.png", tmp_path / "profile", ("#loop-time table", "busy ms")
    )
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")
    assert errors == []
    assert requests == [page.as_uri()]
    report = report_json(str(trace))
    for group in report["loop_time"]["groups"][:3] + report["groups"][:3]:
        assert group["key"] in text, group["key"]
    for heading in ("Summary", "Busy share over time", "Loop time", "Flame graph", "Longest stalls", "Example stacks"):
        assert heading in text
    # Without JavaScript the tables and pictures are all there.
    text_without_js, errors, requests = open_page(page, tmp_path / "no-js.png", tmp_path / "profile-no-js", None)
    assert errors == [] and requests == [page.as_uri()]
    # (The same lines: the page with scripts had a table sorted.)
    assert sorted(text_without_js.split("\n")) == sorted(text.split("\n"))
    # The report's JSON is in the page, as the JSON format writes it.
    embedded = html.split('<script type="application/json" id="aiocop-report">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded)["loop_time"] == report["loop_time"]


def test_the_html_diff_shows_the_comparison_and_the_gates_verdict(traces, tmp_path):
    base, new = traces
    page = tmp_path / "diff.html"
    result = analyze("diff", str(base), str(new), "--format", "html", "-o", str(page), "--fail-on", "new")
    assert result.returncode in (0, 1), result.stderr
    text, errors, requests = open_page(
        page, tmp_path / "diff.png", tmp_path / "profile", ("#comparison table", "p95 ms")
    )
    assert errors == [] and requests == [page.as_uri()]
    assert "Gate" in text and ("The gate failed" in text if result.returncode == 1 else "The gate passed" in text)
    diff = json.loads(analyze("diff", str(base), str(new), "--format", "json").stdout)
    for row in diff["rows"][:3]:
        assert row["key"] in text
    # The new side's time.sleep is new: a row of its own.
    assert any(row["status"] == "new" for row in diff["rows"])


def test_bad_html_requests_exit_2_with_one_line(traces, tmp_path):
    _, trace = traces
    for args in (
        ["info", str(trace), "--format", "html"],
        ["report", str(trace), "--format", "html", "-o", str(tmp_path / "missing" / "report.html")],
    ):
        result = analyze(*args)
        assert result.returncode == 2, result
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == "", result.stderr
    assert not (tmp_path / "missing").exists()
    result = analyze(
        "report", str(trace), "--format", "html", "--since", "2", "--until", "1", "-o", str(tmp_path / "x")
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_damaged_trace_still_gives_a_page_of_what_could_be_read(traces, tmp_path):
    _, trace = traces
    damaged, page = tmp_path / "cut.bin", tmp_path / "cut.html"
    data = trace.read_bytes()
    damaged.write_bytes(data[: len(data) - 40])  # the footer and the end of the last chunk gone
    result = analyze("report", str(damaged), "--format", "html", "-o", str(page))
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and str(damaged) in result.stderr
    assert '<section id="loop-time">' in page.read_text()
