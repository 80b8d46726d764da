//! `aiocop-analyze diff` on real traces of two releases of one app: every
//! status, the per-1k numbers, every `--fail-on` mode's exit code, the
//! event table change, and the JSON, CSV and markdown outputs.

mod common;

use aiocop_trace::records::TraceHeader;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const CONFIG: At = ("app/config.py", 7, "load");
const HANDLERS: At = ("app/handlers.py", 42, "get_user");
const CACHE: At = ("app/cache.py", 9, "warm");
const DB: At = ("app/db.py", 30, "query");
const REPORT: At = ("app/report.py", 12, "render");

/// A run of `total` slices, of which `blocking` come first: `(count, event,
/// frame, duration_ms)`; the others are pure 1 ms slices.
fn write_run(path: &Path, header: TraceHeader, total: u64, blocking: &[(u64, &str, At, u64)]) -> PathBuf {
    let mut trace = TraceBuilder::new(header, 0);
    let mut start_ns = 0;
    let mut written = 0;
    for &(count, event, at, duration_ms) in blocking {
        for _ in 0..count {
            trace.slice(Slice {
                start_ns,
                duration_ns: duration_ms * MS,
                what: "handle_request",
                events: vec![(event, "x", vec![at, ("app/main.py", 5, "serve")])],
                ..Slice::default()
            });
            start_ns += 100 * MS;
            written += 1;
        }
    }
    for _ in written..total {
        trace.slice(Slice { start_ns, duration_ns: MS, what: "tick", ..Slice::default() });
        start_ns += 10 * MS;
    }
    trace.write(path, Some(start_ns))
}

/// Base (v1, 10,000 slices) and new (v2, 20,000 slices): the config read is
/// fixed (gone), the handler's sleep happens twice as often (regressed), the
/// cache warm-up is as frequent (unchanged), the database connect half as
/// frequent (improved), the report's sleep is new (high). Counts are large
/// enough for each change to be beyond chance.
fn write_releases(dir: &Path, new_header: TraceHeader) -> (PathBuf, PathBuf) {
    let base = write_run(
        &dir.join("base.bin"),
        header(Some("v1"), "ci", 100),
        10_000,
        &[
            (100, "open", CONFIG, 2),
            (50, "time.sleep", HANDLERS, 20),
            (40, "os.stat", CACHE, 2),
            (100, "socket.socket.connect", DB, 5),
        ],
    );
    let new = write_run(
        &dir.join("new.bin"),
        new_header,
        20_000,
        &[
            (200, "time.sleep", HANDLERS, 20),
            (80, "os.stat", CACHE, 2),
            (40, "socket.socket.connect", DB, 5),
            (30, "time.sleep", REPORT, 150),
        ],
    );
    (base, new)
}

