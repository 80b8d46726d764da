//! The report as every format shows it: ranked rows, totals, and the facts
//! of each trace. Its serde form is the JSON contract (see
//! [`crate::export::json`]); the other formats show the same values.

use crate::group::GroupBy;
use crate::resolve::{Analysis, CpuGroup, Group};
use aiocop_trace::SeverityLevel;
use clap::ValueEnum;
use serde::Serialize;

/// Bumped when a field of the JSON changes meaning or goes away (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;

/// `--sort`: the column rows are ranked by. Numbers rank high first, keys
/// alphabetically; ties go to the higher score, then the longer total
/// elapsed time, then the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortColumn {
    /// The group key, alphabetically.
    Key,
    /// Slices with blocking I/O at the key.
    Slices,
    /// Blocking events at the key.
    Events,
    /// Total severity score (the default).
    #[value(alias = "severity_score", alias = "severity-score")]
    Score,
    /// Worst severity level, then score.
    #[value(alias = "severity_level", alias = "severity-level")]
    Level,
    /// Slices over the threshold.
    #[value(alias = "over")]
    Exceeded,
    /// Total elapsed time of the slices.
    #[value(alias = "total_ms", alias = "total-ms")]
    Total,
    #[value(alias = "p50_ms", alias = "p50-ms")]
    P50,
    #[value(alias = "p95_ms", alias = "p95-ms")]
    P95,
    #[value(alias = "p99_ms", alias = "p99-ms")]
    P99,
    #[value(alias = "max_ms", alias = "max-ms")]
    Max,
}

impl SortColumn {
    pub fn name(self) -> &'static str {
        match self {
            SortColumn::Key => "key",
            SortColumn::Slices => "slices",
            SortColumn::Events => "events",
            SortColumn::Score => "score",
            SortColumn::Level => "level",
            SortColumn::Exceeded => "exceeded",
            SortColumn::Total => "total",
            SortColumn::P50 => "p50",
            SortColumn::P95 => "p95",
            SortColumn::P99 => "p99",
            SortColumn::Max => "max",
        }
    }
}

/// `--min-severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MinSeverity {
    Low,
    Medium,
    High,
}

impl MinSeverity {
    pub fn level(self) -> SeverityLevel {
        match self {
            MinSeverity::Low => SeverityLevel::Low,
            MinSeverity::Medium => SeverityLevel::Medium,
            MinSeverity::High => SeverityLevel::High,
        }
    }
}

/// Milliseconds, to the microsecond.
pub fn ms(ns: u64) -> f64 {
    (ns.saturating_add(500) / 1000) as f64 / 1000.0
}

/// Seconds, to the microsecond.
pub fn seconds(ns: u64) -> f64 {
    (ns.saturating_add(500) / 1000) as f64 / 1_000_000.0
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventCount {
    pub event: String,
    pub count: u64,
}

/// Elapsed times of a group's slices, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Elapsed {
    pub total_ns: u64,
    pub p50_ns: u64,
    pub p95_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Elapsed {
    pub(crate) fn of(durations: &crate::durations::Durations) -> Elapsed {
        let p = durations.percentiles_ns(&[0.50, 0.95, 0.99]);
        Elapsed { total_ns: durations.total_ns(), p50_ns: p[0], p95_ns: p[1], p99_ns: p[2], max_ns: durations.max_ns() }
    }
}

/// One ranked group of blocking I/O.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub rank: usize,
    pub key: String,
    pub slices: u64,
    pub events: u64,
    pub severity_score: i64,
    pub severity_level: &'static str,
    pub exceeded: u64,
    pub total_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Every event name at the key, most frequent first.
    pub top_events: Vec<EventCount>,
    /// The stack of one blocking event at the key, innermost first, joined with ` <- `.
    pub example_trace: String,
    /// That event, `name(arguments)`.
    pub example_event: String,
    #[serde(skip)]
    pub level: SeverityLevel,
    #[serde(skip)]
    pub elapsed: Elapsed,
}

impl Row {
    /// Total, p50, p95, p99 and max elapsed, in the order every format shows them.
    pub fn elapsed_ms(&self) -> [f64; 5] {
        [self.total_ms, self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms]
    }
}

