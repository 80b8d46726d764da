//! `aiocop-analyze [report]` on real traces: ranking, counts, keys and
//! severities in every format, every `--by`, every filter, and the inputs.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fleet(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = test_dir(name);
    let (one, two) = write_fleet(&dir);
    (dir, one, two)
}

/// Runs a report with `--format json` and parses it; asserts success and a silent stderr.
fn json(args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json"]);
    let output = run(&all);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert_eq!(stderr(&output), "");
    serde_json::from_str(&stdout(&output)).expect("the report is JSON")
}

/// (key, slices, events, severity_score, severity_level, exceeded) of every group.
fn rows(report: &Value) -> Vec<(String, u64, u64, i64, String, u64)> {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_owned(),
                g["slices"].as_u64().unwrap(),
                g["events"].as_u64().unwrap(),
                g["severity_score"].as_i64().unwrap(),
                g["severity_level"].as_str().unwrap().to_owned(),
                g["exceeded"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(
    key: &str,
    slices: u64,
    events: u64,
    score: i64,
    level: &str,
    exceeded: u64,
) -> (String, u64, u64, i64, String, u64) {
    (key.to_owned(), slices, events, score, level.to_owned(), exceeded)
}

fn keys(report: &Value, list: &str) -> Vec<String> {
    report[list].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap().to_owned()).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `text` with every run of spaces or of a table's rule characters as one.
fn collapse_padding(text: &str) -> String {
    let mut collapsed = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ' ' | '─' | '═') && collapsed.ends_with(c) {
            continue;
        }
        collapsed.push(c);
    }
    collapsed
}