fn releases(name: &str) -> (PathBuf, PathBuf) {
    write_releases(&test_dir(name), header(Some("v2"), "ci", 100))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn diff_json(base: &Path, new: &Path, more: &[&str]) -> Value {
    let mut args = vec!["diff", path(base), path(new), "--format", "json"];
    args.extend(more);
    let output = run(&args);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("the diff is JSON")
}

/// (key, status) of every row, in order.
fn statuses(diff: &Value) -> Vec<(String, String)> {
    diff["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, s)| (k.to_string(), s.to_string())).collect()
}

#[test]
fn every_status_most_severe_first_and_unchanged_only_with_all() {
    let (base, new) = releases("diff-statuses");
    let diff = diff_json(&base, &new, &[]);
    assert_eq!(
        statuses(&diff),
        // By how much severity per 1k slices rose: +250, +75, -100, -400.
        pairs(&[
            ("app/handlers.py:42:get_user", "regressed"),
            ("app/report.py:12:render", "new"),
            ("app/config.py:7:load", "gone"),
            ("app/db.py:30:query", "improved"),
        ])
    );
    assert_eq!(diff["rows_not_shown"], 1);
    assert_eq!(diff["counts"], serde_json::json!({"new": 1, "regressed": 1, "unchanged": 1, "improved": 1, "gone": 1}));
    let all = diff_json(&base, &new, &["--all"]);
    assert_eq!(statuses(&all)[2], ("app/cache.py:9:warm".to_owned(), "unchanged".to_owned()));
    assert_eq!((all["rows"].as_array().unwrap().len(), all["rows_not_shown"].as_u64()), (5, Some(0)));
}

#[test]
fn values_are_normalised_per_thousand_slices_of_each_side() {
    let (base, new) = releases("diff-values");
    let diff = diff_json(&base, &new, &["--all"]);
    let row = |key: &str| diff["rows"].as_array().unwrap().iter().find(|r| r["key"] == key).unwrap().clone();

    // 50 of 10,000 slices slept (weight 50, 20 ms); then 200 of 20,000.
    let handler = row("app/handlers.py:42:get_user");
    assert_eq!(
        handler["base"],
        serde_json::json!({"slices": 50, "events": 50, "severity_score": 2500, "severity_level": "high", "exceeded": 0,
            "slices_per_1k": 5.0, "events_per_1k": 5.0, "severity_per_1k": 250.0, "exceeded_pct": 0.0,
            "p95_ms": 20.0, "max_ms": 20.0, "lines": [42]})
    );
    assert_eq!(
        (handler["new"]["events_per_1k"].as_f64(), handler["new"]["severity_per_1k"].as_f64()),
        (Some(10.0), Some(500.0))
    );
    assert_eq!(
        handler["change"],
        serde_json::json!({"slices_per_1k": 5.0, "events_per_1k": 5.0, "severity_per_1k": 250.0,
            "exceeded_pct": 0.0, "p95_ms": 0.0, "max_ms": 0.0})
    );
    // Twice the slices, twice the stats: the same rate.
    let cache = row("app/cache.py:9:warm");
    assert_eq!(
        (cache["base"]["events_per_1k"].as_f64(), cache["new"]["events_per_1k"].as_f64()),
        (Some(4.0), Some(4.0))
    );
    // New: no base side; over the 100 ms threshold.
    let report = row("app/report.py:12:render");
    assert_eq!(report["base"], Value::Null);
    assert_eq!(
        (
            report["new"]["severity_per_1k"].as_f64(),
            report["new"]["exceeded_pct"].as_f64(),
            report["new"]["severity_level"].as_str()
        ),
        (Some(75.0), Some(100.0), Some("high"))
    );
    assert_eq!((report["change"]["severity_per_1k"].as_f64(), &report["change"]["p95_ms"]), (Some(75.0), &Value::Null));
    assert_eq!(row("app/config.py:7:load")["new"], Value::Null);

    assert_eq!(diff["base"]["labels"], serde_json::json!(["v1"]));
    assert_eq!(diff["new"]["labels"], serde_json::json!(["v2"]));
    assert_eq!(
        (diff["base"]["totals"]["slices"].as_u64(), diff["new"]["totals"]["slices"].as_u64()),
        (Some(10_000), Some(20_000))
    );
    assert_eq!(diff["base"]["totals"]["events"], 290);
    assert_eq!(
        (diff["scored_with"].as_str(), diff["event_table_changes"].as_array().map(Vec::len)),
        (Some("new"), Some(0))
    );
    assert_eq!(
        diff["gate"],
        serde_json::json!({"fail_on": [], "min_count": 5, "confidence": 0.99, "min_increase_pct": 20.0,
            "min_p95_change_ms": 10.0, "min_slices_p95": 50, "skip_first_s": 0.0, "gate_one_time": false,
            "rise_tests": 9, "fall_tests": 9, "failed": false, "reasons": [], "routes_judged": null})
    );
}

#[test]
fn the_json_rows_are_exactly_these() {
    let (base, new) = releases("diff-json");
    let mut diff = diff_json(&base, &new, &[]);
    // The tests' p-values: each status is beyond chance at 0.99, and the
    // row says which tests were made.
    let measures = |row: &Value| -> Vec<String> {
        row["tests"].as_array().unwrap().iter().map(|t| t["measure"].as_str().unwrap().to_owned()).collect()
    };
    for row in diff["rows"].as_array_mut().unwrap() {
        let p_value = row["p_value"].as_f64().unwrap();
        assert!(p_value <= 0.01, "{row}");
        assert_eq!(row["one_time"], Value::Null);
        let expected: &[&str] = if row["key"] == "app/handlers.py:42:get_user" {
            &["events_per_1k", "severity_per_1k", "p95_ms"]
        } else {
            &["events_per_1k", "severity_per_1k"]
        };
        assert_eq!(measures(row), expected, "{row}");
        let object = row.as_object_mut().unwrap();
        object.remove("p_value");
        object.remove("tests");
        object.remove("one_time");
    }
    let expected = serde_json::json!(
    [
        {
            "key": "app/handlers.py:42:get_user",
            "identity": "app/handlers.py:get_user",
            "status": "regressed",
            "base": {
                "slices": 50,
                "events": 50,
                "severity_score": 2500,
                "severity_level": "high",
                "exceeded": 0,
                "slices_per_1k": 5.0,
                "events_per_1k": 5.0,
                "severity_per_1k": 250.0,
                "exceeded_pct": 0.0,
                "p95_ms": 20.0,
                "max_ms": 20.0,
                "lines": [42]
            },
            "new": {
                "slices": 200,
                "events": 200,
                "severity_score": 10000,
                "severity_level": "high",
                "exceeded": 0,
                "slices_per_1k": 10.0,
                "events_per_1k": 10.0,
                "severity_per_1k": 500.0,
                "exceeded_pct": 0.0,
                "p95_ms": 20.0,
                "max_ms": 20.0,
                "lines": [42]
            },
            "change": {
                "slices_per_1k": 5.0,
                "events_per_1k": 5.0,
                "severity_per_1k": 250.0,
                "exceeded_pct": 0.0,
                "p95_ms": 0.0,
                "max_ms": 0.0
            }
        },
        {
            "key": "app/report.py:12:render",
            "identity": "app/report.py:render",
            "status": "new",
            "base": null,
            "new": {
                "slices": 30,
                "events": 30,
                "severity_score": 1500,
                "severity_level": "high",
                "exceeded": 30,
                "slices_per_1k": 1.5,
                "events_per_1k": 1.5,
                "severity_per_1k": 75.0,
                "exceeded_pct": 100.0,
                "p95_ms": 150.0,
                "max_ms": 150.0,
                "lines": [12]
            },
            "change": {
                "slices_per_1k": 1.5,
                "events_per_1k": 1.5,
                "severity_per_1k": 75.0,
                "exceeded_pct": null,
                "p95_ms": null,
                "max_ms": null
            }
        },
        {
            "key": "app/config.py:7:load",
            "identity": "app/config.py:load",
            "status": "gone",
            "base": {
                "slices": 100,
                "events": 100,
                "severity_score": 1000,
                "severity_level": "medium",
                "exceeded": 0,
                "slices_per_1k": 10.0,
                "events_per_1k": 10.0,
                "severity_per_1k": 100.0,
                "exceeded_pct": 0.0,
                "p95_ms": 2.0,
                "max_ms": 2.0,
                "lines": [7]
            },
            "new": null,
            "change": {
                "slices_per_1k": -10.0,
                "events_per_1k": -10.0,
                "severity_per_1k": -100.0,
                "exceeded_pct": null,
                "p95_ms": null,
                "max_ms": null
            }
        },
        {
            "key": "app/db.py:30:query",
            "identity": "app/db.py:query",
            "status": "improved",
            "base": {
                "slices": 100,
                "events": 100,
                "severity_score": 5000,
                "severity_level": "high",
                "exceeded": 0,
                "slices_per_1k": 10.0,
                "events_per_1k": 10.0,
                "severity_per_1k": 500.0,
                "exceeded_pct": 0.0,
                "p95_ms": 5.0,
                "max_ms": 5.0,
                "lines": [30]
            },
            "new": {
                "slices": 40,
                "events": 40,
                "severity_score": 2000,
                "severity_level": "high",
                "exceeded": 0,
                "slices_per_1k": 2.0,
                "events_per_1k": 2.0,
                "severity_per_1k": 100.0,
                "exceeded_pct": 0.0,
                "p95_ms": 5.0,
                "max_ms": 5.0,
                "lines": [30]
            },
            "change": {
                "slices_per_1k": -8.0,
                "events_per_1k": -8.0,
                "severity_per_1k": -400.0,
                "exceeded_pct": 0.0,
                "p95_ms": 0.0,
                "max_ms": 0.0
            }
        }
    ]
    );
    assert_eq!(diff["rows"], expected);
}

#[test]
fn each_fail_on_mode_sets_the_exit_code_with_one_line_per_reason() {
    let (base, new) = releases("diff-gate");
    let gate = |more: &[&str]| {
        let mut args = vec!["diff", path(&base), path(&new), "--format", "json"];
        args.extend(more);
        let output = run(&args);
        (output.status.code().unwrap(), stderr(&output))
    };
    let new_high =
        "aiocop-analyze: gate: new high group 'app/report.py:render' (line 12): 30 slices, severity 75 per 1k \
                    slices; events per 1k slices 0 -> 1.5 (p < 0.001), severity per 1k slices 0 -> 75 (p < 0.001) \
                    at confidence 0.99\n";
    let regressed = "aiocop-analyze: gate: regressed 'app/handlers.py:get_user' (line 42): events per 1k slices \
                     5 -> 10 (x2.0, p < 0.001), severity per 1k slices 250 -> 500 (x2.0, p < 0.001) at confidence 0.99\n";
    assert_eq!(gate(&[]), (0, String::new()));
    assert_eq!(gate(&["--fail-on", "new-high"]), (1, new_high.to_owned()));
    assert_eq!(gate(&["--fail-on", "new"]), (1, new_high.to_owned()));
    assert_eq!(gate(&["--fail-on", "regressed"]), (1, regressed.to_owned()));
    assert_eq!(gate(&["--fail-on", "any"]), (1, format!("{regressed}{new_high}")));
    assert_eq!(gate(&["--fail-on", "new-high", "--fail-on", "regressed"]), (1, format!("{regressed}{new_high}")));
    // Noise control: the new group has 30 slices; the regression is +100%.
    assert_eq!(gate(&["--fail-on", "any", "--min-count", "31"]), (1, regressed.to_owned()));
    assert_eq!(gate(&["--fail-on", "new-high", "--min-count", "31"]), (0, String::new()));
    assert_eq!(gate(&["--fail-on", "regressed", "--min-increase", "150%"]), (0, String::new()));
    assert_eq!(gate(&["--fail-on", "regressed", "--min-increase", "100"]), (1, regressed.to_owned()));
    // At a confidence of 1 - 1e-9, a doubling from 50 to 200 is no longer beyond chance.
    assert_eq!(gate(&["--fail-on", "regressed", "--confidence", "0.999999999"]), (0, String::new()));
}

#[test]
fn the_markdown_is_a_pull_request_comment() {
    let (base, new) = releases("diff-markdown");
    let output = run(["diff", path(&base), path(&new), "--format", "markdown", "--fail-on", "new-high"]);
    assert_eq!(output.status.code(), Some(1));
    let expected = "\
**aiocop diff**: Base v1 → new v2, by entry point

| status | entry point | severity per 1k slices | events per 1k slices | p95 ms | max ms | % over threshold |
|:--|:--|--:|--:|--:|--:|--:|
| **regressed** | `app/handlers.py:42:get_user` | 250 → 500 (+100%) | 5 → 10 (+100%) | 20 → 20 | 20 → 20 | 0 → 0 |
| **new** | `app/report.py:12:render` | – → 75 | – → 1.5 | – → 150 | – → 150 | – → 100 |
| gone | `app/config.py:7:load` | 100 → – | 10 → – | 2 → – | 2 → – | 0 → – |
| improved | `app/db.py:30:query` | 500 → 100 (-80%) | 10 → 2 (-80%) | 5 → 5 | 5 → 5 | 0 → 0 |

- Base v1: 10000 slices in 126.100 s, 290 with blocking I/O (290 events), 0 over the threshold, 0 CPU-blocking, 0 dropped
- New v2: 20000 slices in 231.500 s, 350 with blocking I/O (350 events), 30 over the threshold, 0 CPU-blocking, 0 dropped
- Groups: 1 new, 1 regressed, 1 improved, 1 gone, 1 unchanged (not shown: --all shows them)
- Both sides scored with the new side's event weights, the same on both sides
- Gate (--fail-on new-high, confidence 0.99, groups of at least 5 slices on the new side, one-time work left out): failed (1 reason)
";
    assert_eq!(stdout(&output), expected);
}

#[test]
fn csv_has_a_base_and_a_new_column_per_value() {
    let (base, new) = releases("diff-csv");
    let output = run(["diff", path(&base), path(&new), "--format", "csv"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "key,identity,status,base_slices,new_slices,base_events,new_events,base_severity_score,\
             new_severity_score,base_severity_level,new_severity_level,base_exceeded,new_exceeded,\
             base_slices_per_1k,new_slices_per_1k,base_events_per_1k,new_events_per_1k,base_severity_per_1k,\
             new_severity_per_1k,base_exceeded_pct,new_exceeded_pct,base_p95_ms,new_p95_ms,base_max_ms,new_max_ms,\
             p_value,one_time"
        )
    );
    // The p-value last but one, then one_time (empty: null).
    let row = |line: Option<&str>| -> (String, f64) {
        let line = line.expect("a row");
        let (values, p_value) = line.trim_end_matches(',').rsplit_once(',').unwrap();
        (values.to_owned(), p_value.parse().unwrap())
    };
    let (handler, p_value) = row(lines.next());
    assert_eq!(
        handler,
        "app/handlers.py:42:get_user,app/handlers.py:get_user,regressed,50,200,50,200,2500,10000,high,high,0,0,5,10,5,\
         10,250,500,0,0,20,20,20,20"
    );
    assert!(p_value < 0.001, "{p_value}");
    let (report, p_value) = row(lines.next());
    assert_eq!(
        report,
        "app/report.py:12:render,app/report.py:render,new,,30,,30,,1500,,high,,30,,1.5,,1.5,,75,,100,,150,,150"
    );
    assert!(p_value < 0.001, "{p_value}");
    assert_eq!(lines.count(), 2);
}

#[test]
fn a_changed_event_table_is_reported_and_the_new_one_scores_both_sides() {
    let dir = test_dir("diff-weights");
    let mut new_header = header(Some("v2"), "ci", 100);
    let sleep = new_header.event_table.iter_mut().find(|e| e.name == "time.sleep").unwrap();
    sleep.weight = 10;
    let (base, new) = write_releases(&dir, new_header);
    let diff = diff_json(&base, &new, &[]);
    assert_eq!(
        diff["event_table_changes"],
        serde_json::json!([{"event": "time.sleep", "base_weight": 50, "new_weight": 10}])
    );
    let handler = diff["rows"].as_array().unwrap().iter().find(|r| r["key"] == "app/handlers.py:42:get_user").unwrap();
    // 5 sleeps in 1,000 slices at the new weight, 10: 50 per 1k; then 100 per 1k.
    assert_eq!(
        (handler["base"]["severity_per_1k"].as_f64(), handler["new"]["severity_per_1k"].as_f64()),
        (Some(50.0), Some(100.0))
    );
    let rescored = diff_json(&base, &new, &["--rescore", "base"]);
    assert_eq!(rescored["scored_with"], "base");
    let handler =
        rescored["rows"].as_array().unwrap().iter().find(|r| r["key"] == "app/handlers.py:42:get_user").unwrap();
    assert_eq!(
        (handler["base"]["severity_per_1k"].as_f64(), handler["new"]["severity_per_1k"].as_f64()),
        (Some(250.0), Some(500.0))
    );
    let table = run(["diff", path(&base), path(&new)]);
    assert!(stdout(&table)
        .contains("Both sides scored with the new side's event weights; they differ: time.sleep 50 → 10\n"));
}

#[test]
fn each_side_can_be_several_traces() {
    let dir = test_dir("diff-sides");
    let (base, new) = write_releases(&dir, header(Some("v2"), "ci", 100));
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let second_base =
        write_run(&other.join("base-2.bin"), header(Some("v1"), "ci", 100), 10_000, &[(50, "open", CONFIG, 2)]);
    let diff = diff_json(&base, &new, &["--base", path(&second_base)]);
    assert_eq!(diff["base"]["totals"]["slices"], 20_000);
    assert_eq!(diff["base"]["totals"]["traces"], 2);
    let config = diff["rows"].as_array().unwrap().iter().find(|r| r["key"] == "app/config.py:7:load").unwrap();
    assert_eq!(config["base"]["events_per_1k"], 7.5);
}

#[test]
fn unusable_inputs_exit_2_naming_the_file() {
    let (base, new) = releases("diff-bad");
    let missing = run(["diff", path(&base), "/no/such/new.bin"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(stderr(&missing), "aiocop-analyze: '/no/such/new.bin': no such file or directory\n");
    let junk = base.with_file_name("junk.bin");
    std::fs::write(&junk, b"not a trace at all, just some bytes").unwrap();
    let foreign = run(["diff", path(&junk), path(&new)]);
    assert_eq!(foreign.status.code(), Some(2));
    assert!(stderr(&foreign).starts_with(&format!("aiocop-analyze: '{}'", path(&junk))), "{}", stderr(&foreign));
    assert_eq!(stderr(&foreign).lines().count(), 1);
    let bad_percent = run(["diff", path(&base), path(&new), "--min-increase", "lots"]);
    assert_eq!(bad_percent.status.code(), Some(2));
    assert!(stdout(&missing).is_empty());
}

/// One deployment of a release: where its code is, and how many lines were
/// inserted above every function.
struct Deployment {
    root: &'static str,
    venv: &'static str,
    shift: i32,
}

/// A run of a shop in `deployment`: `total` slices, of which each route
/// blocks in `per_route[i]` slices (the pure ones 1 ms each).
fn write_shop(path: &Path, label: &str, deployment: &Deployment, total: u64, per_route: [u64; 3]) -> PathBuf {
    let file = |name: &str| -> &'static str { Box::leak(format!("{}/shop/{name}", deployment.root).into_boxed_str()) };
    let library = |name: &str| -> &'static str {
        Box::leak(format!("{}/lib/python3.12/site-packages/{name}", deployment.venv).into_boxed_str())
    };
    let line = |line: i32| line + deployment.shift;
    // The entry module is beside the package: the app root is the deployment's.
    let serve: At = (Box::leak(format!("{}/app.py", deployment.root).into_boxed_str()), line(5), "serve");
    let routes: [(&str, Vec<At>); 3] = [
        ("time.sleep", vec![(file("handlers.py"), line(42), "get_user"), serve]),
        ("open", vec![(file("config.py"), line(7), "load"), (file("handlers.py"), line(60), "get_cart"), serve]),
        (
            "socket.socket.connect",
            vec![
                (library("redis/connection.py"), 600, "connect"),
                (file("cache.py"), line(9), "warm"),
                serve,
                ("/usr/lib/python3.12/asyncio/events.py", 80, "_run"),
            ],
        ),
    ];
    let mut trace = TraceBuilder::new(header(Some(label), "ci", 100), 0);
    let mut start_ns = 0;
    for (route, &count) in routes.iter().zip(&per_route) {
        for i in 0..count {
            let (event, stack) = route;
            // Elapsed times spread over 1 to 10 ms, the same on both sides.
            let duration_ns = (1 + i % 10) * MS;
            trace.slice(Slice {
                start_ns,
                duration_ns,
                what: "handle",
                events: vec![(event, "x", stack.clone())],
                ..Slice::default()
            });
            start_ns += 20 * MS;
        }
    }
    for _ in per_route.iter().sum::<u64>()..total {
        trace.slice(Slice { start_ns, duration_ns: MS, what: "tick", ..Slice::default() });
        start_ns += 2 * MS;
    }
    trace.write(path, Some(start_ns))
}

#[test]
fn a_release_with_moved_lines_deployed_elsewhere_keeps_untouched_groups_unchanged() {
    let dir = test_dir("diff-release");
    let old = Deployment { root: "/srv/shop-1.4", venv: "/srv/shop-1.4/.venv", shift: 0 };
    let new = Deployment { root: "/home/runner/work/shop/checkout", venv: "/opt/venvs/shop-1.5", shift: 3 };
    let base = write_shop(&dir.join("base.bin"), "v1.4", &old, 20_000, [200, 150, 100]);
    // Twice as long a run; the cart's config read happens twice as often.
    let candidate = write_shop(&dir.join("new.bin"), "v1.5", &new, 40_000, [400, 600, 200]);
    for by in ["entry-point", "function", "app-frame", "stack"] {
        let diff = diff_json(&base, &candidate, &["--by", by, "--all"]);
        let rows = diff["rows"].as_array().unwrap();
        let statuses: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r["identity"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(statuses.len(), 3, "--by {by}: {statuses:?}");
        for (identity, status) in &statuses {
            let expected = if identity.contains("config.py:load") { "regressed" } else { "unchanged" };
            assert_eq!(status, expected, "--by {by}: {statuses:?}");
        }
        assert_eq!(diff["counts"]["new"], 0, "--by {by}");
        assert_eq!(diff["counts"]["gone"], 0, "--by {by}");
    }
    // Identities are line-free and deployment-free; lines stay as detail.
    let diff = diff_json(&base, &candidate, &["--by", "app-frame", "--all"]);
    let row =
        |identity: &str| diff["rows"].as_array().unwrap().iter().find(|r| r["identity"] == identity).unwrap().clone();
    let user = row("shop/handlers.py:get_user");
    assert_eq!(
        (user["base"]["lines"].clone(), user["new"]["lines"].clone()),
        (serde_json::json!([42]), serde_json::json!([45]))
    );
    assert_eq!(user["key"], "/home/runner/work/shop/checkout/shop/handlers.py:45:get_user");
    assert_eq!(row("shop/cache.py:warm")["new"]["lines"], serde_json::json!([12]));
    let stack = diff_json(&base, &candidate, &["--by", "stack", "--all"]);
    let identities: Vec<&str> =
        stack["rows"].as_array().unwrap().iter().map(|r| r["identity"].as_str().unwrap()).collect();
    assert!(
        identities
            .contains(&"redis/connection.py:connect <- shop/cache.py:warm <- app.py:serve <- asyncio/events.py:_run"),
        "{identities:?}"
    );
    // The report groups by the same identity with --by function.
    let output = run(["report", path(&candidate), "--by", "function", "--format", "json"]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let keys: Vec<&str> = report["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    // By score: 400 sleeps (50 each), 200 connects (50), 600 opens (10).
    assert_eq!(keys, ["shop/handlers.py:get_user", "redis/connection.py:connect", "shop/config.py:load"]);
}

#[test]
fn bad_gate_settings_are_usage_errors_on_one_line() {
    let (base, new) = releases("diff-bad-settings");
    for (flag, value, message) in [
        ("--confidence", "1.5", "'1.5' is not a confidence between 0 and 1 (like 0.99 or 99%)"),
        ("--min-increase", "-5%", "'-5%' is not a percentage of at least 0 (like 20%)"),
        ("--skip-first-s", "-1", "'-1' is not a number of at least 0"),
    ] {
        let output = run(["diff", path(&base), path(&new), flag, value]);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let text = stderr(&output);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with(&format!("aiocop-analyze: invalid value '{value}' for '{flag} ")), "{text}");
        assert!(text.trim_end().ends_with(message), "{text}");
        assert!(stdout(&output).is_empty());
    }
}

#[test]
fn a_side_without_slices_or_sides_without_a_group_in_common_say_so() {
    let (base, new) = releases("diff-empty");
    // The base run lasts 126 s: nothing starts after 1,000 s.
    let output = run(["diff", path(&base), path(&new), "--skip-first-s", "1000"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "aiocop-analyze: the base side ('{}') has no slices to compare in the window and labels asked for \
             (--since, --skip-first-s, --until, --label)\n",
            path(&base)
        )
    );
    let other = write_run(
        &base.with_file_name("other.bin"),
        header(Some("v9"), "ci", 100),
        1_000,
        &[(50, "open", ("other/x.py", 1, "f"), 2)],
    );
    let output = run(["diff", path(&base), path(&other), "--format", "markdown"]);
    assert_eq!(output.status.code(), Some(0));
    let warning = "no group is on both sides: every row is new or gone. Are both sides recordings of the same \
                   program, grouped the same way (--by, --app-root)?";
    assert_eq!(stderr(&output), format!("aiocop-analyze: warning: {warning}\n"));
    assert!(stdout(&output).contains(&format!("- Warning: {warning}\n")), "{}", stdout(&output));
}

#[test]
fn skipping_the_warm_up_leaves_its_slices_out_of_both_sides() {
    let (base, new) = releases("diff-warm-up");
    let diff = diff_json(&base, &new, &["--skip-first-s", "20", "--all"]);
    // The base's blocking slices start every 100 ms from 0: the first 200 are in the first 20 s.
    assert_eq!(diff["gate"]["skip_first_s"], 20.0);
    assert!(diff["base"]["totals"]["blocking_slices"].as_u64().unwrap() < 290, "{}", diff["base"]["totals"]);
}