/// One ranked group of CPU-blocking slices.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CpuRow {
    pub rank: usize,
    pub key: String,
    pub slices: u64,
    /// CPU samples taken in those slices.
    pub samples: u64,
    pub total_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The most frequent sample's stack of the longest slice.
    pub example_trace: String,
    #[serde(skip)]
    pub elapsed: Elapsed,
}

impl CpuRow {
    /// Total, p50, p95, p99 and max elapsed, in the order every format shows them.
    pub fn elapsed_ms(&self) -> [f64; 5] {
        [self.total_ms, self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms]
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TotalsView {
    pub traces: u64,
    /// Slices in the time window.
    pub slices: u64,
    /// Slices with at least one (not ignored) blocking event.
    pub blocking_slices: u64,
    /// Slices over the threshold.
    pub exceeded: u64,
    /// Slices over the threshold without any blocking event.
    pub cpu_blocking: u64,
    /// Blocking events (not ignored) recorded.
    pub events: u64,
    /// Slices the recorder dropped because its writer fell behind.
    pub dropped: u64,
    /// Blocking events past the 50 kept per slice (counted, not recorded).
    pub dropped_events: u64,
    /// Recorded time summed over the traces (within the time window).
    pub duration_s: f64,
    /// Groups that pass `--min-severity`, shown or not.
    pub groups: usize,
    pub cpu_groups: usize,
}

/// What the report says about each input trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceFacts {
    pub path: String,
    pub format_version: String,
    pub aiocop_version: String,
    pub python_version: String,
    pub platform: String,
    pub host: String,
    pub pid: u32,
    /// Since format 1.1 (0, empty in older traces): the parent's pid, the
    /// process's role (`main`, `fork child`, `spawn child`, `subprocess`)
    /// and the command line of the process the user started.
    pub parent_pid: u32,
    pub role: String,
    pub root_command: Vec<String>,
    pub label: Option<String>,
    pub threshold_ms: f64,
    pub start_unix_ns: u64,
    pub duration_s: f64,
    pub slices: u64,
    pub chunks: usize,
    pub unreadable_chunks: u64,
    pub cut_short: bool,
}

/// The options the report was made with, so that it says how to remake it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OptionsView {
    pub threshold_ms: Option<f64>,
    pub since_s: Option<f64>,
    pub until_s: Option<f64>,
    pub exceeded_only: bool,
    pub min_severity: Option<&'static str>,
    pub ignore: Vec<String>,
    pub label: Option<String>,
    pub app_roots: Vec<String>,
    pub sort: &'static str,
    pub top: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub by: String,
    pub groups: Vec<Row>,
    /// Groups past `--top`.
    pub groups_not_shown: usize,
    pub cpu_groups: Vec<CpuRow>,
    pub cpu_groups_not_shown: usize,
    pub totals: TotalsView,
    pub traces: Vec<TraceFacts>,
    pub options: OptionsView,
    #[serde(skip)]
    pub group_by: GroupBy,
}

/// How rows are chosen and ordered.
#[derive(Clone, Copy, Debug)]
pub struct RankOptions {
    pub sort: SortColumn,
    /// Rows shown at most; 0 for all.
    pub top: usize,
    pub min_severity: Option<SeverityLevel>,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions { sort: SortColumn::Score, top: 0, min_severity: None }
    }
}

fn row(key: String, group: Group) -> Row {
    let mut top_events: Vec<EventCount> =
        group.event_counts.into_iter().map(|(event, count)| EventCount { event, count }).collect();
    top_events.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.event.cmp(&b.event)));
    let elapsed = Elapsed::of(&group.durations);
    Row {
        rank: 0,
        key,
        slices: group.slices,
        events: group.events,
        severity_score: group.severity_score,
        severity_level: group.worst.as_str(),
        exceeded: group.exceeded,
        total_ms: ms(elapsed.total_ns),
        p50_ms: ms(elapsed.p50_ns),
        p95_ms: ms(elapsed.p95_ns),
        p99_ms: ms(elapsed.p99_ns),
        max_ms: ms(elapsed.max_ns),
        top_events,
        example_trace: group.example.trace,
        example_event: group.example.event,
        level: group.worst,
        elapsed,
    }
}

