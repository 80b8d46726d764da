//! The pictures of a recording: `timeline` (Chrome trace event JSON) and
//! `flamegraph` (SVG, folded stacks, differential), run as the built
//! binary on the fleet of `common::write_fleet`, with insta snapshots of
//! each format for its first worker (the golden trace).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(output: &std::process::Output) {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
}

/// Exit 2 and one stderr line that starts with `start`.
fn assert_one_line_error(output: &std::process::Output, start: &str) {
    assert_eq!(output.status.code(), Some(2), "stdout: {}", stdout(output));
    let message = stderr(output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.starts_with(&format!("aiocop-analyze: {start}")), "{message}");
}

fn timeline(args: &[&str]) -> Value {
    let output = run(["timeline"].iter().chain(args));
    ok(&output);
    serde_json::from_str(&stdout(&output)).expect("JSON")
}

fn events(json: &Value) -> &Vec<Value> {
    json["traceEvents"].as_array().expect("an array of events")
}

/// Slices: complete events that are not stalls.
fn slices(json: &Value) -> Vec<&Value> {
    events(json).iter().filter(|e| e["ph"] == "X" && e["cat"] != "stall").collect()
}

#[test]
fn the_timeline_holds_every_slice_and_event_at_its_time() {
    let dir = test_dir("timeline");
    let (one, two) = write_fleet(&dir);
    let json = timeline(&[path(&one), path(&two)]);
    assert_eq!(slices(&json).len(), 9);
    // Both workers are pid 4242: two processes all the same, named by command and label.
    let processes: BTreeMap<u64, &str> = events(&json)
        .iter()
        .filter(|e| e["name"] == "process_name")
        .map(|e| (e["pid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(processes.values().copied().collect::<Vec<_>>(), ["app.py --serve [v1]", "app.py --serve [v2]"]);
    // s1: 150 ms at 100 ms, its two events 1 µs in (the builder's offset).
    let s1 = slices(&json)[0];
    assert_eq!(
        (s1["name"].as_str(), s1["ts"].as_f64(), s1["dur"].as_f64()),
        (Some("handle_request"), Some(1e5), Some(1.5e5))
    );
    assert_eq!(s1["args"], serde_json::json!({"task": "Task-1", "score": 60, "overran": true}));
    let blocking: Vec<&Value> = events(&json).iter().filter(|e| e["cat"] == "blocking").collect();
    assert_eq!(blocking.len(), 7);
    assert_eq!((blocking[0]["name"].as_str(), blocking[0]["ts"].as_f64()), (Some("time.sleep"), Some(100_001.0)));
    assert_eq!(
        blocking[0]["args"]["stack"],
        serde_json::json!(["shop/handlers.py:42:get_user", "shop/handlers.py:10:handle_request"])
    );
    assert_eq!(blocking[0]["args"]["args"], "0.12");
    // s4's three samples, spread over its 300 ms (no sampling info: the monitor's).
    let samples: Vec<(f64, &str)> = events(&json)
        .iter()
        .filter(|e| e["cat"] == "sample")
        .map(|e| (e["ts"].as_f64().unwrap(), e["name"].as_str().unwrap()))
        .collect();
    assert_eq!(samples, [(1_075_000.0, "crunch"), (1_150_000.0, "crunch"), (1_225_000.0, "encode")]);
    // Slices of 100 ms or more are stalls (the threshold): s1, s4, s5 and s1'.
    let stalls = events(&json).iter().filter(|e| e["cat"] == "stall").count();
    assert_eq!(stalls, 4);
}

#[test]
fn the_timeline_keeps_to_the_window_drops_short_slices_and_gzips() {
    let dir = test_dir("timeline-window");
    let (one, _) = write_fleet(&dir);
    let output = run(["timeline", path(&one), "--min-ms", "3", "--since", "0.2", "--ignore", "*/logging/*"]);
    ok(&output);
    // In [0.2 s, ∞): s2 (2 ms), s3 (0.05), s4, s5, s6 (5 ms), s7 (1 ms): three under 3 ms.
    assert_eq!(stderr(&output), "aiocop-analyze: note: --min-ms 3 left out 3 of 6 slices (shorter than 3 ms)\n");
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let names: Vec<&str> = slices(&json).iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["build_report", "handle_request", "handle_request"]);
    // s6's os.stat is in logging: ignored. s5's connect stays.
    let blocking: Vec<&str> =
        events(&json).iter().filter(|e| e["cat"] == "blocking").map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(blocking, ["socket.socket.connect"]);

    let gz = dir.join("t.json.gz");
    ok(&run(["timeline", path(&one), "-o", path(&gz)]));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(fs::File::open(&gz).unwrap()), &mut text).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(slices(&json).len(), 7);

    // --label picks the traces, --threshold-ms who overran.
    let (_, two) = write_fleet(&dir);
    let json = timeline(&[path(&one), path(&two), "--label", "v2", "--threshold-ms", "100"]);
    let overran: Vec<bool> = slices(&json).iter().map(|s| s["args"]["overran"].as_bool().unwrap()).collect();
    assert_eq!(overran, [true, false]);
    let processes = events(&json).iter().filter(|e| e["name"] == "process_name").count();
    assert_eq!(processes, 1);

    let output = run(["timeline", path(&one), "--tracks", "task"]);
    ok(&output);
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let tracks: Vec<&str> = events(&json)
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tracks, ["loop thread 1", "Task-1", "stalls, loop thread 1"]);
    let stall_tracks: Vec<u64> =
        events(&json).iter().filter(|e| e["cat"] == "stall").map(|e| e["tid"].as_u64().unwrap()).collect();
    assert_eq!(stall_tracks, [(1 << 30) + 1; 3]);
}

