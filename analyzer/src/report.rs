//! The report as every format shows it: ranked rows, totals, and the facts
//! of each trace. Its serde form is the JSON contract (see
//! [`crate::export::json`]); the other formats show the same values.

use crate::keys::GroupBy;
use crate::resolve::{via, Analysis, CpuGroup, Group, LoopGroup, Stall};
use aiocop_trace::apportion;
use aiocop_trace::SeverityLevel;
use clap::ValueEnum;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::BTreeMap;

/// Bumped when a field of the JSON changes meaning or goes away (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;
/// Bumped when fields are added: 1 added `loop_time`, `stalls`,
/// `totals.stalls`, `totals.stall_ms`, the groups' `busy_ms` and the
/// traces' `samples`; 2 added `totals.allowed_events`, `totals.allowed_by`,
/// `totals.traces_before_allowed`, `loop_time.traces_with_guessed_stalls`
/// and the stalls' `alike` and `alike_ms` (a row stands for stalls alike);
/// 3 added `tasks` (the Tasks table and loop lag, from traces of format 1.4)
/// and `loop_time.traces_with_wall_clock_native`.
pub const SCHEMA_MINOR: u32 = 4;

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
    /// The loop's busy time at the key (see the Loop time table).
    #[value(alias = "busy_ms", alias = "busy-ms")]
    Busy,
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
            SortColumn::Busy => "busy",
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
    /// The loop's busy time at the key, from slices with blocking events there.
    pub busy_ms: f64,
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
    #[serde(skip)]
    pub busy_ns: u64,
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
    /// Of `events`, those an allow-list allowed when recorded (format 1.3
    /// traces; still counted everywhere else).
    pub allowed_events: u64,
    /// Those (past the 50 kept in a slice aside) by the allowing entry's identity.
    pub allowed_by: BTreeMap<String, u64>,
    /// Traces of a format before 1.3, which cannot say what was allowed.
    pub traces_before_allowed: u64,
    /// Recorded time summed over the traces (within the time window).
    pub duration_s: f64,
    /// Groups that pass `--min-severity`, shown or not.
    pub groups: usize,
    pub cpu_groups: usize,
    /// Stalls found, shown or not, and their time.
    pub stalls: usize,
    pub stall_ms: f64,
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
    /// CPU samples in its slices (in the window): 0 for a trace recorded
    /// without sampling, whose loop time comes from events and what ran.
    pub samples: u64,
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
    /// `--long-ms`.
    pub long_ms: f64,
}

/// One ranked group of the Loop time table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoopRow {
    pub rank: usize,
    pub key: String,
    /// The loop's time at the key; the groups' add up to the total exactly
    /// (to the microsecond).
    pub busy_ms: f64,
    /// Of the loop's busy time, 0 to 1.
    pub share: f64,
    pub slices: u64,
    /// From slices with blocking events; `cpu_ms` is the rest, and they add up to `busy_ms`.
    pub io_ms: f64,
    pub cpu_ms: f64,
    pub samples: u64,
    /// Where its time came from: `events`, `samples`, `what_ran`.
    pub via: Vec<&'static str>,
    /// The stack that gave it the most time; `null` when only what ran did.
    pub example_trace: Option<String>,
    #[serde(skip)]
    pub busy_ns: u64,
}

