//! One CSV row per group of the blocking I/O ranking, with the JSON's group
//! fields as columns (`busy_ms` last, the loop's time at the key);
//! `top_events` as `name:count` pairs joined with `;`. CSV holds one table:
//! `--csv-table loop-time` writes the Loop time table instead (`via` joined
//! with `+`), `--csv-table stalls` the stalls (`top` as `key:busy_ms` pairs
//! joined with `;`), `--csv-table routes` the Routes table (`--by route`),
//! `--csv-table tasks` the Tasks table (every row), `--csv-table loop-lag`
//! the loop lag per second (a row per second with a slice of known
//! readiness).
//! For a diff, one row per diff row: key, identity, status, then each value
//! as `base_X` and `new_X` (empty for a side without the group), then
//! `p_value` and `one_time` (empty when null); with `--csv-table routes`,
//! one row per route: route, status, `base_X`/`new_X`, `p_value`; with
//! `--csv-table tasks`, one row per coroutine (or route) shown: key,
//! status, `base_X`/`new_X`, `p_value` (the loop lag is in the JSON).

use super::{elapsed_cells, task_cells, Exporter, Style};
use crate::diff::RouteSideValues;
use crate::diff::TaskSideValues;
use crate::diff::{Diff, SideValues};
use crate::report::{CsvTable, Report};
use crate::units::fmt_ms;

pub struct CsvExporter;

pub const COLUMNS: [&str; 16] = [
    "rank",
    "key",
    "slices",
    "events",
    "severity_score",
    "severity_level",
    "exceeded",
    "total_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "top_events",
    "example_trace",
    "example_event",
    "busy_ms",
];

/// The values of each side of a diff row, as `base_X` and `new_X` columns.
pub const DIFF_VALUES: [&str; 11] = [
    "slices",
    "events",
    "severity_score",
    "severity_level",
    "exceeded",
    "slices_per_1k",
    "events_per_1k",
    "severity_per_1k",
    "exceeded_pct",
    "p95_ms",
    "max_ms",
];

fn side_cells(values: Option<&SideValues>) -> [String; 11] {
    let Some(v) = values else { return Default::default() };
    [
        v.slices.to_string(),
        v.events.to_string(),
        v.severity_score.to_string(),
        v.severity_level.to_owned(),
        v.exceeded.to_string(),
        v.slices_per_1k.to_string(),
        v.events_per_1k.to_string(),
        v.severity_per_1k.to_string(),
        v.exceeded_pct.to_string(),
        v.p95_ms.to_string(),
        v.max_ms.to_string(),
    ]
}

fn to_csv(records: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in records {
        writer.write_record(&record).expect("writing CSV to memory cannot fail");
    }
    let bytes = writer.into_inner().expect("flushing CSV to memory cannot fail");
    String::from_utf8(bytes).expect("CSV of strings is UTF-8")
}

impl Exporter for CsvExporter {
    fn render_diff(&self, diff: &Diff, _style: Style) -> String {
        match diff.csv_table {
            CsvTable::Routes => return route_diff(diff),
            CsvTable::Tasks => return task_diff(diff),
            _ => {}
        }
        let header = ["key".to_owned(), "identity".to_owned(), "status".to_owned()]
            .into_iter()
            .chain(DIFF_VALUES.iter().flat_map(|v| [format!("base_{v}"), format!("new_{v}")]))
            .chain(["p_value".to_owned(), "one_time".to_owned()]);
        let rows = diff.rows.iter().map(|row| {
            let (base, new) = (side_cells(row.base.as_ref()), side_cells(row.new.as_ref()));
            [row.key.clone(), row.identity.clone(), row.status.as_str().to_owned()]
                .into_iter()
                .chain(base.into_iter().zip(new).flat_map(|(b, n)| [b, n]))
                .chain([row.p_value.map_or_else(String::new, |p| p.to_string()), row.one_time.unwrap_or("").to_owned()])
                .collect()
        });
        to_csv(std::iter::once(header.collect()).chain(rows))
    }

