//! Where the loop's time went, on real traces: the Loop time table adds up
//! to the busy time exactly, stalls are found across chunks and threads,
//! lazy imports make one row at their importer, stacks without an app
//! frame go to their innermost third-party frame, and `--long-ms` is checked.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json"]);
    let output = run(&all);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("the report is JSON")
}

/// Milliseconds as whole microseconds, so that sums are exact.
fn us(value: &Value) -> i64 {
    (value.as_f64().unwrap() * 1000.0).round() as i64
}

/// (key, busy µs, io µs, cpu µs, slices, samples) of every Loop time group.
fn loop_rows(report: &Value) -> Vec<(String, i64, i64, i64, u64, u64)> {
    report["loop_time"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_owned(),
                us(&g["busy_ms"]),
                us(&g["io_ms"]),
                us(&g["cpu_ms"]),
                g["slices"].as_u64().unwrap(),
                g["samples"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn loop_row(key: &str, busy_us: i64, io_us: i64, slices: u64, samples: u64) -> (String, i64, i64, i64, u64, u64) {
    (key.to_owned(), busy_us, io_us, busy_us - io_us, slices, samples)
}

#[test]
fn every_slice_gives_its_time_to_the_groups_and_they_add_up_exactly() {
    let dir = test_dir("loop-fleet");
    let (one, two) = write_fleet(&dir);
    let report = json(&[path(&one), path(&two)]);
    let loop_time = &report["loop_time"];
    // 150 + 2 + 0.05 + 300 + 120 + 5 + 1 (file 1) + 110 + 3 (file 2) ms.
    assert_eq!(us(&loop_time["busy_ms"]), 691_050);
    assert_eq!(
        loop_rows(&report),
        [
            // Two of the report slice's three samples.
            loop_row("shop/compute.py:30:crunch", 200_000, 0, 1, 2),
            // Half of s1 (its other event is config load's), and s1'.
            loop_row("shop/handlers.py:42:get_user", 185_000, 185_000, 2, 0),
            loop_row("socket.py:850:create_connection", 120_000, 120_000, 1, 0),
            loop_row("encoder.py:200:encode", 100_000, 0, 1, 1),
            loop_row("shop/config.py:7:load", 80_000, 80_000, 3, 0),
            loop_row("__init__.py:1200:emit", 5_000, 5_000, 1, 0),
            // The ticks have neither events nor samples: what ran.
            loop_row("tick", 1_050, 0, 2, 0),
        ]
    );
    let groups = loop_time["groups"].as_array().unwrap();
    assert_eq!(groups[0]["via"], serde_json::json!(["samples"]));
    assert_eq!(groups[6]["via"], serde_json::json!(["what_ran"]));
    assert_eq!(groups[6]["example_trace"], Value::Null);
    assert_eq!(groups[1]["example_trace"], "shop/handlers.py:42:get_user <- shop/handlers.py:10:handle_request");
    assert_eq!(groups[0]["share"], 0.2894);
    // Slices of 2 ms or more: all but the ticks, all explained by a stack.
    assert_eq!((us(&loop_time["long_slice_ms"]), us(&loop_time["long_slice_attributed_ms"])), (690_000, 690_000));
    assert_eq!(loop_time["long_slice_attributed_share"], 1.0);
    // Worker 2 has no samples at all.
    assert_eq!((loop_time["samples"].as_u64(), loop_time["traces_without_samples"].as_u64()), (Some(3), Some(1)));
    assert_eq!(report["schema_minor"], 4);

    // With --top, what is left out is summed, to the microsecond.
    for top in ["1", "2", "5"] {
        let report = json(&[path(&one), path(&two), "--top", top]);
        let shown: i64 = loop_rows(&report).iter().map(|row| row.1).sum();
        let hidden = us(&report["loop_time"]["groups_not_shown_busy_ms"]);
        assert_eq!(shown + hidden, 691_050, "--top {top}");
    }
    // Only the time window's slices count.
    let late = json(&[path(&one), "--since", "1.2"]);
    assert_eq!(us(&late["loop_time"]["busy_ms"]), 126_000);
}

#[test]
fn a_long_slice_without_a_stack_lowers_the_explained_share_and_a_table_says_samples_are_missing() {
    let dir = test_dir("loop-unexplained");
    let mut trace = TraceBuilder::new(header(None, "h", 100), 0);
    // 12 ms of CPU (under the threshold, not sampled), 3 ms with an open, 1 ms of nothing.
    for i in 0..10 {
        let start = i * 100 * MS;
        trace.slice(Slice { start_ns: start, duration_ns: 12 * MS, what: "handle_cpu", ..Slice::default() });
        trace.slice(Slice {
            start_ns: start + 20 * MS,
            duration_ns: 3 * MS,
            what: "handle_file",
            events: vec![("open", "/data, r", vec![(HANDLERS, 70, "read_file")])],
            ..Slice::default()
        });
        trace.slice(Slice { start_ns: start + 30 * MS, duration_ns: MS, what: "tick", ..Slice::default() });
    }
    let file = trace.write(&dir.join("t.bin"), Some(1_000 * MS));
    let report = json(&[path(&file), "--by", "app-frame"]);
    assert_eq!(
        loop_rows(&report),
        [
            loop_row("handle_cpu", 120_000, 0, 10, 0),
            loop_row("shop/handlers.py:70:read_file", 30_000, 30_000, 10, 0),
            loop_row("tick", 10_000, 0, 10, 0),
        ]
    );
    let loop_time = &report["loop_time"];
    assert_eq!((us(&loop_time["long_slice_ms"]), us(&loop_time["long_slice_attributed_ms"])), (150_000, 30_000));
    assert_eq!(loop_time["long_slice_attributed_share"], 0.2);
    // --long-ms 0.5 counts the ticks as long too.
    let half = json(&[path(&file), "--long-ms", "0.5"]);
    assert_eq!(us(&half["loop_time"]["long_slice_ms"]), 160_000);

    let table = stdout(&run([path(&file)]));
    assert!(table.starts_with(
        "Loop time: 0.160 s busy of 1.000 s recorded; 20% of the time in slices of 2 ms or more (0.150 s) is explained by a stack\n\
         Samples missing: the trace has no CPU samples (recorded without sampling, or before it existed), so time without blocking I/O goes to what ran (a coroutine or callback), not to a line\n"
    ), "{table}");
    let markdown = stdout(&run([path(&file), "--format", "markdown"]));
    assert!(markdown.starts_with("**Loop time**: 0.160 s busy"), "{markdown}");
    assert!(
        markdown.contains("| 1 | `handle_cpu` | 120.000 | 75% | 0.000 | 120.000 | 10 | 0 | what ran |"),
        "{markdown}"
    );
}

#[test]
fn sort_busy_ranks_the_blocking_table_by_the_loop_time_at_each_key() {
    let dir = test_dir("loop-sort-busy");
    let mut trace = TraceBuilder::new(header(None, "h", 100), 0);
    // A heavy but quick sleep(0) (score 50, 1 ms) and a light but slow stat (score 1, 40 ms).
    trace.slice(Slice {
        start_ns: 0,
        duration_ns: MS,
        what: "a",
        events: vec![("time.sleep", "0", vec![(HANDLERS, 1, "quick")])],
        ..Slice::default()
    });
    trace.slice(Slice {
        start_ns: 10 * MS,
        duration_ns: 40 * MS,
        what: "b",
        events: vec![("os.stat", "/x", vec![(HANDLERS, 2, "slow")])],
        ..Slice::default()
    });
    let file = trace.write(&dir.join("t.bin"), None);
    let keys = |report: &Value| -> Vec<String> {
        report["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap().to_owned()).collect()
    };
    let by_score = json(&[path(&file)]);
    assert_eq!(keys(&by_score), ["shop/handlers.py:1:quick", "shop/handlers.py:2:slow"]);
    let by_busy = json(&[path(&file), "--sort", "busy"]);
    assert_eq!(keys(&by_busy), ["shop/handlers.py:2:slow", "shop/handlers.py:1:quick"]);
    assert_eq!(by_busy["groups"][0]["busy_ms"], 40.0);
    assert_eq!(by_busy["options"]["sort"], "busy");
}

/// `count` slices of `each_ns` on `thread` from `start_ns`, `gap_ns` apart.
fn back_to_back<'a>(
    thread: u32,
    what: &'a str,
    start_ns: u64,
    count: u64,
    each_ns: u64,
    gap_ns: u64,
) -> Vec<Slice<'a>> {
    (0..count)
        .map(|i| Slice {
            start_ns: start_ns + i * (each_ns + gap_ns),
            duration_ns: each_ns,
            what,
            thread,
            ..Slice::default()
        })
        .collect()
}

/// Writes `slices` (sorted by start) with a new chunk before each index in `cuts`.
fn write_slices(file: &Path, threshold_ms: u64, mut slices: Vec<Slice>, cuts: &[usize]) -> PathBuf {
    slices.sort_by_key(|s| s.start_ns);
    let mut trace = TraceBuilder::new(header(None, "h", threshold_ms), 0);
    for (index, slice) in slices.into_iter().enumerate() {
        if cuts.contains(&index) {
            trace.new_chunk();
        }
        trace.slice(slice);
    }
    trace.write(file, None)
}

/// (start µs, duration µs, slices, top keys) of every stall.
fn stalls(report: &Value) -> Vec<(i64, i64, u64, Vec<String>)> {
    report["stalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let top = s["top"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap().to_owned()).collect();
            (
                (s["start_s"].as_f64().unwrap() * 1e6).round() as i64,
                us(&s["duration_ms"]),
                s["slices"].as_u64().unwrap(),
                top,
            )
        })
        .collect()
}

#[test]
fn stalls_are_back_to_back_slices_of_one_thread_across_chunks() {
    let dir = test_dir("loop-stalls");
    let mut slices = Vec::new();
    // Thread 1: ten 20 ms steps 2 µs apart (one iteration of ten ready tasks).
    slices.extend(back_to_back(1, "step", 100 * MS, 10, 20 * MS, 2_000));
    // Thread 2, meanwhile: 1 ms slices with 5 ms waits between them: no stall.
    slices.extend(back_to_back(2, "poll", 100 * MS + 500_000, 30, MS, 5 * MS));
    // Thread 1 later: a hundred 1 ms slices 3 µs apart, then a selector wait.
    slices.extend(back_to_back(1, "chunk_of_work", 500 * MS, 100, MS, 3_000));
    // And slices that wait 200 µs between them: never a stall.
    slices.extend(back_to_back(1, "tick", 700 * MS, 50, MS, 200_000));
    let expected = vec![
        (100_000, 200_018, 10, vec!["step".to_owned()]),
        (500_000, 100_297, 100, vec!["chunk_of_work".to_owned()]),
    ];
    // Whole, or cut into chunks anywhere (inside both stalls), read by one
    // thread or two: the same stalls.
    for (name, cuts) in
        [("whole", &[][..]), ("cut", &[3, 17, 18, 60, 90, 121][..]), ("every", &(1..190).collect::<Vec<_>>()[..])]
    {
        let file = write_slices(&dir.join(format!("{name}.bin")), 30, slices.clone(), cuts);
        for threads in ["1", "2"] {
            let report = json(&[path(&file), "-j", threads]);
            assert_eq!(stalls(&report), expected, "{name}, -j {threads}");
            assert_eq!(report["totals"]["stalls"], 2);
            assert_eq!(us(&report["totals"]["stall_ms"]), 200_018 + 100_297);
        }
    }
    let file = dir.join("whole.bin");
    // A tolerance under the second stall's gaps (3 µs) splits it into
    // slices of 1 ms, under the threshold.
    let tight = json(&[path(&file), "--stall-gap-us", "2.5"]);
    assert_eq!(stalls(&tight), expected[..1]);
    // A higher threshold leaves only the first.
    let high = json(&[path(&file), "--threshold-ms", "150"]);
    assert_eq!(stalls(&high), expected[..1]);
    let table = stdout(&run([path(&file)]));
    assert!(table.contains("Stalls: 2 stalls of at least the threshold (30 ms) without getting back to waiting for I/O, 300.315 ms in all\n"), "{table}");
    assert!(table.contains("│ 1 ┆   0.100 ┆     200.018 ┆     10 ┆ step 200.000 ms "), "{table}");
}

#[test]
fn a_stall_names_the_groups_with_most_time_in_it() {
    let dir = test_dir("loop-stall-top");
    let slices = vec![
        Slice { start_ns: 0, duration_ns: 20 * MS, what: "render", ..Slice::default() },
        Slice {
            start_ns: 20 * MS,
            duration_ns: 5 * MS,
            what: "save",
            events: vec![("open", "/tmp/x, w", vec![(HANDLERS, 9, "save")])],
            ..Slice::default()
        },
        Slice {
            start_ns: 25 * MS,
            duration_ns: 30 * MS,
            what: "report",
            samples: vec![vec![(COMPUTE, 30, "crunch")], vec![(COMPUTE, 30, "crunch")], vec![(JSON, 200, "encode")]],
            ..Slice::default()
        },
    ];
    let file = write_slices(&dir.join("t.bin"), 40, slices, &[2]);
    let report = json(&[path(&file)]);
    let [stall] = report["stalls"].as_array().unwrap().as_slice() else { panic!("one stall: {report}") };
    assert_eq!((us(&stall["duration_ms"]), stall["slices"].as_u64()), (55_000, Some(3)));
    let top: Vec<(String, i64)> = stall["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["key"].as_str().unwrap().to_owned(), us(&t["busy_ms"])))
        .collect();
    assert_eq!(
        top,
        [
            ("render".to_owned(), 20_000),
            ("shop/compute.py:30:crunch".to_owned(), 20_000),
            ("encoder.py:200:encode".to_owned(), 10_000)
        ]
    );
}

const BOOTSTRAP: &str = "<frozen importlib._bootstrap>";
const EXTERNAL: &str = "<frozen importlib._bootstrap_external>";
const PKG_INIT: &str = "/srv/app/lazy_pkg/__init__.py";
const PKG_ALPHA: &str = "/srv/app/lazy_pkg/alpha.py";
const APP: &str = "/srv/app/app.py";

/// `frames`, then the machinery that loads a module, innermost first.
fn loading<'a>(frames: &[At<'a>]) -> Vec<At<'a>> {
    let mut stack = frames.to_vec();
    stack.extend([
        (EXTERNAL, 940, "exec_module"),
        (BOOTSTRAP, 690, "_load_unlocked"),
        (BOOTSTRAP, 1147, "_find_and_load_unlocked"),
        (BOOTSTRAP, 1176, "_find_and_load"),
    ]);
    stack
}