/// The Loop time table and what it adds up to.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoopTimeView {
    /// The time of every slice in the window, summed over the traces.
    pub busy_ms: f64,
    pub groups: Vec<LoopRow>,
    pub groups_not_shown: usize,
    /// The busy time of the groups past `--top`: with the groups shown, it
    /// adds up to `busy_ms` exactly.
    pub groups_not_shown_busy_ms: f64,
    /// `--long-ms`: slices at least this long should be explained by a stack.
    pub long_ms: f64,
    /// The time of those slices, and the part of it explained by a stack
    /// (blocking events or CPU samples), and that part's share (0 to 1; 1
    /// without long slices).
    pub long_slice_ms: f64,
    pub long_slice_attributed_ms: f64,
    pub long_slice_attributed_share: f64,
    /// CPU samples in the window, and how many traces have none at all.
    pub samples: u64,
    pub traces_without_samples: u64,
    /// Traces with a loop whose iterations were not recorded (format
    /// before 1.3, or uvloop): its stalls were cut by the gap heuristic.
    pub traces_with_guessed_stalls: u64,
    /// Traces whose samples carry no times (before format 1.3, or the
    /// monitor's): each weighs an equal share of its slice.
    #[serde(skip_serializing_if = "is_zero")]
    pub traces_with_untimed_samples: u64,
    /// Traces whose timed samples carry no CPU times (format 1.3): `native`
    /// is told by the wall-clock wait, which a loaded machine lengthens.
    #[serde(skip_serializing_if = "is_zero")]
    pub traces_with_wall_clock_native: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StallTop {
    pub key: String,
    pub busy_ms: f64,
}

/// One stall: a stretch of at least the threshold in which a loop never
/// got back to waiting for I/O.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StallRow {
    pub rank: usize,
    /// The trace, and the start in seconds after its start.
    pub trace: String,
    pub thread: u32,
    pub start_s: f64,
    pub duration_ms: f64,
    pub slices: u64,
    /// The groups with most time in it (at most [`STALL_TOP`]).
    pub top: Vec<StallTop>,
    /// Stalls this row stands for, itself included (schema 1.2): stalls
    /// alike (one trace and thread, the same groups most in them) are one
    /// row, the longest's.
    pub alike: u64,
    /// Their time in all.
    pub alike_ms: f64,
}

/// The Tasks table and loop lag, as the report shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TasksView {
    /// What keys a row: `coroutine`, or `route` with `--by route`.
    pub by: &'static str,
    /// Most total wall time first; all of them (`--top` does not cut it).
    pub rows: Vec<crate::tasks::TaskRow>,
    /// Every slice's ready-wait whose readiness is known; None without any.
    pub loop_lag: Option<crate::tasks::LagSummary>,
    /// The same per second after each trace's start (traces overlaid).
    pub loop_lag_by_second: Vec<crate::tasks::LagSecond>,
    /// Traces recorded before format 1.4, which have no task timing.
    pub traces_without_task_timing: u64,
}

impl TasksView {
    pub fn of(times: &crate::tasks::TaskTimes, by_route: bool) -> TasksView {
        TasksView {
            by: if by_route { "route" } else { "coroutine" },
            rows: crate::tasks::task_rows(times),
            loop_lag: (times.lag.count() > 0).then(|| crate::tasks::LagSummary::of(&times.lag)),
            loop_lag_by_second: crate::tasks::lag_by_second(times),
            traces_without_task_timing: times.untimed_traces,
        }
    }
}

/// Groups named per stall.
pub const STALL_TOP: usize = 3;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub schema_minor: u32,
    pub by: String,
    pub loop_time: LoopTimeView,
    /// `--by route`: every route, most loop time per request first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<crate::routes::RouteRow>,
    /// Schema 1.3: tasks and loop lag (see `crate::tasks`).
    pub tasks: TasksView,
    pub stalls: Vec<StallRow>,
    pub stalls_not_shown: usize,
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
    /// The table `--format csv` writes.
    #[serde(skip)]
    pub csv_table: CsvTable,
    /// What only `--format html` draws.
    #[serde(skip)]
    pub pictures: Pictures,
}

/// What only the HTML report draws (not in the JSON).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pictures {
    /// The loop's busy share over time, one series per trace (per process
    /// or worker: an idle master is never averaged with busy workers).
    pub busy_share: Vec<BusyShare>,
    /// The time each point of every series stands for.
    pub interval_s: f64,
    /// The flame graph: an SVG document.
    pub flame_graph_svg: Option<String>,
    /// The roots the page shows paths relative to (as the terminal does:
    /// `--app-root`s, then the current directory), full on hover.
    pub key_roots: Vec<String>,
}