    fn render(&self, report: &Report, _style: Style) -> String {
        match report.csv_table {
            CsvTable::Groups => groups(report),
            CsvTable::LoopTime => loop_time(report),
            CsvTable::Stalls => stalls(report),
            CsvTable::Routes => routes(report),
            CsvTable::Tasks => tasks(report),
            CsvTable::LoopLag => loop_lag(report),
        }
    }
}

pub const LOOP_TIME_COLUMNS: [&str; 10] =
    ["rank", "key", "busy_ms", "share", "slices", "io_ms", "cpu_ms", "samples", "via", "example_trace"];

pub const STALL_COLUMNS: [&str; 9] =
    ["rank", "trace", "thread", "start_s", "duration_ms", "slices", "top", "alike", "alike_ms"];

fn loop_time(report: &Report) -> String {
    let header = LOOP_TIME_COLUMNS.iter().map(|c| c.to_string()).collect();
    let rows = report.loop_time.groups.iter().map(|row| {
        vec![
            row.rank.to_string(),
            row.key.clone(),
            fmt_ms(row.busy_ms),
            row.share.to_string(),
            row.slices.to_string(),
            fmt_ms(row.io_ms),
            fmt_ms(row.cpu_ms),
            row.samples.to_string(),
            row.via.join("+"),
            row.example_trace.clone().unwrap_or_default(),
        ]
    });
    to_csv(std::iter::once(header).chain(rows))
}

fn stalls(report: &Report) -> String {
    let header = STALL_COLUMNS.iter().map(|c| c.to_string()).collect();
    let rows = report.stalls.iter().map(|row| {
        let top: Vec<String> = row.top.iter().map(|t| format!("{}:{}", t.key, fmt_ms(t.busy_ms))).collect();
        vec![
            row.rank.to_string(),
            row.trace.clone(),
            row.thread.to_string(),
            format!("{:.6}", row.start_s),
            fmt_ms(row.duration_ms),
            row.slices.to_string(),
            top.join(";"),
            row.alike.to_string(),
            fmt_ms(row.alike_ms),
        ]
    });
    to_csv(std::iter::once(header).chain(rows))
}

pub const ROUTE_COLUMNS: [&str; 11] = [
    "rank",
    "route",
    "requests",
    "loop_ms_per_request",
    "p50_ms",
    "p95_ms",
    "busy_ms",
    "busy_share",
    "events_per_request",
    "severity_score",
    "worst",
];

fn routes(report: &Report) -> String {
    let header = ROUTE_COLUMNS.iter().map(|c| c.to_string()).collect();
    let rows = report.routes.iter().map(|row| {
        vec![
            row.rank.to_string(),
            row.route.clone(),
            row.requests.to_string(),
            row.loop_ms_per_request.to_string(),
            fmt_ms(row.p50_ms),
            fmt_ms(row.p95_ms),
            fmt_ms(row.busy_ms),
            row.busy_share.to_string(),
            row.events_per_request.to_string(),
            row.severity_score.to_string(),
            row.worst.unwrap_or("").to_owned(),
        ]
    });
    to_csv(std::iter::once(header).chain(rows))
}

pub const TASK_COLUMNS: [&str; 12] = [
    "key",
    "tasks",
    "timed",
    "wall_p50_ms",
    "wall_p95_ms",
    "loop_ms",
    "ready_wait_p50_ms",
    "ready_wait_p95_ms",
    "waiting_ms",
    "cancelled",
    "raised",
    "by",
];

fn tasks(report: &Report) -> String {
    let header = TASK_COLUMNS.iter().map(|c| c.to_string()).collect();
    let rows = report.tasks.rows.iter().map(|row| {
        std::iter::once(row.key.clone()).chain(task_cells(row)).chain([report.tasks.by.to_owned()]).collect()
    });
    to_csv(std::iter::once(header).chain(rows))
}

pub const LOOP_LAG_COLUMNS: [&str; 6] = ["second", "slices", "p50_ms", "p95_ms", "p99_ms", "max_ms"];