fn cpu_row(key: String, group: CpuGroup) -> CpuRow {
    let elapsed = Elapsed::of(&group.durations);
    CpuRow {
        rank: 0,
        key,
        slices: group.slices,
        samples: group.samples,
        total_ms: ms(elapsed.total_ns),
        p50_ms: ms(elapsed.p50_ns),
        p95_ms: ms(elapsed.p95_ns),
        p99_ms: ms(elapsed.p99_ns),
        max_ms: ms(elapsed.max_ns),
        example_trace: group.example.3,
        elapsed,
    }
}

fn elapsed_column(elapsed: &Elapsed, column: SortColumn) -> Option<u64> {
    match column {
        SortColumn::Total => Some(elapsed.total_ns),
        SortColumn::P50 => Some(elapsed.p50_ns),
        SortColumn::P95 => Some(elapsed.p95_ns),
        SortColumn::P99 => Some(elapsed.p99_ns),
        SortColumn::Max => Some(elapsed.max_ns),
        _ => None,
    }
}

/// Orders rows by `column` (see [`SortColumn`]).
pub fn sort_rows(rows: &mut [Row], column: SortColumn) {
    rows.sort_by(|a, b| {
        let primary = match column {
            SortColumn::Key => a.key.cmp(&b.key),
            SortColumn::Slices => b.slices.cmp(&a.slices),
            SortColumn::Events => b.events.cmp(&a.events),
            SortColumn::Score => std::cmp::Ordering::Equal,
            SortColumn::Level => b.level.cmp(&a.level),
            SortColumn::Exceeded => b.exceeded.cmp(&a.exceeded),
            _ => elapsed_column(&b.elapsed, column).cmp(&elapsed_column(&a.elapsed, column)),
        };
        primary
            .then_with(|| b.severity_score.cmp(&a.severity_score))
            .then_with(|| b.elapsed.total_ns.cmp(&a.elapsed.total_ns))
            .then_with(|| a.key.cmp(&b.key))
    });
}

/// Orders CPU rows by `column` where it applies to them (key, slices and
/// the elapsed times), by total elapsed time otherwise.
pub fn sort_cpu_rows(rows: &mut [CpuRow], column: SortColumn) {
    rows.sort_by(|a, b| {
        let primary = match column {
            SortColumn::Key => a.key.cmp(&b.key),
            SortColumn::Slices => b.slices.cmp(&a.slices),
            _ => {
                let column = if elapsed_column(&a.elapsed, column).is_some() { column } else { SortColumn::Total };
                elapsed_column(&b.elapsed, column).cmp(&elapsed_column(&a.elapsed, column))
            }
        };
        primary
            .then_with(|| b.elapsed.total_ns.cmp(&a.elapsed.total_ns))
            .then_with(|| b.slices.cmp(&a.slices))
            .then_with(|| a.key.cmp(&b.key))
    });
}

/// Ranked, filtered rows of `analysis`, and how many `top` left out.
pub fn rank(analysis: Analysis, options: RankOptions) -> (Vec<Row>, usize, Vec<CpuRow>, usize) {
    let mut rows: Vec<Row> = analysis
        .groups
        .into_iter()
        .filter(|(_, group)| options.min_severity.is_none_or(|min| group.worst >= min))
        .map(|(key, group)| row(key, group))
        .collect();
    sort_rows(&mut rows, options.sort);
    let mut cpu_rows: Vec<CpuRow> = analysis.cpu_groups.into_iter().map(|(key, group)| cpu_row(key, group)).collect();
    sort_cpu_rows(&mut cpu_rows, options.sort);
    let hidden = truncate(&mut rows, options.top);
    let cpu_hidden = truncate(&mut cpu_rows, options.top);
    for (rank, row) in rows.iter_mut().enumerate() {
        row.rank = rank + 1;
    }
    for (rank, row) in cpu_rows.iter_mut().enumerate() {
        row.rank = rank + 1;
    }
    (rows, hidden, cpu_rows, cpu_hidden)
}