#[test]
fn the_table_ranks_entry_points_by_severity() {
    let (dir, _, _) = fleet("table");
    let output = run([path(&dir)]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stderr(&output), "");
    let text = stdout(&output).replace(path(&dir), "DIR");
    let expected = "\
Loop time: 0.691 s busy of 4.000 s recorded; 100% of the time in slices of 2 ms or more (0.690 s) is explained by a stack
Samples missing: 1 of the 2 traces have no CPU samples (recorded without sampling, or before it existed), so time without blocking I/O goes to what ran (a coroutine or callback), not to a line
Samples count-weighted: 1 of the 2 traces have samples that carry no times (recorded before trace format 1.3), so each stands for an equal share of its slice and a long C call's time is split between its caller and the code after it
┌───┬─────────────────────────────────┬─────────┬───────┬─────────┬─────────┬────────┬─────────┬──────────┐
│ # ┆ entry point                     ┆ busy ms ┆ share ┆   io ms ┆  cpu ms ┆ slices ┆ samples ┆ from     │
╞═══╪═════════════════════════════════╪═════════╪═══════╪═════════╪═════════╪════════╪═════════╪══════════╡
│ 1 ┆ shop/compute.py:30:crunch       ┆ 200.000 ┆ 28.9% ┆   0.000 ┆ 200.000 ┆      1 ┆       2 ┆ samples  │
│ 2 ┆ shop/handlers.py:42:get_user    ┆ 185.000 ┆ 26.8% ┆ 185.000 ┆   0.000 ┆      2 ┆       0 ┆ events   │
│ 3 ┆ socket.py:850:create_connection ┆ 120.000 ┆ 17.4% ┆ 120.000 ┆   0.000 ┆      1 ┆       0 ┆ events   │
│ 4 ┆ encoder.py:200:encode           ┆ 100.000 ┆ 14.5% ┆   0.000 ┆ 100.000 ┆      1 ┆       1 ┆ samples  │
│ 5 ┆ shop/config.py:7:load           ┆  80.000 ┆ 11.6% ┆  80.000 ┆   0.000 ┆      3 ┆       0 ┆ events   │
│ 6 ┆ __init__.py:1200:emit           ┆   5.000 ┆  0.7% ┆   5.000 ┆   0.000 ┆      1 ┆       0 ┆ events   │
│ 7 ┆ tick                            ┆   1.050 ┆  0.1% ┆   0.000 ┆   1.050 ┆      2 ┆       0 ┆ what ran │
└───┴─────────────────────────────────┴─────────┴───────┴─────────┴─────────┴────────┴─────────┴──────────┘

Stalls: 4 stalls of at least the threshold (100 ms) without getting back to waiting for I/O, 680.000 ms in all
Stalls guessed: none of the 2 traces records its loop's iterations (recorded before format 1.3, or by uvloop, whose iterations are not visible), so its stalls are slices at most --stall-gap-us apart, which can chain requests the loop polled between
┌───┬───────────────────────────────────────────┬─────────┬─────────────┬────────┬─────────────────────────────────────────────────────────────────────────┐
│ # ┆ trace, thread                             ┆ start s ┆ duration ms ┆ slices ┆ most time in                                                            │
╞═══╪═══════════════════════════════════════════╪═════════╪═════════════╪════════╪═════════════════════════════════════════════════════════════════════════╡
│ 1 ┆ DIR/web-1.bin, 1 ┆   1.000 ┆     300.000 ┆      1 ┆ shop/compute.py:30:crunch 200.000 ms, encoder.py:200:encode 100.000 ms  │
│ 2 ┆ DIR/web-1.bin, 1 ┆   0.100 ┆     150.000 ┆      1 ┆ shop/config.py:7:load 75.000 ms, shop/handlers.py:42:get_user 75.000 ms │
│ 3 ┆ DIR/web-1.bin, 1 ┆   1.500 ┆     120.000 ┆      1 ┆ socket.py:850:create_connection 120.000 ms                              │
│ 4 ┆ DIR/web-2.bin, 1 ┆   0.200 ┆     110.000 ┆      1 ┆ shop/handlers.py:42:get_user 110.000 ms                                 │
└───┴───────────────────────────────────────────┴─────────┴─────────────┴────────┴─────────────────────────────────────────────────────────────────────────┘

Blocking I/O by entry point:
┌───┬─────────────────────────────────┬────────┬────────┬───────┬────────┬──────┬──────────┬─────────┬─────────┬─────────┬─────────┬──────────────────────────┐
│ # ┆ entry point                     ┆ slices ┆ events ┆ score ┆ level  ┆ over ┆ total ms ┆  p50 ms ┆  p95 ms ┆  p99 ms ┆  max ms ┆ top events               │
╞═══╪═════════════════════════════════╪════════╪════════╪═══════╪════════╪══════╪══════════╪═════════╪═════════╪═════════╪═════════╪══════════════════════════╡
│ 1 ┆ shop/handlers.py:42:get_user    ┆      2 ┆      2 ┆   100 ┆ high   ┆    2 ┆  260.000 ┆ 110.000 ┆ 150.000 ┆ 150.000 ┆ 150.000 ┆ time.sleep ×2            │
│ 2 ┆ socket.py:850:create_connection ┆      1 ┆      1 ┆    50 ┆ high   ┆    1 ┆  120.000 ┆ 120.000 ┆ 120.000 ┆ 120.000 ┆ 120.000 ┆ socket.socket.connect ×1 │
│ 3 ┆ shop/config.py:7:load           ┆      3 ┆      3 ┆    30 ┆ medium ┆    1 ┆  155.000 ┆   3.000 ┆ 150.000 ┆ 150.000 ┆ 150.000 ┆ open ×3                  │
│ 4 ┆ __init__.py:1200:emit           ┆      1 ┆      1 ┆     1 ┆ low    ┆    0 ┆    5.000 ┆   5.000 ┆   5.000 ┆   5.000 ┆   5.000 ┆ os.stat ×1               │
└───┴─────────────────────────────────┴────────┴────────┴───────┴────────┴──────┴──────────┴─────────┴─────────┴─────────┴─────────┴──────────────────────────┘

Example traces (innermost frame first):
1. shop/handlers.py:42:get_user: time.sleep(0.12)
        shop/handlers.py:42:get_user
     <- shop/handlers.py:10:handle_request
2. socket.py:850:create_connection: socket.socket.connect(('10.0.0.5', 6379))
        socket.py:850:create_connection
     <- shop/client.py:12:fetch
     <- shop/handlers.py:43:get_user
3. shop/config.py:7:load: open(/etc/shop.toml, r)
        shop/config.py:7:load
     <- shop/handlers.py:11:handle_request

CPU-blocking slices (over the threshold, no blocking I/O), by most sampled frame:
┌───┬───────────────────────────┬────────┬─────────┬──────────┬─────────┬─────────┬─────────┬─────────┐
│ # ┆ most sampled frame        ┆ slices ┆ samples ┆ total ms ┆  p50 ms ┆  p95 ms ┆  p99 ms ┆  max ms │
╞═══╪═══════════════════════════╪════════╪═════════╪══════════╪═════════╪═════════╪═════════╪═════════╡
│ 1 ┆ shop/compute.py:30:crunch ┆      1 ┆       3 ┆  300.000 ┆ 300.000 ┆ 300.000 ┆ 300.000 ┆ 300.000 │
└───┴───────────────────────────┴────────┴─────────┴──────────┴─────────┴─────────┴─────────┴─────────┘

Slices: 9 in 4.000 s recorded, 4 over the threshold
Blocking I/O: 6 slices, 7 events
CPU-blocking: 1 slice over the threshold without blocking I/O; most at shop/compute.py:30:crunch (1 slice)
Stalls: 4, 680.000 ms
Dropped by the recorder: 2 slices, 0 events past 50 in a slice
Trace 'DIR/web-1.bin': label v1, host web-1, Python 3.12.1, threshold 100 ms
Trace 'DIR/web-2.bin': label v2, host web-2, Python 3.12.1, threshold 100 ms
";
    // The stalls table is as wide as the test directory's path: compare
    // with padding and rules collapsed.
    assert_eq!(collapse_padding(&text), collapse_padding(expected));
    // `report` is the default command.
    assert_eq!(stdout(&run(["report", path(&dir)])), stdout(&output));
}