/// `frames` (a module's body), then the machinery that runs it.
fn executing<'a>(frames: &[At<'a>]) -> Vec<At<'a>> {
    let mut body = frames.to_vec();
    body.push((BOOTSTRAP, 241, "_call_with_frames_removed"));
    loading(&body)
}

/// The events of `import lazy_pkg` at app.py:12, as the recorder takes them:
/// the import event at the importer, then each module's file reads and its
/// own imports, with the importer further and further out.
fn lazy_import_events() -> Vec<(&'static str, &'static str, Vec<At<'static>>)> {
    let handler = [(APP, 12, "handler"), (APP, 30, "main")];
    let get_data = [(EXTERNAL, 1130, "get_data"), (EXTERNAL, 1032, "get_code")];
    let under_handler = |frames: Vec<At<'static>>| {
        let mut stack = frames;
        stack.extend(handler);
        stack
    };
    vec![
        ("import", "lazy_pkg, None, ['/srv/app']", handler.to_vec()),
        ("open", "/srv/app/lazy_pkg/__init__.py, r", under_handler(loading(&get_data))),
        ("import", "lazy_pkg.alpha, None, ['/srv/app']", under_handler(executing(&[(PKG_INIT, 2, "<module>")]))),
        ("open", "/srv/app/lazy_pkg/alpha.py, r", {
            let mut inner = loading(&get_data);
            inner.extend(executing(&[(PKG_INIT, 2, "<module>")]));
            under_handler(inner)
        }),
        ("os.stat", "/srv/app/lazy_pkg/alpha.py", {
            let mut inner = executing(&[(PKG_ALPHA, 3, "<module>")]);
            inner.extend(executing(&[(PKG_INIT, 2, "<module>")]));
            under_handler(inner)
        }),
        ("open", "/srv/app/lazy_pkg/data.txt, r", under_handler(executing(&[(PKG_INIT, 3, "<module>")]))),
        // A stack cut at the trace depth before its importer.
        ("open", "/srv/app/lazy_pkg/beta.py, r", {
            let mut inner = loading(&get_data);
            inner.extend(executing(&[(PKG_ALPHA, 2, "<module>")]));
            inner
        }),
    ]
}