/// One trace's busy share (0 to 1) in each interval after its start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BusyShare {
    /// The trace as the page names it: its label, path, pid and role.
    pub trace: String,
    pub shares: Vec<f64>,
}

/// The traces' names in a title: each label once (several workers share
/// one), the path of a trace without a label, in input order.
pub fn title_names(traces: &[TraceFacts]) -> Vec<&str> {
    distinct(traces.iter().map(|t| t.label.as_deref().unwrap_or(&t.path)))
}

/// Each of `names` once, in order.
pub fn distinct<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut kept: Vec<&str> = Vec::new();
    for name in names {
        if !kept.contains(&name) {
            kept.push(name);
        }
    }
    kept
}

/// A trace as a picture names it: `w1.bin (label v1, pid 12, fork child)`.
pub fn trace_name(trace: &TraceFacts) -> String {
    let mut facts = Vec::new();
    if let Some(label) = &trace.label {
        facts.push(format!("label {label}"));
    }
    if trace.pid != 0 {
        facts.push(format!("pid {}", trace.pid));
    }
    if !trace.role.is_empty() {
        facts.push(trace.role.clone());
    }
    match facts.is_empty() {
        true => trace.path.clone(),
        false => format!("{} ({})", trace.path, facts.join(", ")),
    }
}

/// Points the busy share over time is drawn with at most.
pub const BUSY_POINTS: usize = 200;

/// The busy share over time of each series of busy time (per
/// [`crate::aggregate::BUSY_BUCKET_NS`] of one trace), in at most
/// [`BUSY_POINTS`] intervals of whole buckets, the same for every series
/// so that they line up.
pub fn busy_share(series_ns: &[&[u64]]) -> (Vec<Vec<f64>>, f64) {
    let bucket_ns = crate::aggregate::BUSY_BUCKET_NS;
    let longest = series_ns.iter().map(|s| s.len()).max().unwrap_or(0);
    let per_point = longest.div_ceil(BUSY_POINTS).max(1);
    let capacity_ns = (per_point as u64 * bucket_ns) as f64;
    let shares = series_ns
        .iter()
        .map(|busy_ns| {
            busy_ns.chunks(per_point).map(|c| (c.iter().sum::<u64>() as f64 / capacity_ns).min(1.0)).collect()
        })
        .collect();
    (shares, per_point as f64 * bucket_ns as f64 / 1e9)
}

/// `--csv-table`: CSV holds one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CsvTable {
    /// The blocking I/O groups (the default, as before loop time).
    #[default]
    Groups,
    /// The Loop time table.
    LoopTime,
    /// The stalls.
    Stalls,
    /// The Routes table (`--by route`); for a diff, its routes' comparison.
    Routes,
    /// The Tasks table, every row (by coroutine, or route with `--by route`).
    Tasks,
    /// Loop lag per second after each trace's start.
    LoopLag,
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
        busy_ms: 0.0,
        top_events,
        example_trace: group.example.trace,
        example_event: group.example.event,
        level: group.worst,
        elapsed,
        busy_ns: 0,
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
            SortColumn::Busy => b.busy_ns.cmp(&a.busy_ns),
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
    let loop_groups = &analysis.loop_groups;
    let mut rows: Vec<Row> = analysis
        .groups
        .into_iter()
        .filter(|(_, group)| options.min_severity.is_none_or(|min| group.worst >= min))
        .map(|(key, group)| {
            let busy_ns = loop_groups.get(&key).map_or(0, |g| g.io_ns);
            Row { busy_ns, busy_ms: ms(busy_ns), ..row(key, group) }
        })
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

/// Microseconds, rounded.
pub fn us(ns: u64) -> u64 {
    ns.saturating_add(500) / 1000
}

