//! `--format html` on real traces: the page of a small golden fleet and of
//! a diff, pinned by insta snapshots (paths and the version made stable),
//! and the page's promises checked on its text: nothing loaded from
//! elsewhere, every table plain HTML.

mod common;

use common::*;
use std::path::Path;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the CLI, which must exit with `code` writing nothing to stdout, and
/// returns the page it wrote, with the test directory written `DIR` and the
/// version `VERSION`.
fn page(dir: &Path, args: &[&str], code: i32) -> String {
    let out = dir.join("page.html");
    let mut all = args.to_vec();
    all.extend(["--format", "html", "-o", path(&out)]);
    let output = run(&all);
    assert_eq!(output.status.code(), Some(code), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "");
    let html = std::fs::read_to_string(&out).expect("the page was written");
    // The directory as written in text, HTML-escaped, and with line-break hints.
    let (plain, escaped, broken) = (path(dir), path(dir).replace('/', "&#x2f;"), path(dir).replace('/', "/<wbr>"));
    html.replace(&broken, "DIR")
        .replace(&escaped, "DIR")
        .replace(plain, "DIR")
        .replace(env!("CARGO_PKG_VERSION"), "VERSION")
}

/// What every page promises.
fn check_page(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none';"));
    for loaded in ["src=", "href=", "url(http", "@import"] {
        assert!(!html.contains(loaded), "{loaded}");
    }
    // Only the SVG namespaces name a web address (names, never loaded).
    let namespaces =
        html.matches("http://www.w3.org/").count() + html.matches("http://github.com/jonhoo/inferno").count();
    assert_eq!(html.matches("http://").count() + html.matches("https://").count(), namespaces);
}

#[test]
fn the_report_page_of_a_fleet() {
    let dir = test_dir("html-report");
    let (one, two) = write_fleet(&dir);
    let html = page(&dir, &[path(&one), path(&two)], 0);
    check_page(&html);
    for section in
        ["summary", "busy-over-time", "loop-time", "flame-graph", "stalls", "blocking-io", "cpu-blocking", "examples"]
    {
        assert!(html.contains(&format!("<section id=\"{section}\">")), "{section}");
    }
    assert!(html.contains("<td class=\"key\">shop/<wbr>handlers.py:42:get_user</td>"), "{html}");
    insta::assert_snapshot!(html);
}

#[test]
fn the_diff_page_says_the_gates_verdict() {
    let dir = test_dir("html-diff");
    let (one, two) = write_fleet(&dir);
    let html = page(&dir, &["diff", path(&one), path(&two), "--all", "--fail-on", "new-high"], 0);
    check_page(&html);
    assert!(html.contains("<section id=\"gate\" class=\"gate-passed\">"), "{html}");
    // The differential flame graph, its frames named by identity (module:qualname).
    assert!(html.contains("<section id=\"flame-graph\">"), "{html}");
    assert!(html.contains("Busy time by stack, against the base"), "{html}");
    // The new side's loop time, stalls, busy share and example stacks.
    for section in ["loop-time", "stalls", "busy-over-time", "examples"] {
        assert!(html.contains(&format!("<section id=\"{section}\">")), "{section}");
    }
    assert!(html.contains("Loop time of the new side") && html.contains("The new side. "), "{html}");
    insta::assert_snapshot!(html);
}

/// A trace of `requests` request tasks, one a second, each two steps of 2 ms
/// 50 ms apart, each step waiting `ready_wait_ns` for the loop.
fn write_requests(path: &Path, label: &str, requests: u64, ready_wait_ns: u64) -> std::path::PathBuf {
    let mut trace = TraceBuilder::new(header(Some(label), "web-1", 100), 0);
    let names: Vec<String> = (0..requests).map(|n| format!("Task-{n}")).collect();
    for (n, name) in names.iter().enumerate() {
        let start_ns = n as u64 * 1_000 * MS;
        let step = |start_ns, created_before_ns, ended| Slice {
            start_ns,
            duration_ns: 2 * MS,
            what: "handle",
            task: Some(name),
            ready_wait_ns: Some(ready_wait_ns),
            created_before_ns,
            ended,
            ..Slice::default()
        };
        trace.slice(step(start_ns, Some(ready_wait_ns), None));
        trace.slice(step(start_ns + 50 * MS, None, Some(aiocop_trace::records::TASK_DONE)));
    }
    trace.write(path, Some(requests * 1_000 * MS))
}

#[test]
fn the_diff_page_shows_the_new_sides_tasks_and_loop_lag() {
    let dir = test_dir("html-diff-tasks");
    let base = write_requests(&dir.join("base.bin"), "v1", 3, MS / 10);
    let new = write_requests(&dir.join("new.bin"), "v2", 4, 5 * MS);
    let html = page(&dir, &["diff", path(&base), path(&new)], 0);
    check_page(&html);
    // The comparison of both sides' tasks, then the new side's own table
    // and its loop lag per second, as the report page has them.
    assert!(html.contains("<section id=\"tasks\">"), "{html}");
    let start = html.find("<section id=\"new-tasks\">").expect("the new side's Tasks table");
    let end = start + html[start..].find("</main>").expect("the page's end");
    let new_side = &html[start..end];
    assert!(new_side.contains("Tasks and loop lag of the new side"), "{new_side}");
    assert!(new_side.contains("<td class=\"key\">handle</td>"), "{new_side}");
    assert!(new_side.contains("<section id=\"loop-lag-over-time\">"), "{new_side}");
    assert_eq!(html.matches("<svg class=\"chart lag-chart\"").count(), 1);
    insta::assert_snapshot!(new_side);
}