#[test]
fn bad_outputs_windows_and_damaged_traces() {
    let dir = test_dir("views-bad");
    let (one, two) = write_fleet(&dir);
    let missing = dir.join("no/such/dir/out.json");
    for command in ["timeline", "flamegraph"] {
        let output = run([command, path(&one), "-o", path(&missing)]);
        assert_one_line_error(&output, &format!("cannot write '{}': No such file or directory", path(&missing)));
        let output = run([command, path(&one), "--since", "5", "--until", "1"]);
        assert_one_line_error(&output, "--since 5 is not before --until 1");
        let output = run([command, path(&one), "--label", "v9"]);
        assert_one_line_error(&output, "no trace has a label matching 'v9' (labels: v1)");
    }
    assert!(!missing.parent().unwrap().exists());

    // Chunk 1 of worker 1 (s4, s5) damaged: the rest is drawn, with the warning.
    let bytes = fs::read(&one).unwrap();
    let trace = aiocop_trace::TraceFile::open(&one).unwrap();
    let chunk = trace.chunk_info(1).unwrap().offset as usize;
    let mut damaged = bytes.clone();
    damaged[chunk + 20] ^= 0x40;
    let flipped = dir.join("flipped.bin");
    fs::write(&flipped, damaged).unwrap();
    let warning = format!("aiocop-analyze: warning: '{}': chunk 1 is corrupt", path(&flipped));
    let output = run(["timeline", path(&flipped)]);
    ok(&output);
    assert!(stderr(&output).starts_with(&warning), "{}", stderr(&output));
    assert!(stderr(&output).ends_with("; using its 2 readable chunks\n"));
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(slices(&json).len(), 5);
    let output = run(["flamegraph", path(&flipped), "--format", "folded"]);
    ok(&output);
    assert!(stderr(&output).starts_with(&warning));
    assert!(!stdout(&output).contains("build_report"), "{}", stdout(&output));
    assert!(stdout(&output).contains("handle_request;handle_request (shop/handlers.py:10);get_user"));

    // A trace with no readable chunk is unusable: exit 2, and no half-written timeline left.
    let mut ruined = fs::read(&two).unwrap();
    let trace = aiocop_trace::TraceFile::open(&two).unwrap();
    for index in 0..trace.chunk_count() {
        ruined[trace.chunk_info(index).unwrap().offset as usize + 20] ^= 0x40;
    }
    let ruined_path = dir.join("ruined.bin");
    fs::write(&ruined_path, ruined).unwrap();
    let out = dir.join("t.json");
    let output = run(["timeline", path(&one), path(&ruined_path), "-o", path(&out)]);
    assert_one_line_error(&output, &format!("'{}': chunk 0 is corrupt", path(&ruined_path)));
    assert!(!out.exists());
}

/// Folded lines as (stack, ns).
fn folded(args: &[&str]) -> Vec<(String, u64)> {
    let output = run(["flamegraph", "--format", "folded"].iter().chain(args));
    ok(&output);
    stdout(&output)
        .lines()
        .map(|line| {
            let (stack, ns) = line.rsplit_once(' ').expect("stack then count");
            (stack.to_owned(), ns.parse().expect("a count"))
        })
        .collect()
}

/// A folded frame `function (path:line)` as the report keys it, `path:line:function`.
fn as_entry_point(frame: &str) -> String {
    match frame.strip_suffix(')').and_then(|f| f.split_once(" (")) {
        Some((function, at)) => format!("{at}:{function}"),
        None => frame.to_owned(),
    }
}