/// The Loop time table: groups by busy time, the top `top` (0: all).
/// Each group's microseconds are apportioned from the rounded total, so the
/// groups shown and `groups_not_shown_busy_ms` add up to `busy_ms` exactly.
pub fn loop_time(analysis: &Analysis, top: usize, long_ms: f64) -> LoopTimeView {
    let totals = &analysis.loop_totals;
    let mut groups: Vec<(&String, &LoopGroup)> = analysis.loop_groups.iter().collect();
    groups.sort_by(|a, b| b.1.busy_ns.cmp(&a.1.busy_ns).then_with(|| a.0.cmp(b.0)));
    let weights: Vec<u64> = groups.iter().map(|(_, g)| g.busy_ns).collect();
    let busy_us = apportion(us(totals.busy_ns), &weights);
    let mut rows: Vec<LoopRow> = groups
        .iter()
        .zip(&busy_us)
        .enumerate()
        .map(|(index, ((key, group), &busy_us))| {
            // In proportion to the group's rounded time, so that a group all
            // of I/O (or of CPU) shows exactly that.
            let io_us = match group.busy_ns {
                0 => 0,
                busy_ns => {
                    ((u128::from(busy_us) * u128::from(group.io_ns) + u128::from(busy_ns / 2)) / u128::from(busy_ns))
                        as u64
                }
            };
            let share = if totals.busy_ns == 0 { 0.0 } else { group.busy_ns as f64 / totals.busy_ns as f64 };
            let mut via_names = Vec::new();
            let flags = [
                (via::EVENTS, "events"),
                (via::SAMPLES, "samples"),
                (via::NATIVE, "native"),
                (via::WHAT_RAN, "what_ran"),
            ];
            for (flag, name) in flags {
                if group.via & flag != 0 {
                    via_names.push(name);
                }
            }
            LoopRow {
                rank: index + 1,
                key: (*key).clone(),
                busy_ms: busy_us as f64 / 1000.0,
                share: (share * 10_000.0).round() / 10_000.0,
                slices: group.slices,
                io_ms: io_us as f64 / 1000.0,
                cpu_ms: (busy_us - io_us) as f64 / 1000.0,
                samples: group.samples,
                via: via_names,
                example_trace: group.example.as_ref().map(|e| e.3.clone()),
                busy_ns: group.busy_ns,
            }
        })
        .collect();
    let not_shown = truncate(&mut rows, top);
    let not_shown_us: u64 = busy_us.iter().skip(rows.len()).sum();
    let share = if totals.long_ns == 0 { 1.0 } else { totals.long_attributed_ns as f64 / totals.long_ns as f64 };
    LoopTimeView {
        busy_ms: us(totals.busy_ns) as f64 / 1000.0,
        groups: rows,
        groups_not_shown: not_shown,
        groups_not_shown_busy_ms: not_shown_us as f64 / 1000.0,
        long_ms,
        long_slice_ms: ms(totals.long_ns),
        long_slice_attributed_ms: ms(totals.long_attributed_ns),
        long_slice_attributed_share: (share * 10_000.0).round() / 10_000.0,
        samples: totals.samples,
        traces_without_samples: totals.traces_without_samples,
        traces_with_guessed_stalls: totals.traces_with_guessed_stalls,
        traces_with_untimed_samples: totals.traces_with_untimed_samples,
        traces_with_wall_clock_native: totals.traces_with_wall_clock_native,
    }
}

