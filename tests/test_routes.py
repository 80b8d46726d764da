"""Routes and handlers, end to end: real servers recorded with ``python -m aiocop record``
under a load generator that counts the answers it got, read back by the real
``aiocop-analyze`` with ``--by route`` and ``--by handler``.

FastAPI under uvicorn and an aiohttp app (``web.run_app`` in the script
itself) serve the same routes of known cost:
- ``/cpu``: 10 ms of CPU per request, under the 30 ms threshold;
- ``/block``: ``time.sleep(5 ms)``, a blocking call;
- ``/render/{page}``: 24 ms of CPU spread over helpers, a list comprehension
  and ``json.dumps``, so that no one function holds it;
- ``/items/{item_id}``: a request that spawns a task (which must inherit the
  route) doing 1 ms of CPU.
Sanic, Litestar and Django's ASGI handler each serve one route.
"""

import asyncio
import glob
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiocop
import pytest
from conftest import report_json

COSTS = textwrap.dedent(
    """
    import json
    import time


    def burn(ms):
        deadline = time.perf_counter() + ms / 1000
        n = 0
        while time.perf_counter() < deadline:
            n += 1
        return n


    def header(page):
        burn(6)
        return f"<h1>{page}</h1>"


    def rows(page):
        return [burn(1) + i for i in range(12)]  # a comprehension: 12 ms


    def render_page(page):
        body = {"header": header(page), "rows": rows(page)}
        text = json.dumps(body)
        burn(6)
        return text
    """
)

FASTAPI_APP = textwrap.dedent(
    """
    import asyncio
    import time

    from fastapi import APIRouter, FastAPI
    from fastapi.responses import PlainTextResponse

    from costs import burn, render_page

    app = FastAPI()
    api = APIRouter(prefix="/api")


    @app.get("/cpu")
    async def cpu():
        burn(10)
        return PlainTextResponse("ok")


    @app.get("/block")
    async def block():
        time.sleep(0.005)
        return PlainTextResponse("ok")


    @app.get("/render/{page}")
    async def render(page: str):
        return PlainTextResponse(render_page(page))


    @api.get("/items/{item_id}")
    async def item(item_id: int):
        await asyncio.create_task(spawned())
        return PlainTextResponse(str(item_id))


    async def spawned():
        burn(1)


    app.include_router(api)
    """
)

AIOHTTP_APP = textwrap.dedent(
    """
    import asyncio
    import sys
    import time

    from aiohttp import web

    from costs import burn, render_page


    async def cpu(request):
        burn(10)
        return web.Response(text="ok")


    async def block(request):
        time.sleep(0.005)
        return web.Response(text="ok")


    async def render(request):
        return web.Response(text=render_page(request.match_info["page"]))


    async def spawned():
        burn(1)


    async def item(request):
        await asyncio.create_task(spawned())
        return web.Response(text=request.match_info["item_id"])


    app = web.Application()
    app.add_routes(
        [
            web.get("/cpu", cpu),
            web.get("/block", block),
            web.get("/render/{page}", render),
            web.get("/api/items/{item_id}", item),
        ]
    )
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)

# What the load generator asks for, and the route each is.
PATHS = {
    "/cpu": "GET /cpu",
    "/block": "GET /block",
    "/render/home": "GET /render/{page}",
    "/api/items/7": "GET /api/items/{item_id}",
}
LOAD_SECONDS = 3.0
CONNECTIONS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for_server(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def client(port: int, paths: list[str], first: int, deadline: float, counts: dict[str, int]) -> None:
    """One keep-alive connection asking for each path in turn until the deadline; counts the 200 answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = first
    while time.monotonic() < deadline:
        path = paths[i % len(paths)]
        i += 1
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        await asyncio.wait_for(read_body(reader, head), 10)
        counts[path] = counts.get(path, 0) + 1
    writer.close()


async def read_body(reader: asyncio.StreamReader, head: bytes) -> None:
    """The body after `head`: Content-Length bytes, or chunks to the last."""
    lines = [line.lower() for line in head.split(b"\r\n")]
    length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), None)
    if length is not None:
        await reader.readexactly(length)
        return
    while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
        await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")


async def drive(port: int, paths: list[str], seconds: float, connections: int) -> dict[str, int]:
    await wait_for_server(port, timeout_s=20)
    counts: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client(port, paths, c, deadline, counts) for c in range(connections)))
    return counts


