"""Severity weights, scoring, levels and event formatting."""

import aiocop

WEIGHTS = {
    "open": 10,
    "time.sleep": 50,
    "socket.socket.connect": 50,
    "socket.socket.connect_ex": 50,
    "socket.socket.send": 10,
    "socket.socket.recv": 10,
    "socket.socket.bind": 0,
    "socket.getaddrinfo": 50,
    "subprocess.Popen": 50,
    "os.stat": 1,
    "os.access": 1,
    "os.getcwd": 0,
    "os.listdir": 10,
    "os.walk": 50,
    "os.remove": 10,
    "shutil.rmtree": 50,
    "fcntl.flock": 1,
    "sqlite3.connect": 10,
    "import": 50,
    "builtins.input": 50,
    "os.system": 50,
    "os.kill": 1,
    "http.client.connect": 50,
    "ssl.SSLSocket.read": 10,
}


def info(severity):
    return {"event": "e()", "trace": "t", "entry_point": "t", "severity": severity}


def test_severity_constants():
    assert (aiocop.WEIGHT_HEAVY, aiocop.WEIGHT_MODERATE, aiocop.WEIGHT_LIGHT, aiocop.WEIGHT_TRIVIAL) == (50, 10, 1, 0)
    assert (aiocop.THRESHOLD_HIGH, aiocop.THRESHOLD_MEDIUM, aiocop.THRESHOLD_LOW) == (50, 10, 1)


def test_blocking_events_dict_weights():
    weights = aiocop.get_blocking_events_dict()

    assert {name: weights.get(name) for name in WEIGHTS} == WEIGHTS
    assert all(isinstance(value, int) for value in weights.values())


def test_blocking_events_dict_is_a_copy():
    weights = aiocop.get_blocking_events_dict()
    weights["open"] = 999
    del weights["os.stat"]

    fresh = aiocop.get_blocking_events_dict()
    assert fresh["open"] == 10
    assert fresh["os.stat"] == 1


def test_score_is_the_sum_of_weights():
    assert aiocop.calculate_io_severity_score([info(50), info(10), info(1), info(0)]) == 61


def test_score_counts_unknown_weight_as_moderate():
    assert aiocop.calculate_io_severity_score([info(None), info(1)]) == 11


def test_score_of_no_events_is_zero():
    assert aiocop.calculate_io_severity_score([]) == 0
    assert aiocop.calculate_io_severity_score(None) == 0


def test_severity_levels_from_score():
    levels = {score: aiocop.get_severity_level_from_score(score) for score in (0, 1, 9, 10, 49, 50, 51, 1000)}

    assert levels == {0: "low", 1: "low", 9: "low", 10: "medium", 49: "medium", 50: "high", 51: "high", 1000: "high"}


def test_format_blocking_event_from_raw_event():
    raw = {
        "event_name": "open",
        "raw_args": ("/etc/hosts", "r", 524288),
        "raw_stack": [
            ("/home/dev/project/src/app/views.py", 12, "handler"),
            ("/usr/lib/python3.11/asyncio/events.py", 80, "_run"),
            ("/venv/lib/python3.11/site-packages/starlette/routing.py", 5, "call"),
            ("/opt/service/main.py", 3, "main"),
        ],
        "timestamp": 1700000000.0,
        "severity": 10,
    }

    assert aiocop.format_blocking_event(raw) == {
        "event": "open(/etc/hosts, r, 524288)",
        "trace": (
            "app/views.py:12:handler <- events.py:80:_run <- starlette/routing.py:5:call <- /opt/service/main.py:3:main"
        ),
        "entry_point": "app/views.py:12:handler",
        "severity": 10,
    }


def test_format_blocking_event_unwraps_args_and_kwargs():
    raw = {
        "event_name": "os.stat",
        "raw_args": (("/tmp/x",), {"follow_symlinks": False}),
        "raw_stack": [("/opt/app.py", 7, "f")],
        "timestamp": 0.0,
        "severity": 1,
    }

    formatted = aiocop.format_blocking_event(raw)

    assert formatted["event"] == "os.stat(/tmp/x)"
    assert formatted["entry_point"] == formatted["trace"] == "/opt/app.py:7:f"


def test_format_blocking_event_truncates_long_args():
    raw = {"event_name": "x", "raw_args": ("a" * 150, 7), "raw_stack": [], "timestamp": 0.0, "severity": None}

    assert aiocop.format_blocking_event(raw)["event"] == f"x({'a' * 100}, 7)"


def test_format_blocking_event_without_stack():
    raw = {"event_name": "time.sleep", "raw_args": (0.1,), "raw_stack": [], "timestamp": 0.0, "severity": 50}

    assert aiocop.format_blocking_event(raw) == {
        "event": "time.sleep(0.1)",
        "trace": "",
        "entry_point": "unknown",
        "severity": 50,
    }


def test_format_blocking_event_with_unprintable_args():
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    raw = {"event_name": "x", "raw_args": (Unprintable(),), "raw_stack": [], "timestamp": 0.0, "severity": 0}

    assert aiocop.format_blocking_event(raw)["event"] == "x(error_formatting_args)"