/// The longest stalls first (then the earliest), alike ones as one row
/// (see [`StallRow::alike`]), the top `top` rows (0: all); `paths` names
/// each file.
pub fn stalls(stalls: &[Stall], top: usize, paths: &[String]) -> (Vec<StallRow>, usize) {
    let mut sorted: Vec<&Stall> = stalls.iter().collect();
    sorted.sort_by(|a, b| {
        b.duration_ns
            .cmp(&a.duration_ns)
            .then_with(|| (a.file, a.start_ns, a.thread).cmp(&(b.file, b.start_ns, b.thread)))
    });
    // Each stall joins the row of the longest one alike: (row, its
    // stall, time in all); rows by trace, thread and groups.
    let mut rows: Vec<(StallRow, &Stall, u64)> = Vec::new();
    let mut rows_of: FxHashMap<(usize, u32, Vec<&str>), Vec<usize>> = FxHashMap::default();
    for stall in sorted {
        let mut keys: Vec<&str> = stall.top.iter().take(STALL_TOP).map(|(key, _)| key.as_str()).collect();
        keys.sort_unstable();
        let candidates = rows_of.entry((stall.file, stall.thread, keys)).or_default();
        if let Some(&index) = candidates.iter().find(|&&index| alike(rows[index].1, stall)) {
            rows[index].0.alike += 1;
            rows[index].2 = rows[index].2.saturating_add(stall.duration_ns);
            continue;
        }
        candidates.push(rows.len());
        let row = StallRow {
            rank: rows.len() + 1,
            trace: paths.get(stall.file).cloned().unwrap_or_default(),
            thread: stall.thread,
            start_s: seconds(stall.start_ns),
            duration_ms: ms(stall.duration_ns),
            slices: stall.slices,
            top: stall
                .top
                .iter()
                .take(STALL_TOP)
                .map(|(key, ns)| StallTop { key: key.clone(), busy_ms: ms(*ns) })
                .collect(),
            alike: 1,
            alike_ms: 0.0,
        };
        rows.push((row, stall, stall.duration_ns));
    }
    let mut rows: Vec<StallRow> =
        rows.into_iter().map(|(row, _, alike_ns)| StallRow { alike_ms: ms(alike_ns), ..row }).collect();
    let not_shown = truncate(&mut rows, top);
    (rows, not_shown)
}