def served(
    tmp: Path,
    app_source: str,
    command: list[str],
    port: int,
    paths: list[str],
    seconds: float = LOAD_SECONDS,
    connections: int = CONNECTIONS,
    cpus: set[int] | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Record `command` (app.py in `tmp`) with `python -m aiocop record` under load, then SIGINT it.

    With `cpus`, the server runs on those CPUs only (its children inherit them).
    Returns the traces written and the answers the load generator got, by path.
    """
    (tmp / "costs.py").write_text(COSTS)
    (tmp / "app.py").write_text(app_source)
    server = subprocess.Popen(
        [sys.executable, "-m", "aiocop", "record", "-o", str(tmp / "trace-{pid}.bin"), "--", *command],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    try:
        counts = asyncio.run(drive(port, paths, seconds, connections))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, stderr = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
    traces = sorted(glob.glob(str(tmp / "trace-*.bin")))
    assert traces, stderr
    return traces, counts


@pytest.fixture(scope="module")
def fastapi_served(tmp_path_factory):
    pytest.importorskip("fastapi")
    tmp = tmp_path_factory.mktemp("fastapi")
    port = free_port()
    command = ["-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning"]
    return served(tmp, FASTAPI_APP, command, port, list(PATHS))


@pytest.fixture(scope="module")
def aiohttp_served(tmp_path_factory):
    pytest.importorskip("aiohttp")
    tmp = tmp_path_factory.mktemp("aiohttp")
    port = free_port()
    return served(tmp, AIOHTTP_APP, ["app.py", str(port)], port, list(PATHS))


def check_routes(traces: list[str], counts: dict[str, int]) -> None:
    """--by route lists each route with the requests answered, ranked by loop time per request."""
    assert all(counts.get(path, 0) >= 10 for path in PATHS), counts
    routes = {row["route"]: row for row in report_json("--by", "route", *traces)["routes"]}
    for path, route in PATHS.items():
        assert routes[route]["requests"] == counts[path], (route, routes, counts)
    ranked = [route for route in routes if route in PATHS.values()]
    # render (24 ms of CPU) > cpu (10 ms) > block (5 ms asleep) > items (1 ms in a spawned task)
    assert ranked == ["GET /render/{page}", "GET /cpu", "GET /block", "GET /api/items/{item_id}"], routes
    render = routes["GET /render/{page}"]
    assert 22 <= render["p50_ms"] <= 60, render
    assert routes["GET /block"]["events_per_request"] >= 1, routes
    assert routes["GET /block"]["worst"] is not None
    # The spawned task's time is the route's: 1 ms a request at least.
    assert routes["GET /api/items/{item_id}"]["loop_ms_per_request"] >= 1.0, routes
    # context:route stays available, with the same routes.
    keys = {g["key"] for g in report_json("--by", "context:route", *traces)["loop_time"]["groups"]}
    assert set(PATHS.values()) <= keys, keys


def check_handler(traces: list[str], counts: dict[str, int], handler: str) -> None:
    """--by handler puts the spread handler's whole time in one row, none for its helpers."""
    groups = report_json("--by", "handler", "--top", "0", *traces)["loop_time"]["groups"]
    by_key = {g["key"]: g for g in groups}
    rows = [key for key in by_key if key.endswith(handler)]
    assert len(rows) == 1, sorted(by_key)
    assert by_key[rows[0]]["busy_ms"] >= 0.85 * 24 * counts["/render/home"], (by_key[rows[0]], counts)
    for helper in ("header", "rows", "<listcomp>", "render_page", "burn", "dumps", "<module>"):
        assert not [key for key in by_key if key.endswith(f":{helper}")], (helper, sorted(by_key))


def test_fastapi_under_uvicorn_routes_count_every_request_and_rank_by_loop_time(fastapi_served):
    check_routes(*fastapi_served)


def test_fastapi_spread_handler_is_one_row(fastapi_served):
    check_handler(*fastapi_served, handler=":render")


def test_aiohttp_routes_count_every_request_and_rank_by_loop_time(aiohttp_served):
    check_routes(*aiohttp_served)


def test_aiohttp_spread_handler_is_one_row_not_the_script_that_started_the_loop(aiohttp_served):
    check_handler(*aiohttp_served, handler=":render")


def test_a_spawned_task_inherits_its_requests_route(fastapi_served):
    traces, _ = fastapi_served
    slices = [s for trace in traces for s in aiocop.read_trace(trace)["slices"]]
    spawned = [s for s in slices if s["what"].endswith("spawned")]
    assert spawned and all(s["context"].get("route") == "GET /api/items/{item_id}" for s in spawned)
    # Not a request of its own: only the slice that routed it counts one.
    assert not any("route.start" in s["context"] for s in spawned)


SANIC_APP = textwrap.dedent(
    """
    from sanic import Sanic
    from sanic.response import text

    app = Sanic("routes")


    @app.get("/items/<item_id:int>")
    async def item(request, item_id):
        return text(str(item_id))
    """
)

LITESTAR_APP = textwrap.dedent(
    """
    from litestar import Litestar, get


    @get("/items/{item_id:int}", media_type="text/plain")
    async def item(item_id: int) -> str:
        return str(item_id)


    app = Litestar([item])
    """
)

DJANGO_APP = textwrap.dedent(
    """
    import django
    from django.conf import settings

    settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="x", MIDDLEWARE=[])
    django.setup()

    from django.core.asgi import get_asgi_application
    from django.http import HttpResponse
    from django.urls import path


    async def item(request, item_id):
        return HttpResponse(str(item_id))


    urlpatterns = [path("items/<int:item_id>", item)]
    app = get_asgi_application()
    """
)


@pytest.mark.parametrize(
    ("framework", "source", "route"),
    [
        ("sanic", SANIC_APP, "GET /items/<item_id:int>"),
        ("litestar", LITESTAR_APP, "GET /items/{item_id}"),  # Litestar's path_template drops the type
        ("django", DJANGO_APP, "GET /items/<int:item_id>"),
    ],
)
def test_each_framework_names_its_route_template(tmp_path, framework, source, route):
    pytest.importorskip(framework)
    port = free_port()
    if framework == "sanic":
        command = ["-m", "sanic", "app:app", "--single-process", "--no-motd", "--port", str(port)]
    else:
        command = ["-m", "uvicorn", "app:app", "--log-level", "warning", "--port", str(port)]
    traces, counts = served(tmp_path, source, command, port, ["/items/1", "/items/2"], seconds=1.0, connections=1)
    routes = {row["route"]: row for row in report_json("--by", "route", *traces)["routes"]}
    # Keep-alive: one connection's requests each count (Sanic serves them in the connection's task).
    assert routes[route]["requests"] == counts["/items/1"] + counts["/items/2"], (routes, counts)


def test_recording_imports_no_web_framework(tmp_path):
    """A program that is not a web app imports nothing more when it records."""
    code = (
        "import sys, aiocop\n"
        "aiocop.start_recording(sys.argv[1])\n"
        "frameworks = {'starlette', 'fastapi', 'aiohttp', 'sanic', 'litestar', 'django'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in frameworks))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "t.bin")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_django_requests_whole_handler_has_its_route(tmp_path):
    """Django routes in a child task; the handler's own slices (body, signals, closing) are the request's too."""
    pytest.importorskip("django")
    port = free_port()
    command = ["-m", "uvicorn", "app:app", "--log-level", "warning", "--port", str(port)]
    traces, counts = served(tmp_path, DJANGO_APP, command, port, ["/items/1"], seconds=1.0, connections=1)
    slices = [s for trace in traces for s in aiocop.read_trace(trace)["slices"]]
    handler = [s for s in slices if s["what"] in ("RequestResponseCycle.run_asgi", "SyncToAsync.__call__")]
    assert handler and all(s["context"].get("route") == "GET /items/<int:item_id>" for s in handler)
    # What is left without a route: thread futures' callbacks, scheduled from the executor's threads.
    routed = sum(s["duration_ns"] for s in slices if s["context"].get("route"))
    assert routed >= 0.8 * sum(s["duration_ns"] for s in slices)
    assert sum("route.start" in s["context"] for s in slices) == counts["/items/1"]


DJANGO_MIDDLEWARE_WITH_ITS_URLCONF = textwrap.dedent(
    """
    import sys, types

    from django.utils.decorators import async_only_middleware

    async def item_v2(request, number):
        return HttpResponse(str(number))


    v2 = types.ModuleType("urls_v2")
    v2.urlpatterns = [path("items/<int:number>", item_v2)]
    sys.modules["urls_v2"] = v2


    @async_only_middleware
    def other_urlconf(get_response):
        async def middleware(request):
            request.urlconf = "urls_v2"
            return await get_response(request)

        return middleware


    app = get_asgi_application()
    """
)
DJANGO_APP_WITH_A_MIDDLEWARES_URLCONF = DJANGO_APP.replace("MIDDLEWARE=[]", "MIDDLEWARE=['app.other_urlconf']").replace(
    "app = get_asgi_application()\n", DJANGO_MIDDLEWARE_WITH_ITS_URLCONF
)


def test_a_django_middlewares_urlconf_renames_the_request_without_counting_it_twice(tmp_path):
    pytest.importorskip("django")
    port = free_port()
    command = ["-m", "uvicorn", "app:app", "--log-level", "warning", "--port", str(port)]
    source = DJANGO_APP_WITH_A_MIDDLEWARES_URLCONF
    traces, counts = served(tmp_path, source, command, port, ["/items/1"], seconds=1.0, connections=1)
    routes = {row["route"]: row for row in report_json("--by", "route", *traces)["routes"]}
    assert routes["GET /items/<int:number>"]["requests"] == counts["/items/1"], (routes, counts)
    # The first request was named by the root URLconf before the middleware ran; none after it.
    assert routes["GET /items/<int:item_id>"]["requests"] == 1, routes
