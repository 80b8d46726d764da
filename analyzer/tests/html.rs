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