fn truncate<T>(rows: &mut Vec<T>, top: usize) -> usize {
    if top == 0 || rows.len() <= top {
        return 0;
    }
    let hidden = rows.len() - top;
    rows.truncate(top);
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durations::Durations;
    use crate::resolve::Example;

    fn group(slices: u64, score: i64, worst: SeverityLevel, durations_ms: &[u64]) -> Group {
        let mut durations = Durations::new();
        for &d in durations_ms {
            durations.record(d * 1_000_000);
        }
        Group {
            slices,
            events: slices * 2,
            severity_score: score,
            worst,
            exceeded: 0,
            durations,
            event_counts: [("open".to_owned(), 2), ("time.sleep".to_owned(), 2), ("os.stat".to_owned(), 5)]
                .into_iter()
                .collect(),
            example: Example { slice_score: 0, file: 0, start_ns: 0, trace: "t".to_owned(), event: "e()".to_owned() },
            detail: Default::default(),
        }
    }

    fn analysis() -> Analysis {
        let mut analysis = Analysis::default();
        analysis.groups.insert("a".to_owned(), group(1, 50, SeverityLevel::High, &[300]));
        analysis.groups.insert("b".to_owned(), group(5, 60, SeverityLevel::Medium, &[1, 2, 3, 4, 5]));
        analysis.groups.insert("c".to_owned(), group(2, 50, SeverityLevel::High, &[10, 20]));
        analysis.groups.insert("d".to_owned(), group(3, 2, SeverityLevel::Low, &[7, 8, 9]));
        analysis
    }

    fn keys(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.key.as_str()).collect()
    }

    #[test]
    fn rows_rank_by_score_then_total_time_then_key() {
        let (rows, hidden, _, _) = rank(analysis(), RankOptions::default());
        assert_eq!(keys(&rows), ["b", "a", "c", "d"]);
        assert_eq!(hidden, 0);
        assert_eq!(rows.iter().map(|r| r.rank).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let b = &rows[0];
        assert_eq!((b.total_ms, b.p50_ms, b.p95_ms, b.p99_ms, b.max_ms), (15.0, 3.0, 5.0, 5.0, 5.0));
        assert_eq!(
            b.top_events,
            [
                EventCount { event: "os.stat".to_owned(), count: 5 },
                EventCount { event: "open".to_owned(), count: 2 },
                EventCount { event: "time.sleep".to_owned(), count: 2 },
            ]
        );
    }

    #[test]
    fn every_column_sorts() {
        let ranked = |sort| keys(&rank(analysis(), RankOptions { sort, ..RankOptions::default() }).0).join("");
        assert_eq!(ranked(SortColumn::Key), "abcd");
        assert_eq!(ranked(SortColumn::Slices), "bdca");
        assert_eq!(ranked(SortColumn::Events), "bdca");
        assert_eq!(ranked(SortColumn::Level), "acbd");
        assert_eq!(ranked(SortColumn::Total), "acdb");
        assert_eq!(ranked(SortColumn::P50), "acdb");
        assert_eq!(ranked(SortColumn::Max), "acdb");
        assert_eq!(ranked(SortColumn::P95), "acdb");
        // Equal (zero) exceeded counts: the default order.
        assert_eq!(ranked(SortColumn::Exceeded), "bacd");
    }

    #[test]
    fn min_severity_and_top_choose_rows() {
        let options = RankOptions { min_severity: Some(SeverityLevel::Medium), top: 2, ..RankOptions::default() };
        let (rows, hidden, _, _) = rank(analysis(), options);
        assert_eq!((keys(&rows), hidden), (vec!["b", "a"], 1));
        let options = RankOptions { min_severity: Some(SeverityLevel::High), ..RankOptions::default() };
        assert_eq!(keys(&rank(analysis(), options).0), ["a", "c"]);
    }

    #[test]
    fn sort_names_and_aliases_parse() {
        for (name, column) in [
            ("score", SortColumn::Score),
            ("severity_score", SortColumn::Score),
            ("level", SortColumn::Level),
            ("severity_level", SortColumn::Level),
            ("over", SortColumn::Exceeded),
            ("total_ms", SortColumn::Total),
            ("p99_ms", SortColumn::P99),
            ("max", SortColumn::Max),
            ("key", SortColumn::Key),
        ] {
            assert_eq!(SortColumn::from_str(name, false), Ok(column), "{name}");
        }
        assert_eq!(SortColumn::P95.name(), "p95");
    }

    #[test]
    fn times_are_shown_to_the_microsecond() {
        assert_eq!(ms(1_234_567), 1.235);
        assert_eq!(ms(499), 0.0);
        assert_eq!(seconds(2_500_000_000), 2.5);
    }
}