/// Whether `stall` (of the same trace, thread and groups) is of the same
/// shape as the `longest`: at least half as long, with between half and
/// twice its slices. Ten 20 ms steps and a hundred 1 ms callbacks of the
/// same function are two rows.
fn alike(longest: &Stall, stall: &Stall) -> bool {
    let within_twice = |a: u64, b: u64| a <= b.saturating_mul(2) && b <= a.saturating_mul(2);
    within_twice(longest.duration_ns, stall.duration_ns) && within_twice(longest.slices, stall.slices)
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
    use crate::resolve::{Example, LoopGroup};

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
    fn loop_time_rows_add_up_to_the_rounded_total_and_keep_all_io_groups_all_io() {
        let mut analysis = Analysis::default();
        for (key, busy_ns, io_ns) in [("a", 1_000_400, 1_000_400), ("b", 1_000_400, 0), ("c", 1_000_400, 500_000)] {
            let group = LoopGroup { busy_ns, io_ns, slices: 1, ..LoopGroup::default() };
            analysis.loop_groups.insert(key.to_owned(), group);
        }
        analysis.loop_totals.busy_ns = 3_001_200;
        let view = loop_time(&analysis, 2, 2.0);
        let rows: Vec<(&str, f64, f64, f64)> =
            view.groups.iter().map(|r| (r.key.as_str(), r.busy_ms, r.io_ms, r.cpu_ms)).collect();
        // 1000.4 µs each: the microsecond left over goes to the first.
        assert_eq!(rows, [("a", 1.001, 1.001, 0.0), ("b", 1.0, 0.0, 1.0)]);
        assert_eq!((view.busy_ms, view.groups_not_shown, view.groups_not_shown_busy_ms), (3.001, 1, 1.0));
        assert_eq!(view.groups[0].share, 0.3333);
    }

    #[test]
    fn alike_stalls_are_one_row_the_longests() {
        let stall = |file, thread, start_ms: u64, duration_ms: u64, keys: &[&str]| Stall {
            file,
            thread,
            start_ns: start_ms * 1_000_000,
            duration_ns: duration_ms * 1_000_000,
            slices: 3,
            top: keys.iter().map(|k| ((*k).to_owned(), duration_ms * 500_000)).collect(),
        };
        let mut all = Vec::new();
        // 50 near-identical stalls of one worker, the same two groups in either order...
        for i in 0..50u64 {
            let keys: &[&str] = if i % 2 == 0 { &["render", "encode"] } else { &["encode", "render"] };
            all.push(stall(0, 1, 100 * i, 60 + i % 3, keys));
        }
        // ... one of another thread, one of another trace, one of other
        // groups, one of the same groups but another shape (a third as long).
        all.push(stall(0, 2, 5, 61, &["render", "encode"]));
        all.push(stall(1, 1, 5, 70, &["render", "encode"]));
        all.push(stall(0, 1, 7, 30, &["render"]));
        all.push(stall(0, 1, 9, 20, &["encode", "render"]));
        let paths = ["w1.bin".to_owned(), "w2.bin".to_owned()];
        let (rows, not_shown) = stalls(&all, 0, &paths);
        let summary: Vec<_> =
            rows.iter().map(|r| (r.rank, r.trace.as_str(), r.thread, r.duration_ms, r.alike, r.alike_ms)).collect();
        let fifty_ms = (0..50u64).map(|i| 60 + i % 3).sum::<u64>() as f64;
        assert_eq!(
            summary,
            [
                (1, "w2.bin", 1, 70.0, 1, 70.0),
                (2, "w1.bin", 1, 62.0, 50, fifty_ms),
                (3, "w1.bin", 2, 61.0, 1, 61.0),
                (4, "w1.bin", 1, 30.0, 1, 30.0),
                (5, "w1.bin", 1, 20.0, 1, 20.0),
            ]
        );
        assert_eq!(not_shown, 0);
        // The row is the longest's: its start, and --top counts rows.
        assert_eq!(rows[1].start_s, 0.2);
        let (rows, not_shown) = stalls(&all, 2, &paths);
        assert_eq!((rows.len(), not_shown), (2, 3));
    }

    #[test]
    fn names_are_listed_once_in_input_order() {
        assert_eq!(distinct(["v1", "v1", "v2", "v1", "none"]), ["v1", "v2", "none"]);
    }

    #[test]
    fn the_busy_share_is_per_trace_and_at_most_busy_points_long() {
        let bucket = crate::aggregate::BUSY_BUCKET_NS;
        // Two traces, buckets of 100 ms: a busy worker and an idle master
        // are drawn apart, never averaged into a half-busy loop.
        let (shares, interval_s) = busy_share(&[&[bucket, bucket / 2, 0], &[0]]);
        assert_eq!((shares, interval_s), (vec![vec![1.0, 0.5, 0.0], vec![0.0]], 0.1));
        // A long trace is drawn with whole buckets a point (and a shorter
        // one with the same); a loop on two threads of one trace shows at most 100%.
        let long = vec![bucket / 4; 2 * BUSY_POINTS + 1];
        let (shares, interval_s) = busy_share(&[&long, &[bucket; 4]]);
        // 401 buckets, 3 a point: 134 points, the last of 2 buckets (and a third empty).
        assert_eq!((shares[0].len(), interval_s), (134, 0.3));
        assert!(shares[0].iter().all(|&s| (s - 0.25).abs() < 1e-9 || s < 0.25), "{shares:?}");
        assert_eq!(shares[1], [1.0, 1.0 / 3.0]);
        assert_eq!(busy_share(&[&[3 * bucket]]).0, [[1.0]]);
        assert_eq!(busy_share(&[]), (vec![], 0.1));
    }

    #[test]
    fn times_are_shown_to_the_microsecond() {
        assert_eq!(ms(1_234_567), 1.235);
        assert_eq!(ms(499), 0.0);
        assert_eq!(seconds(2_500_000_000), 2.5);
    }
}