fn loop_lag(report: &Report) -> String {
    let header = LOOP_LAG_COLUMNS.iter().map(|c| c.to_string()).collect();
    let rows = report.tasks.loop_lag_by_second.iter().map(|second| {
        let lag = &second.lag;
        vec![
            second.second.to_string(),
            lag.slices.to_string(),
            fmt_ms(lag.p50_ms),
            fmt_ms(lag.p95_ms),
            fmt_ms(lag.p99_ms),
            fmt_ms(lag.max_ms),
        ]
    });
    to_csv(std::iter::once(header).chain(rows))
}

/// The values of each side of a route's diff row, as `base_X` and `new_X` columns.
pub const ROUTE_DIFF_VALUES: [&str; 6] =
    ["requests", "loop_ms_per_request", "p95_ms", "events_per_request", "busy_ms", "events"];

fn route_diff(diff: &Diff) -> String {
    let header = ["route".to_owned(), "status".to_owned()]
        .into_iter()
        .chain(ROUTE_DIFF_VALUES.iter().flat_map(|v| [format!("base_{v}"), format!("new_{v}")]))
        .chain(["p_value".to_owned()]);
    let values = |side: Option<&RouteSideValues>| -> [String; 6] {
        let Some(v) = side else { return Default::default() };
        [
            v.requests.to_string(),
            v.loop_ms_per_request.to_string(),
            v.p95_ms.to_string(),
            v.events_per_request.to_string(),
            v.busy_ms.to_string(),
            v.events.to_string(),
        ]
    };
    let rows = diff.routes.iter().map(|row| {
        let (base, new) = (values(row.base.as_ref()), values(row.new.as_ref()));
        [row.route.clone(), row.status.as_str().to_owned()]
            .into_iter()
            .chain(base.into_iter().zip(new).flat_map(|(b, n)| [b, n]))
            .chain([row.p_value().map_or_else(String::new, |p| p.to_string())])
            .collect()
    });
    to_csv(std::iter::once(header.collect()).chain(rows))
}

/// The values of each side of a task's diff row, as `base_X` and `new_X` columns.
pub const TASK_DIFF_VALUES: [&str; 7] =
    ["tasks", "timed", "wall_ms", "ready_wait_ms", "loop_ms", "wall_p95_ms", "ready_wait_p95_ms"];

fn task_diff(diff: &Diff) -> String {
    let header = ["key".to_owned(), "status".to_owned()]
        .into_iter()
        .chain(TASK_DIFF_VALUES.iter().flat_map(|v| [format!("base_{v}"), format!("new_{v}")]))
        .chain(["p_value".to_owned()]);
    let values = |side: Option<&TaskSideValues>| -> [String; 7] {
        let Some(v) = side else { return Default::default() };
        [
            v.tasks.to_string(),
            v.timed.to_string(),
            v.wall_ms.to_string(),
            v.ready_wait_ms.to_string(),
            v.loop_ms.to_string(),
            v.wall_p95_ms.to_string(),
            v.ready_wait_p95_ms.to_string(),
        ]
    };
    let rows = diff.tasks.rows.iter().map(|row| {
        let (base, new) = (values(row.base.as_ref()), values(row.new.as_ref()));
        [row.key.clone(), row.status.as_str().to_owned()]
            .into_iter()
            .chain(base.into_iter().zip(new).flat_map(|(b, n)| [b, n]))
            .chain([row.p_value().map_or_else(String::new, |p| p.to_string())])
            .collect()
    });
    to_csv(std::iter::once(header.collect()).chain(rows))
}

fn groups(report: &Report) -> String {
    let mut records = vec![COLUMNS.iter().map(|c| c.to_string()).collect()];
    for row in &report.groups {
        let top_events: Vec<String> = row.top_events.iter().map(|e| format!("{}:{}", e.event, e.count)).collect();
        let mut record = vec![
            row.rank.to_string(),
            row.key.clone(),
            row.slices.to_string(),
            row.events.to_string(),
            row.severity_score.to_string(),
            row.severity_level.to_owned(),
            row.exceeded.to_string(),
        ];
        record.extend(elapsed_cells(row.elapsed_ms()));
        record.extend([top_events.join(";"), row.example_trace.clone(), row.example_event.clone()]);
        record.push(fmt_ms(row.busy_ms));
        records.push(record);
    }
    to_csv(records)
}
