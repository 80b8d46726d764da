"""How often `aiocop-analyze diff --fail-on regressed --fail-on new` fails an unchanged build, and how often
it catches a real regression, measured on recordings of a real service.

Run from the repository root, after `make build` (about 6 minutes with the defaults):

    .venv/bin/python bench/gate_calibration.py
    .venv/bin/python bench/gate_calibration.py --pairs 4 --ab-pairs 2 --seconds 3    # a quick look

The service is a small FastAPI app under uvicorn, recorded with `python -m aiocop record -- -m uvicorn app:app`
while a small asyncio load generator (keep-alive HTTP/1.1 connections, a fixed mix of routes) drives it for
`--seconds`. Its routes do what services do: read a file, stat one, sleep a millisecond in 10% of requests,
or nothing blocking at all. Three releases, each deployed in a directory of its own (so that no two
recordings have the same paths), with blank lines inserted above every function in the B releases (so that
no line is where it was):

  A        the base
  B-new    adds a blocking call (a file read in a new function) to /search, in 5% of its requests
  B-double doubles /orders' blocking calls (two stats a request instead of one)

Pairs: `--pairs` A/A pairs, each of two fresh recordings of A (a false failure is an A/A pair that fails the
gate), and `--ab-pairs` of each B release against a fresh recording of A (a detection is a pair that fails it
and names the changed row). Prints the table the README shows; `--keep DIR` keeps the traces, and
`--traces DIR` analyzes traces kept by an earlier run again without recording (to try other settings).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

APP = """
import os, random, time
from fastapi import FastAPI

app = FastAPI()
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.json")
#NEW_HELPER


async def root():
    return {"ok": True}

app.get("/")(root)


async def item(item_id: int):
    with open(DATA) as f:
        return {"id": item_id, "size": len(f.read())}

app.get("/items/{item_id}")(item)


async def orders():
    os.stat(DATA)
    #DOUBLE
    return {"orders": []}

app.get("/orders")(orders)


async def user(user_id: int):
    if random.random() < 0.1:
        time.sleep(0.001)
    return {"id": user_id}

app.get("/users/{user_id}")(user)


async def search(q: str = ""):
    #NEW_CALL
    return {"q": q, "hits": []}

app.get("/search")(search)
"""

NEW_HELPER = """
def audit(query):
    with open(DATA) as f:
        return f.read(1) + query