fn lazy_import_trace(file: &Path) -> PathBuf {
    let mut trace = TraceBuilder::new(header(None, "h", 100), 0);
    trace.slice(Slice {
        start_ns: 0,
        duration_ns: 5 * MS,
        what: "handler",
        events: lazy_import_events(),
        ..Slice::default()
    });
    trace.slice(Slice {
        start_ns: 10 * MS,
        duration_ns: MS,
        what: "handler",
        events: vec![("open", "/etc/hosts, r", vec![(APP, 20, "other"), (APP, 30, "main")])],
        ..Slice::default()
    });
    trace.write(file, None)
}

#[test]
fn a_lazy_import_is_one_row_at_the_frame_that_imported_it() {
    let dir = test_dir("loop-lazy-import");
    let file = lazy_import_trace(&dir.join("t.bin"));
    for by in ["app-frame", "entry-point"] {
        let report = json(&[path(&file), "--by", by]);
        let rows: Vec<(String, u64, u64)> = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (g["key"].as_str().unwrap().to_owned(), g["slices"].as_u64().unwrap(), g["events"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("/srv/app/app.py:12:handler (import lazy_pkg)".to_owned(), 1, 7),
                ("/srv/app/app.py:20:other".to_owned(), 1, 1)
            ],
            "--by {by}"
        );
        let loop_keys: Vec<(String, i64)> = loop_rows(&report).into_iter().map(|row| (row.0, row.1)).collect();
        assert_eq!(
            loop_keys,
            [
                ("/srv/app/app.py:12:handler (import lazy_pkg)".to_owned(), 5_000),
                ("/srv/app/app.py:20:other".to_owned(), 1_000)
            ]
        );
    }
    // The whole stack still shows where each event was.
    let by_stack = json(&[path(&file), "--by", "stack"]);
    assert_eq!(by_stack["groups"].as_array().unwrap().len(), 8);

    // diff --by app-frame keys the same way: one row for the import.
    let output = run(["diff", path(&file), path(&file), "--by", "app-frame", "--all", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let diff: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let keys: Vec<&str> = diff["rows"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["/srv/app/app.py:12:handler (import lazy_pkg)", "/srv/app/app.py:20:other"]);
}

#[test]
fn a_stack_without_an_app_frame_goes_to_its_innermost_third_party_frame() {
    let dir = test_dir("loop-third-party");
    let redis = "/v/lib/python3.12/site-packages/redis/connection.py";
    let mut trace = TraceBuilder::new(header(None, "h", 100), 0);
    trace.slice(Slice {
        start_ns: 0,
        duration_ns: 3 * MS,
        what: "Connection.connect",
        events: vec![(
            "socket.socket.connect",
            "('10.0.0.5', 6379)",
            vec![
                (SOCKET, 850, "create_connection"),
                (redis, 600, "_connect"),
                (redis, 580, "connect"),
                ("/usr/lib/python3.12/asyncio/events.py", 80, "_run"),
            ],
        )],
        ..Slice::default()
    });
    trace.slice(Slice {
        start_ns: 10 * MS,
        duration_ns: MS,
        what: "checkcache",
        events: vec![("os.stat", "/x.py", vec![("/usr/lib/python3.12/linecache.py", 72, "checkcache")])],
        ..Slice::default()
    });
    let file = trace.write(&dir.join("t.bin"), None);
    let report = json(&[path(&file), "--by", "app-frame"]);
    let keys: Vec<&str> = report["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    // Only the standard library: its entry point, as before.
    assert_eq!(keys, ["redis/connection.py:600:_connect", "linecache.py:72:checkcache"]);
    let output = run(["diff", path(&file), path(&file), "--by", "app-frame", "--all", "--format", "json"]);
    let diff: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let mut keys: Vec<&str> = diff["rows"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["linecache.py:72:checkcache", "redis/connection.py:600:_connect"]);
}

#[test]
fn long_ms_must_be_above_zero() {
    let dir = test_dir("loop-bad-long");
    let (one, _) = write_fleet(&dir);
    for value in ["0", "-1", "-0.5", "nan"] {
        let output = run([path(&one), "--long-ms", value]);
        assert_eq!(output.status.code(), Some(2), "--long-ms {value}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.starts_with("aiocop-analyze: --long-ms "), "{message}");
        assert_eq!(stdout(&output), "");
    }
    let output = run([path(&one), "--stall-gap-us", "-3"]);
    assert_eq!((output.status.code(), stderr(&output).lines().count()), (Some(2), 1));
}

#[test]
fn a_dotted_import_is_one_row_named_in_full() {
    let dir = test_dir("loop-dotted-import");
    let at = vec![(APP, 41, "report"), (APP, 30, "main")];
    let stdlib = "/usr/lib/python3.12/xml/dom/__init__.py";
    let mut inside = executing(&[(stdlib, 5, "<module>")]);
    inside.extend(at.clone());
    let mut trace = TraceBuilder::new(header(None, "h", 100), 0);
    trace.slice(Slice {
        start_ns: 0,
        duration_ns: 4 * MS,
        what: "report",
        events: vec![
            // `import xml.dom.minidom` raises one event per package on the way.
            ("import", "xml, None, []", at.clone()),
            ("import", "xml.dom, None, []", at.clone()),
            ("import", "xml.dom.minidom, None, []", at.clone()),
            ("open", "/usr/lib/python3.12/xml/dom/domreg.py, r", inside),
        ],
        ..Slice::default()
    });
    let file = trace.write(&dir.join("t.bin"), None);
    let report = json(&[path(&file), "--by", "app-frame"]);
    let keys: Vec<&str> = report["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["/srv/app/app.py:41:report (import xml.dom.minidom)"]);
    assert_eq!(report["groups"][0]["events"], 4);
}