#[test]
fn the_json_report_is_the_documented_contract() {
    let (dir, one, two) = fleet("json");
    let report = json(&[path(&one), path(&two)]);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["by"], "entry-point");
    assert_eq!(
        rows(&report),
        [
            row("shop/handlers.py:42:get_user", 2, 2, 100, "high", 2),
            row("socket.py:850:create_connection", 1, 1, 50, "high", 1),
            row("shop/config.py:7:load", 3, 3, 30, "medium", 1),
            row("__init__.py:1200:emit", 1, 1, 1, "low", 0),
        ]
    );
    let config = &report["groups"][2];
    assert_eq!(config["rank"], 3);
    for (field, value) in
        [("total_ms", 155.0), ("p50_ms", 3.0), ("p95_ms", 150.0), ("p99_ms", 150.0), ("max_ms", 150.0)]
    {
        assert_eq!(config[field].as_f64(), Some(value), "{field}");
    }
    assert_eq!(config["top_events"], serde_json::json!([{"event": "open", "count": 3}]));
    assert_eq!(config["example_trace"], "shop/config.py:7:load <- shop/handlers.py:11:handle_request");
    assert_eq!(config["example_event"], "open(/etc/shop.toml, r)");
    assert_eq!(report["groups_not_shown"], 0);
    assert_eq!(
        report["cpu_groups"],
        serde_json::json!([{
            "rank": 1, "key": "shop/compute.py:30:crunch", "slices": 1, "samples": 3,
            "total_ms": 300.0, "p50_ms": 300.0, "p95_ms": 300.0, "p99_ms": 300.0, "max_ms": 300.0,
            "example_trace": "shop/compute.py:30:crunch <- shop/handlers.py:20:report"
        }])
    );
    assert_eq!(
        report["totals"],
        serde_json::json!({
            "traces": 2, "slices": 9, "blocking_slices": 6, "exceeded": 4, "cpu_blocking": 1, "events": 7,
            "dropped": 2, "dropped_events": 0, "allowed_events": 0, "allowed_by": {}, "traces_before_allowed": 0,
            "duration_s": 4.0, "groups": 4, "cpu_groups": 1,
            "stalls": 4, "stall_ms": 680.0
        })
    );
    assert_eq!(
        report["traces"][1],
        serde_json::json!({
            "path": path(&dir.join("web-2.bin")), "format_version": "1.5", "aiocop_version": "1.3.0",
            "python_version": "3.12.1", "platform": "linux", "host": "web-2", "pid": 4242,
            "parent_pid": 0, "role": "", "root_command": [], "label": "v2",
            "threshold_ms": 100.0, "start_unix_ns": 1_714_564_800_000_000_000u64, "duration_s": 1.0, "slices": 2,
            "samples": 0, "chunks": 2, "unreadable_chunks": 0, "cut_short": false
        })
    );
    assert_eq!(
        report["options"],
        serde_json::json!({
            "threshold_ms": null, "since_s": null, "until_s": null, "exceeded_only": false, "min_severity": null,
            "ignore": [], "label": null, "app_roots": [], "sort": "score", "top": null, "long_ms": 2.0
        })
    );
}