"""

RELEASES = {
    "A": APP.replace("#NEW_HELPER", "").replace("#DOUBLE", "").replace("#NEW_CALL", ""),
    "B-new": APP.replace("#NEW_HELPER", NEW_HELPER)
    .replace("#DOUBLE", "")
    .replace("#NEW_CALL", "if random.random() < 0.05:\n        audit(q)"),
    "B-double": APP.replace("#NEW_HELPER", "").replace("#DOUBLE", "os.stat(DATA)").replace("#NEW_CALL", ""),
}
# The row each B release must be named by (its identity: module and qualified name, from format 1.1's frames).
CHANGED_ROW = {"B-new": "app:audit", "B-double": "app:orders"}
# The load: (weight, path); ids and queries vary from request to request.
ROUTES = [(30, "/"), (25, "/items/{n}"), (15, "/orders"), (15, "/users/{n}"), (15, "/search?q=q{n}")]
GATE = ["--fail-on", "regressed", "--fail-on", "new"]


def shifted(source: str) -> str:
    """The source with two blank lines above every function: no line is where it was."""
    return source.replace("\nasync def ", "\n\n\nasync def ").replace("\ndef ", "\n\n\ndef ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"the service did not listen on port {port} within {timeout_s} s")


async def client(port: int, until: float, rng: random.Random) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    weights, paths = zip(*ROUTES, strict=True)
    done = 0
    while time.monotonic() < until:
        path = rng.choices(paths, weights)[0].format(n=rng.randrange(1000))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


async def load(port: int, seconds: float, connections: int) -> int:
    await wait_for(port, timeout_s=30)
    until = time.monotonic() + seconds
    rng = random.Random()
    counts = await asyncio.gather(*(client(port, until, random.Random(rng.random())) for _ in range(connections)))
    return sum(counts)


def record(release: str, run_dir: Path, trace: Path, seconds: float, connections: int) -> int:
    """Deploys `release` in `run_dir`, records it under load, and returns how many requests it served."""
    run_dir.mkdir(parents=True)
    source = RELEASES[release]
    (run_dir / "app.py").write_text(shifted(source) if release != "A" else source)
    (run_dir / "data.json").write_text('{"items": [1, 2, 3]}')
    port = free_port()
    command = [sys.executable, "-m", "aiocop", "record", "-o", str(trace), "--label", release, "--"]
    command += ["-m", "uvicorn", "app:app", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        served = asyncio.run(load(port, seconds, connections))
    finally:
        # Ctrl-C, as a user stops it: uvicorn shuts down, re-raises it as KeyboardInterrupt, and the recorder
        # writes its footer on the way out (SIGTERM, re-raised, would kill it before).
        server.send_signal(signal.SIGINT)
        try:
            _, stderr = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    if server.returncode not in (0, 1, 130, -signal.SIGINT):
        sys.exit(f"recording {release} failed ({server.returncode}):\n{stderr}")
    return served


@dataclass
class Verdict:
    failed: bool
    reasons: list[str]


def gate(analyze: str, base: Path, new: Path, extra: list[str]) -> Verdict:
    result = subprocess.run(
        [analyze, "diff", str(base), str(new), "--format", "json", *GATE, *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode not in (0, 1):
        sys.exit(f"aiocop-analyze failed ({result.returncode}): {result.stderr}")
    reasons = [line.removeprefix("aiocop-analyze: gate: ") for line in result.stderr.splitlines() if "gate:" in line]
    return Verdict(result.returncode == 1, reasons)


def names(reason: str, identity: str) -> bool:
    # A reason names its row by identity: `regressed 'app:orders' (line 30): ...`.
    return f"'{identity}'" in reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20, help="A/A pairs")
    parser.add_argument("--ab-pairs", type=int, default=10, help="pairs of each B release against A")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per recording")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--analyze", default=shutil.which("aiocop-analyze", path=os.path.dirname(sys.executable)))
    parser.add_argument("--keep", type=Path, help="keep the traces (and deployments) in this directory")
    parser.add_argument("--traces", type=Path, help="analyze the traces an earlier --keep run left here")
    parser.add_argument("extra", nargs="*", help="more aiocop-analyze diff options, after --")
    args = parser.parse_args()
    if not args.analyze:
        sys.exit("no aiocop-analyze: run `make build` first, or pass --analyze")

    plan = [("A", f"aa{i}-base", f"aa{i}-new") for i in range(args.pairs)]
    for release in ("B-new", "B-double"):
        plan += [(release, f"{release}{i}-base", f"{release}{i}-new") for i in range(args.ab_pairs)]

    work = args.traces or args.keep or Path(tempfile.mkdtemp(prefix="aiocop-gate-"))
    if not args.traces:
        work.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for n, (release, base, new) in enumerate(plan, start=1):
            for name, deployed in ((base, "A"), (new, release)):
                served = record(deployed, work / name, work / f"{name}.bin", args.seconds, args.connections)
                print(f"[{n}/{len(plan)}] {name}: {deployed}, {served} requests", file=sys.stderr, flush=True)
        print(f"recorded in {time.monotonic() - started:.0f} s", file=sys.stderr)

    rows = {"A/A": [0, 0], "B-new": [0, 0], "B-double": [0, 0]}
    for release, base, new in plan:
        verdict = gate(args.analyze, work / f"{base}.bin", work / f"{new}.bin", args.extra)
        if release == "A":
            rows["A/A"][0] += 1
            rows["A/A"][1] += verdict.failed
            if verdict.failed:
                print(f"false failure {base} / {new}: {verdict.reasons}", file=sys.stderr)
        else:
            caught = verdict.failed and any(names(r, CHANGED_ROW[release]) for r in verdict.reasons)
            rows[release][0] += 1
            rows[release][1] += caught
            if not caught:
                print(f"missed {release} {base} / {new}: {verdict.reasons}", file=sys.stderr)
    print(f"gate: aiocop-analyze diff BASE NEW {' '.join(GATE + args.extra)}; {args.seconds:g} s of load a recording")
    print("| pairs | what changed | failed the gate | rate |")
    print("|:--|:--|--:|--:|")
    what = {
        "A/A": "nothing (false failures)",
        "B-new": "a file read added to /search, 5% of its requests (caught, naming it)",
        "B-double": "/orders' stat calls doubled (caught, naming it)",
    }
    for key, (total, failed) in rows.items():
        if total:
            print(f"| {total} {key if key == 'A/A' else 'A/' + key} | {what[key]} | {failed} | {failed / total:.0%} |")
    if not args.keep and not args.traces:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