#[test]
fn folded_stacks_add_up_to_the_reports_loop_time_per_key() {
    let dir = test_dir("folded");
    let (one, two) = write_fleet(&dir);
    for extra in [&[][..], &["--ignore", "*/logging/*"], &["--since", "1"]] {
        let mut args = vec![path(&one), path(&two)];
        args.extend_from_slice(extra);
        let stacks = folded(&args);
        let mut by_key: BTreeMap<String, f64> = BTreeMap::new();
        for (stack, ns) in &stacks {
            let innermost = stack.rsplit(';').next().unwrap();
            *by_key.entry(as_entry_point(innermost)).or_default() += *ns as f64 / 1e6;
        }
        let report = run(args.iter().copied().chain(["--format", "json"]));
        ok(&report);
        let report: Value = serde_json::from_str(&stdout(&report)).unwrap();
        let loop_time = &report["loop_time"];
        let expected: BTreeMap<String, f64> = loop_time["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["key"].as_str().unwrap().to_owned(), g["busy_ms"].as_f64().unwrap()))
            .collect();
        assert_eq!(by_key.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{extra:?}");
        for (key, ms) in &expected {
            assert!((by_key[key] - ms).abs() < 0.002, "{key}: {} against {ms} ({extra:?})", by_key[key]);
        }
        let total: u64 = stacks.iter().map(|(_, ns)| ns).sum();
        assert!((total as f64 / 1e6 - loop_time["busy_ms"].as_f64().unwrap()).abs() < 0.001);
    }
    // The ignored os.stat leaves s6's 5 ms to what ran.
    let ignored = folded(&[path(&one), "--ignore", "*/logging/*"]);
    assert!(ignored.contains(&("handle_request".to_owned(), 5 * MS)), "{ignored:?}");
}

/// The SVG without inferno's script (inferno's, not ours, and long).
fn svg_without_script(svg: &str) -> String {
    match (svg.find("<script"), svg.find("</script>")) {
        (Some(start), Some(end)) => format!("{}<script>…</script>{}", &svg[..start], &svg[end + "</script>".len()..]),
        _ => svg.to_owned(),
    }
}

#[test]
fn the_svg_names_the_frames_and_the_diff_matches_them_by_identity() {
    let dir = test_dir("svg");
    let (one, two) = write_fleet(&dir);
    let output = run(["flamegraph", path(&one), path(&two)]);
    ok(&output);
    let svg = stdout(&output);
    assert!(svg.starts_with("<?xml"));
    for name in ["get_user (shop/handlers.py:42)", "crunch (shop/compute.py:30)", "tick"] {
        assert!(svg.contains(name), "{name}");
    }
    let output = run(["flamegraph", path(&two), "--diff", path(&one), "--title", "v2 against v1"]);
    ok(&output);
    let svg = stdout(&output);
    assert!(svg.contains("v2 against v1"));
    // Frames by identity, without lines; the base's build_report is gone (width 0 in v2).
    assert!(svg.contains("handlers.py:get_user") && !svg.contains("(shop/handlers.py:42)"), "{svg}");
    // v1's 75 ms of 578 in get_user, scaled to v2's 113 ms total, against v2's 110 ms: +84% of the
    // total, but from one slice a side: not beyond chance, drawn unchanged (white).
    assert!(svg.contains("<title>handlers.py:get_user (110,000 µs, 97.35%; 0.00%)</title>"), "{svg}");
    assert!(svg.contains("Coloured: 0 of 1 stack tested, beyond chance (legend below)"), "{svg}");
    // A tenth of a percent of the time moved from what ran to stacks is not worth a warning.
    assert!(svg.contains("Time with no stack under what ran: base 0.2%, new 0%.") && !svg.contains("these differ"));
    // At a confidence of 1% (a test that rejects at p <= 0.99), the change is drawn.
    let output = run(["flamegraph", path(&two), "--diff", path(&one), "--confidence", "0.01"]);
    ok(&output);
    assert!(stdout(&output).contains("<title>handlers.py:get_user (110,000 µs, 97.35%; +84.37%)</title>"));
    // Folded, both sides' nanoseconds as recorded: the same frames on one line.
    let output = run(["flamegraph", path(&two), "--diff", path(&one), "--format", "folded"]);
    ok(&output);
    let text = stdout(&output);
    assert!(text.contains("handle_request;handlers.py:handle_request;handlers.py:get_user 75000000 110000000\n"));
    assert!(text.contains("build_report;handlers.py:report;compute.py:crunch 200000000 0\n"), "{text}");
}

#[test]
fn snapshots_of_each_format_for_the_golden_trace() {
    let dir = test_dir("views-snapshots");
    let (one, _) = write_fleet(&dir);
    let output = run(["timeline", path(&one)]);
    ok(&output);
    insta::assert_snapshot!("timeline_json", stdout(&output));
    let output = run(["flamegraph", path(&one), "--format", "folded"]);
    ok(&output);
    insta::assert_snapshot!("flamegraph_folded", stdout(&output));
    let output = run(["flamegraph", path(&one)]);
    ok(&output);
    insta::assert_snapshot!("flamegraph_svg", svg_without_script(&stdout(&output)));
}