#[test]
fn csv_has_one_row_per_group() {
    let (dir, _, _) = fleet("csv");
    let output = run([path(&dir), "--format", "csv"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "\
rank,key,slices,events,severity_score,severity_level,exceeded,total_ms,p50_ms,p95_ms,p99_ms,max_ms,top_events,example_trace,example_event,busy_ms
1,shop/handlers.py:42:get_user,2,2,100,high,2,260.000,110.000,150.000,150.000,150.000,time.sleep:2,shop/handlers.py:42:get_user <- shop/handlers.py:10:handle_request,time.sleep(0.12),185.000
2,socket.py:850:create_connection,1,1,50,high,1,120.000,120.000,120.000,120.000,120.000,socket.socket.connect:1,socket.py:850:create_connection <- shop/client.py:12:fetch <- shop/handlers.py:43:get_user,\"socket.socket.connect(('10.0.0.5', 6379))\",120.000
3,shop/config.py:7:load,3,3,30,medium,1,155.000,3.000,150.000,150.000,150.000,open:3,shop/config.py:7:load <- shop/handlers.py:11:handle_request,\"open(/etc/shop.toml, r)\",80.000
4,__init__.py:1200:emit,1,1,1,low,0,5.000,5.000,5.000,5.000,5.000,os.stat:1,__init__.py:1200:emit <- shop/handlers.py:44:get_user,os.stat(/var/log/shop.log),5.000
"
    );
}

#[test]
fn markdown_is_a_github_table() {
    let (dir, _, _) = fleet("markdown");
    let output = run([path(&dir), "--format", "markdown", "--top", "2"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output).replace(path(&dir), "DIR");
    assert_eq!(
        text,
        "\
**Loop time**: 0.691 s busy of 4.000 s recorded; 100% of the time in slices of 2 ms or more (0.690 s) is explained by a stack

Samples missing: 1 of the 2 traces have no CPU samples (recorded without sampling, or before it existed), so time without blocking I/O goes to what ran (a coroutine or callback), not to a line

Samples count-weighted: 1 of the 2 traces have samples that carry no times (recorded before trace format 1.3), so each stands for an equal share of its slice and a long C call's time is split between its caller and the code after it

| # | entry point | busy ms | share | io ms | cpu ms | slices | samples | from |
|--:|:--|--:|--:|--:|--:|--:|--:|:--|
| 1 | `shop/compute.py:30:crunch` | 200.000 | 28.9% | 0.000 | 200.000 | 1 | 2 | samples |
| 2 | `shop/handlers.py:42:get_user` | 185.000 | 26.8% | 185.000 | 0.000 | 2 | 0 | events |

… and 5 more, 306.050 ms.

**Stalls**: 4 stalls of at least the threshold (100 ms) without getting back to waiting for I/O, 680.000 ms in all

Stalls guessed: none of the 2 traces records its loop's iterations (recorded before format 1.3, or by uvloop, whose iterations are not visible), so its stalls are slices at most --stall-gap-us apart, which can chain requests the loop polled between

| # | trace, thread | start s | duration ms | slices | most time in |
|--:|:--|--:|--:|--:|:--|
| 1 | `DIR/web-1.bin, 1` | 1.000 | 300.000 | 1 | shop/compute.py:30:crunch 200.000 ms, encoder.py:200:encode 100.000 ms |
| 2 | `DIR/web-1.bin, 1` | 0.100 | 150.000 | 1 | shop/config.py:7:load 75.000 ms, shop/handlers.py:42:get_user 75.000 ms |

… and 2 more.

**Blocking I/O** by entry point:

| # | entry point | slices | events | score | level | over | total ms | p50 ms | p95 ms | p99 ms | max ms | top events |
|--:|:--|--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|:--|
| 1 | `shop/handlers.py:42:get_user` | 2 | 2 | 100 | high | 2 | 260.000 | 110.000 | 150.000 | 150.000 | 150.000 | time.sleep ×2 |
| 2 | `socket.py:850:create_connection` | 1 | 1 | 50 | high | 1 | 120.000 | 120.000 | 120.000 | 120.000 | 120.000 | socket.socket.connect ×1 |

… and 2 more.

**CPU-blocking slices** (over the threshold, no blocking I/O), by most sampled frame:

| # | most sampled frame | slices | samples | total ms | p50 ms | p95 ms | p99 ms | max ms |
|--:|:--|--:|--:|--:|--:|--:|--:|--:|
| 1 | `shop/compute.py:30:crunch` | 1 | 3 | 300.000 | 300.000 | 300.000 | 300.000 | 300.000 |

- Slices: 9 in 4.000 s recorded, 4 over the threshold
- Blocking I/O: 6 slices, 7 events
- CPU-blocking: 1 slice over the threshold without blocking I/O; most at shop/compute.py:30:crunch (1 slice)
- Stalls: 4, 680.000 ms
- Dropped by the recorder: 2 slices, 0 events past 50 in a slice
- Trace 'DIR/web-1.bin': label v1, host web-1, Python 3.12.1, threshold 100 ms
- Trace 'DIR/web-2.bin': label v2, host web-2, Python 3.12.1, threshold 100 ms
"
    );
}

#[test]
fn every_grouping_key() {
    let (dir, _, _) = fleet("by");
    let by = |key: &str| json(&[path(&dir), "--by", key]);

    let app = by("app-frame");
    assert_eq!(
        rows(&app),
        [
            row("shop/handlers.py:42:get_user", 2, 2, 100, "high", 2),
            row("shop/client.py:12:fetch", 1, 1, 50, "high", 1),
            row("shop/config.py:7:load", 3, 3, 30, "medium", 1),
            row("shop/handlers.py:44:get_user", 1, 1, 1, "low", 0),
        ]
    );
    // A root takes over from the library rules: the standard library is "mine".
    let rooted = json(&[path(&dir), "--by", "app-frame", "--app-root", "/usr/lib/python3.12"]);
    assert_eq!(
        keys(&rooted, "groups"),
        [
            "shop/handlers.py:42:get_user",
            "socket.py:850:create_connection",
            "shop/config.py:7:load",
            "__init__.py:1200:emit"
        ]
    );
    // No frame of the CPU sample is under the root: its entry point.
    assert_eq!(keys(&rooted, "cpu_groups"), ["shop/compute.py:30:crunch"]);

    assert_eq!(
        rows(&by("event")),
        [
            row("time.sleep", 2, 2, 100, "high", 2),
            row("socket.socket.connect", 1, 1, 50, "high", 1),
            row("open", 3, 3, 30, "medium", 1),
            row("os.stat", 1, 1, 1, "low", 0),
        ]
    );
    let task = by("task");
    assert_eq!(
        rows(&task),
        [row("handle_request", 5, 6, 171, "high", 3), row("refresh_config", 1, 1, 10, "medium", 0)]
    );
    assert_eq!(keys(&task, "cpu_groups"), ["build_report"]);
    let context = by("context:endpoint");
    assert_eq!(rows(&context), [row("/users", 4, 5, 161, "high", 3), row("/config", 2, 2, 20, "medium", 0)]);
    assert_eq!(keys(&context, "cpu_groups"), ["/report"]);
    assert_eq!(rows(&by("context:tenant")), [row("<no tenant>", 6, 7, 181, "high", 3)]);
    let stack = by("stack");
    assert_eq!(
        keys(&stack, "groups"),
        [
            "shop/handlers.py:42:get_user <- shop/handlers.py:10:handle_request",
            "socket.py:850:create_connection <- shop/client.py:12:fetch <- shop/handlers.py:43:get_user",
            "shop/config.py:7:load <- shop/handlers.py:11:handle_request",
            "shop/config.py:7:load <- shop/tasks.py:5:refresh_config",
            "__init__.py:1200:emit <- shop/handlers.py:44:get_user",
        ]
    );
}

#[test]
fn filters_choose_rows_and_inputs_change_totals() {
    let (dir, one, _) = fleet("filters");
    let d = path(&dir);
    let totals = |report: &Value| {
        let t = &report["totals"];
        ["slices", "blocking_slices", "exceeded", "cpu_blocking", "events"].map(|f| t[f].as_u64().unwrap())
    };

    let medium = json(&[d, "--min-severity", "medium"]);
    assert_eq!(
        keys(&medium, "groups"),
        ["shop/handlers.py:42:get_user", "socket.py:850:create_connection", "shop/config.py:7:load"]
    );
    assert_eq!(medium["totals"]["groups"], 3);
    let high = json(&[d, "--min-severity", "high"]);
    assert_eq!(keys(&high, "groups"), ["shop/handlers.py:42:get_user", "socket.py:850:create_connection"]);
    assert_eq!(keys(&high, "cpu_groups"), ["shop/compute.py:30:crunch"]);

    // Only slow slices count in groups; the totals still describe everything read.
    let slow = json(&[d, "--exceeded-only"]);
    assert_eq!(
        rows(&slow),
        [
            row("shop/handlers.py:42:get_user", 2, 2, 100, "high", 2),
            row("socket.py:850:create_connection", 1, 1, 50, "high", 1),
            row("shop/config.py:7:load", 1, 1, 10, "medium", 1),
        ]
    );
    assert_eq!(totals(&slow), [9, 6, 4, 1, 7]);

    // Known blocking: the logging frame, matched on its recorded path, and
    // config loading by its formatted frame.
    let ignored = json(&[d, "--ignore", "*/logging/*", "--ignore", "*config.py:7:*"]);
    assert_eq!(keys(&ignored, "groups"), ["shop/handlers.py:42:get_user", "socket.py:850:create_connection"]);
    assert_eq!(totals(&ignored), [9, 3, 4, 1, 3]);
    assert_eq!(ignored["options"]["ignore"], serde_json::json!(["*/logging/*", "*config.py:7:*"]));

    let v2 = json(&[d, "--label", "v2"]);
    assert_eq!(
        rows(&v2),
        [row("shop/handlers.py:42:get_user", 1, 1, 50, "high", 1), row("shop/config.py:7:load", 1, 1, 10, "medium", 0)]
    );
    assert_eq!(v2["totals"]["traces"], 1);
    assert_eq!(json(&[d, "--label", "v*"])["totals"]["traces"], 2);

    // Slices starting in [1 s, 2.1 s): s4, s5 and s6 of worker 1 only.
    let window = json(&[d, "--since", "1", "--until", "2.1"]);
    assert_eq!(keys(&window, "groups"), ["socket.py:850:create_connection", "__init__.py:1200:emit"]);
    assert_eq!(totals(&window), [3, 2, 2, 1, 2]);
    // Worker 1's 3 s are cut to 1.1 s, worker 2's 1 s to nothing.
    assert_eq!(window["totals"]["duration_s"], 1.1);
    assert_eq!(window["options"]["since_s"], 1.0);

    // Re-evaluated at 1 ms: s7 (1 ms, no event, no samples) is now CPU-blocking.
    let strict = json(&[path(&one), "--threshold-ms", "1"]);
    assert_eq!(totals(&strict), [7, 4, 6, 2, 5]);
    assert_eq!(keys(&strict, "cpu_groups"), ["shop/compute.py:30:crunch", "<no samples>"]);
    assert_eq!(rows(&strict)[2], row("shop/config.py:7:load", 2, 2, 20, "medium", 2));
    // ... and at 200 ms only the 300 ms CPU slice is slow.
    let lenient = json(&[path(&one), "--threshold-ms", "200"]);
    assert_eq!(totals(&lenient), [7, 4, 1, 1, 5]);
    assert!(rows(&lenient).iter().all(|r| r.5 == 0));

    let top = json(&[d, "--top", "1", "--sort", "slices"]);
    assert_eq!(keys(&top, "groups"), ["shop/config.py:7:load"]);
    assert_eq!(top["groups_not_shown"], 3);
    assert_eq!(top["options"]["sort"], "slices");
}

#[test]
fn every_sort_column() {
    let (dir, _, _) = fleet("sort");
    let order = |column: &str| -> Vec<String> {
        keys(&json(&[path(&dir), "--sort", column]), "groups")
            .iter()
            .map(|key| key.split(':').next().unwrap().rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    // handlers (2 slices, 100, high, 260 ms), socket (1, 50, high, 120 ms),
    // config (3, 30, medium, 155 ms, p50 3 ms), __init__ (1, 1, low, 5 ms)
    let by_score = ["handlers.py", "socket.py", "config.py", "__init__.py"];
    for column in ["score", "severity_score", "level", "severity_level"] {
        assert_eq!(order(column), by_score, "{column}");
    }
    assert_eq!(order("key"), ["__init__.py", "config.py", "handlers.py", "socket.py"]);
    assert_eq!(order("slices"), ["config.py", "handlers.py", "socket.py", "__init__.py"]);
    assert_eq!(order("events"), ["config.py", "handlers.py", "socket.py", "__init__.py"]);
    assert_eq!(order("exceeded"), ["handlers.py", "socket.py", "config.py", "__init__.py"]);
    assert_eq!(order("total"), ["handlers.py", "config.py", "socket.py", "__init__.py"]);
    assert_eq!(order("total_ms"), ["handlers.py", "config.py", "socket.py", "__init__.py"]);
    assert_eq!(order("p50"), ["socket.py", "handlers.py", "__init__.py", "config.py"]);
    assert_eq!(order("p95"), ["handlers.py", "config.py", "socket.py", "__init__.py"]);
    assert_eq!(order("p99_ms"), ["handlers.py", "config.py", "socket.py", "__init__.py"]);
    assert_eq!(order("max"), ["handlers.py", "config.py", "socket.py", "__init__.py"]);
}

#[test]
fn scores_use_the_weights_the_trace_was_recorded_with() {
    let dir = test_dir("weights");
    // A recorder whose table weighs `open` 60 (high) and `time.sleep` 0.
    let mut header = header(None, "h", 100);
    for spec in &mut header.event_table {
        match spec.name.as_str() {
            "open" => spec.weight = 60,
            "time.sleep" => spec.weight = 0,
            _ => {}
        }
    }
    let mut builder = TraceBuilder::new(header, 0);
    builder.slice(Slice {
        start_ns: 0,
        duration_ns: MS,
        what: "w",
        events: vec![("open", "a", config_stack()), ("time.sleep", "1", sleep_stack())],
        ..Slice::default()
    });
    let trace = builder.write(&dir.join("weights.bin"), Some(10 * MS));
    let report = json(&[path(&trace)]);
    assert_eq!(
        rows(&report),
        [row("shop/config.py:7:load", 1, 1, 60, "high", 0), row("shop/handlers.py:42:get_user", 1, 1, 0, "low", 0)]
    );
    // Weighed alike, one slice's two events at one key count once, summed.
    let report = json(&[path(&trace), "--by", "task"]);
    assert_eq!(rows(&report), [row("w", 1, 2, 60, "high", 0)]);
}
