//! The JSON report: a stable contract to script against.
//!
//! ```text
//! {
//!   "schema_version": 1,
//!   "schema_minor": 1,                   // 1 added loop_time, stalls and the fields marked (1.1)
//!   "by": "entry-point",                 // --by, as given
//!   "loop_time": {"busy_ms": ..., "groups": [{"rank", "key", "busy_ms", "share", "slices",
//!                 "io_ms", "cpu_ms", "samples", "via", "example_trace"}], "groups_not_shown",
//!                 "groups_not_shown_busy_ms", "long_ms", "long_slice_ms", "long_slice_attributed_ms",
//!                 "long_slice_attributed_share", "samples", "traces_without_samples"},
//!   "stalls": [{"rank", "trace", "thread", "start_s", "duration_ms", "slices",
//!               "top": [{"key", "busy_ms"}], "alike", "alike_ms"}],  // (1.2) stalls alike are one row
//!   "stalls_not_shown": 0,               // (see docs/analyzer-report.md)
//!   "groups": [                          // ranked, after --min-severity and --top
//!     {"rank": 1, "key": "app.py:12:fetch", "slices": 3, "events": 6,
//!      "severity_score": 300, "severity_level": "high", "exceeded": 2,
//!      "total_ms": 312.5, "p50_ms": 101.2, "p95_ms": 110.0, "p99_ms": 110.0, "max_ms": 110.0,
//!      "busy_ms": 312.5,                 // (1.1) the loop time at the key
//!      "top_events": [{"event": "time.sleep", "count": 6}],
//!      "example_trace": "app.py:12:fetch <- app.py:30:handler",
//!      "example_event": "time.sleep(0.1)"}
//!   ],
//!   "groups_not_shown": 0,               // past --top
//!   "cpu_groups": [                      // CPU-blocking slices, ranked by total_ms
//!     {"rank": 1, "key": "app.py:40:crunch", "slices": 2, "samples": 14,
//!      "total_ms": ..., "p50_ms": ..., "p95_ms": ..., "p99_ms": ..., "max_ms": ...,
//!      "example_trace": "..."}
//!   ],
//!   "cpu_groups_not_shown": 0,
//!   "totals": {"traces": 1, "slices": 1200, "blocking_slices": 5, "exceeded": 7,
//!              "cpu_blocking": 2, "events": 9, "dropped": 0, "dropped_events": 0,
//!              "duration_s": 12.5, "groups": 3, "cpu_groups": 1,
//!              "stalls": 2, "stall_ms": 340.1},    // (1.1)
//!   "traces": [{"path": ..., "format_version": "1.0", "aiocop_version": ..., "python_version": ...,
//!               "platform": ..., "host": ..., "pid": ..., "label": "v1" | null, "threshold_ms": 100.0,
//!               "start_unix_ns": ..., "duration_s": ..., "slices": ..., "samples": ... (1.1), "chunks": ...,
//!               "unreadable_chunks": 0, "cut_short": false}],
//!   "options": {"threshold_ms": null, "since_s": null, "until_s": null, "exceeded_only": false,
//!               "min_severity": null, "ignore": [], "label": null, "app_roots": [],
//!               "sort": "score", "top": null, "long_ms": 2.0 (1.1)}
//! }
//! ```
//!
//! Times are numbers of milliseconds (`*_ms`) or seconds (`*_s`) to the
//! microsecond. Fields may be added (and [`SCHEMA_MINOR`](crate::report::SCHEMA_MINOR)
//! is bumped); [`SCHEMA_VERSION`](crate::report::SCHEMA_VERSION) is bumped if
//! one changes meaning or goes away.

use super::{Exporter, Style};
use crate::diff::Diff;
use crate::report::Report;

pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn render(&self, report: &Report, _style: Style) -> String {
        let mut text = serde_json::to_string_pretty(report).expect("a report serializes: its keys are strings");
        text.push('\n');
        text
    }

    /// See [`crate::diff`] and the README for the fields.
    fn render_diff(&self, diff: &Diff, _style: Style) -> String {
        let mut text = serde_json::to_string_pretty(diff).expect("a diff serializes: its keys are strings");
        text.push('\n');
        text
    }
}
