//! One module per output format behind one trait, each turning a
//! [`Report`] (or a [`Diff`]) into the text written out.
//!
//! - `table`: comfy-table tables and the totals under them, for people;
//! - `json`: the stable contract to script against (see [`json`]);
//! - `csv`: one row per group, the JSON's group fields as columns;
//! - `markdown`: GitHub tables, for a pull request or an issue;
//! - `html`: one self-contained page (see [`html`]);
//! - `fit`: the table laid out to a terminal's width.

pub mod csv;
pub(crate) mod fit;
pub mod html;
pub mod json;
pub mod markdown;
pub mod table;

use crate::diff::Status;
use crate::diff::{trim, Diff, DiffRow, SideValues, SideView};
use crate::diff::{LagDiff, TaskDiffRow, TaskSideValues};
use crate::diff::{RouteDiffRow, RouteSideValues};
use crate::report::{LoopRow, Report, Row, StallRow, TotalsView, TraceFacts};
use crate::tasks::LagSummary;
use crate::units::{count, fmt_ms, fmt_share, fmt_short_ms};
use clap::ValueEnum;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    Markdown,
    /// One self-contained page: tables, the flame graph, the busy share over time.
    Html,
}

/// How text for a terminal may look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours and bold.
    pub color: bool,
    /// The terminal's width, to fit the table to; `None` (a pipe, a file):
    /// every column, whole.
    pub width: Option<u16>,
    /// On a terminal, every column (`--wide`).
    pub wide: bool,
}

pub trait Exporter {
    fn render(&self, report: &Report, style: Style) -> String;
    fn render_diff(&self, diff: &Diff, style: Style) -> String;
}

pub fn exporter(format: ReportFormat) -> Box<dyn Exporter> {
    match format {
        ReportFormat::Table => Box::new(table::TableExporter),
        ReportFormat::Json => Box::new(json::JsonExporter),
        ReportFormat::Csv => Box::new(csv::CsvExporter),
        ReportFormat::Markdown => Box::new(markdown::MarkdownExporter),
        ReportFormat::Html => Box::new(html::HtmlExporter),
    }
}

/// Elapsed columns (`Row::elapsed_ms`) as every text format shows them.
pub(crate) fn elapsed_cells(elapsed_ms: [f64; 5]) -> [String; 5] {
    elapsed_ms.map(fmt_ms)
}

/// The first few event names of a row, `open ×3, time.sleep ×1, …`.
pub(crate) fn top_events_text(row: &Row, at_most: usize) -> String {
    let mut parts: Vec<String> =
        row.top_events.iter().take(at_most).map(|e| format!("{} ×{}", e.event, e.count)).collect();
    if row.top_events.len() > at_most {
        parts.push("…".to_owned());
    }
    parts.join(", ")
}

/// The line over the Loop time table: busy time, and how much of the long
/// slices' time a stack explains.
pub(crate) fn loop_time_headline(report: &Report) -> String {
    let view = &report.loop_time;
    let recorded = report.totals.duration_s;
    let busy = format!("{:.3} s busy of {recorded:.3} s recorded", view.busy_ms / 1000.0);
    let long = fmt_short_ms(view.long_ms);
    if view.long_slice_ms == 0.0 {
        return format!("{busy}; no slice of {long} ms or more");
    }
    format!(
        "{busy}; {} of the time in slices of {long} ms or more ({:.3} s) is explained by a stack",
        fmt_share(view.long_slice_attributed_share),
        view.long_slice_ms / 1000.0
    )
}

/// Said when traces have no CPU samples: their time without blocking I/O
/// is attributed to what ran, not to a line.
pub(crate) fn samples_note(report: &Report) -> Option<String> {
    let (missing, traces) = (report.loop_time.traces_without_samples, report.traces.len() as u64);
    let which = match (missing, traces) {
        (0, _) => return None,
        (1, 1) => "the trace has no CPU samples".to_owned(),
        (m, t) if m == t => format!("none of the {t} traces has CPU samples"),
        (m, t) => format!("{m} of the {t} traces have no CPU samples"),
    };
    Some(format!(
        "Samples missing: {which} (recorded without sampling, or before it existed), so time without blocking I/O goes to what ran (a coroutine or callback), not to a line"
    ))
}

/// Said once when stalls were cut by the gap heuristic: the loop's
/// iterations are not in the trace (recorded before format 1.3, or a uvloop
/// loop, whose iterations are not visible).
pub(crate) fn guessed_stalls_note(report: &Report) -> Option<String> {
    let (guessed, traces) = (report.loop_time.traces_with_guessed_stalls, report.traces.len() as u64);
    let which = match (guessed, traces) {
        (0, _) => return None,
        (1, 1) => "the trace does not record its loop's iterations".to_owned(),
        (g, t) if g == t => format!("none of the {t} traces records its loop's iterations"),
        (g, t) => format!("{g} of the {t} traces do not record their loop's iterations"),
    };
    Some(format!(
        "Stalls guessed: {which} (recorded before format 1.3, or by uvloop, whose iterations are not visible), so its stalls are slices at most --stall-gap-us apart, which can chain requests the loop polled between"
    ))
}

/// Said once when samples carry no times: they are weighed by count.
pub(crate) fn untimed_samples_note(report: &Report) -> Option<String> {
    let (untimed, traces) = (report.loop_time.traces_with_untimed_samples, report.traces.len() as u64);
    let which = match (untimed, traces) {
        (0, _) => return None,
        (1, 1) => "the trace's samples carry".to_owned(),
        (u, t) if u == t => format!("the samples of the {t} traces carry"),
        (u, t) => format!("{u} of the {t} traces have samples that carry"),
    };
    Some(format!(
        "Samples count-weighted: {which} no times (recorded before trace format 1.3), so each stands for an equal share of its slice and a long C call's time is split between its caller and the code after it"
    ))
}

/// Said once when timed samples carry no CPU times: `native` was told by
/// the wall clock.
pub(crate) fn wall_clock_native_note(report: &Report) -> Option<String> {
    let (wall_clock, traces) = (report.loop_time.traces_with_wall_clock_native, report.traces.len() as u64);
    let which = match (wall_clock, traces) {
        (0, _) => return None,
        (1, 1) => "the trace's samples carry".to_owned(),
        (w, t) if w == t => format!("the samples of the {t} traces carry"),
        (w, t) => format!("{w} of the {t} traces have samples that carry"),
    };
    Some(format!(
        "Native marked by the wall clock: {which} no CPU times (recorded before trace format 1.4 added them), so a sample whose request waited over two intervals is marked native even when the loop thread was only waiting for a CPU (a loaded machine)"
    ))
}

/// Said when most of the long slices' time has no stack although the
/// traces have samples: those slices were not sampled (too short for the
/// recorder's sampler), and their time is under what ran.
pub(crate) fn unexplained_note(report: &Report) -> Option<String> {
    let view = &report.loop_time;
    let unexplained_ms = view.long_slice_ms - view.long_slice_attributed_ms;
    if view.traces_without_samples > 0 || view.long_slice_ms == 0.0 || view.long_slice_attributed_share >= 0.9 {
        return None;
    }
    Some(format!(
        "Not explained by a stack: {:.3} s of slices of {} ms or more had neither blocking I/O nor CPU samples; their time is under what ran",
        unexplained_ms / 1000.0,
        fmt_short_ms(view.long_ms)
    ))
}

/// Where a Loop time row's time came from: `events+what ran`.
pub(crate) fn via_text(row: &LoopRow) -> String {
    row.via.iter().map(|v| v.replace('_', " ")).collect::<Vec<_>>().join("+")
}

/// The groups with most time in a stall: `key 120.000 ms, key 3.000 ms`.
pub(crate) fn stall_top_text(row: &StallRow) -> String {
    row.top.iter().map(|t| format!("{} {} ms", t.key, fmt_ms(t.busy_ms))).collect::<Vec<_>>().join(", ")
}

/// Whether a stalls row stands for several alike: the tables then show
/// how many and their time in all.
pub(crate) fn any_alike(report: &Report) -> bool {
    report.stalls.iter().any(|row| row.alike > 1)
}

/// The line over the stalls table.
pub(crate) fn stalls_headline(report: &Report) -> String {
    let mut thresholds: Vec<String> =
        report.traces.iter().map(|t| fmt_short_ms(report.options.threshold_ms.unwrap_or(t.threshold_ms))).collect();
    thresholds.sort();
    thresholds.dedup();
    let totals = &report.totals;
    let alike = if any_alike(report) {
        "; stalls alike (one trace and thread, the same groups most in them) are one row, the longest's"
    } else {
        ""
    };
    format!(
        "{} of at least the threshold ({} ms) without getting back to waiting for I/O, {} ms in all{alike}",
        count(totals.stalls as u64, "stall"),
        thresholds.join(", "),
        fmt_ms(totals.stall_ms)
    )
}

/// The lines under the tables: totals, then the facts of each trace.
pub(crate) fn summary_lines(report: &Report) -> Vec<String> {
    let totals = &report.totals;
    let options = &report.options;
    let mut lines = Vec::new();
    let window = match (options.since_s, options.until_s) {
        (None, None) => String::new(),
        (since, until) => format!(
            " from {} s to {}",
            fmt_short_ms(since.unwrap_or(0.0)),
            until.map_or_else(|| "the end".to_owned(), |u| format!("{} s", fmt_short_ms(u)))
        ),
    };
    let threshold =
        options.threshold_ms.map_or_else(String::new, |t| format!(" (re-evaluated at {} ms)", fmt_short_ms(t)));
    lines.push(format!(
        "Slices: {} in {:.3} s recorded{window}, {} over the threshold{threshold}",
        totals.slices, totals.duration_s, totals.exceeded
    ));
    lines.push(format!("Blocking I/O: {}, {}", count(totals.blocking_slices, "slice"), count(totals.events, "event")));
    let cpu_where = report
        .cpu_groups
        .first()
        .map_or_else(String::new, |row| format!("; most at {} ({})", row.key, count(row.slices, "slice")));
    lines.push(format!(
        "CPU-blocking: {} over the threshold without blocking I/O{cpu_where}",
        count(totals.cpu_blocking, "slice")
    ));
    lines.push(format!("Stalls: {}, {} ms", totals.stalls, fmt_ms(totals.stall_ms)));
    lines.push(format!(
        "Dropped by the recorder: {}, {} past 50 in a slice",
        count(totals.dropped, "slice"),
        count(totals.dropped_events, "event")
    ));
    lines.extend(allowed_line(totals));
    const MAX_TRACES: usize = 10;
    for trace in report.traces.iter().take(MAX_TRACES) {
        lines.push(trace_line(trace));
    }
    if report.traces.len() > MAX_TRACES {
        lines.push(format!("… and {} more traces", report.traces.len() - MAX_TRACES));
    }
    lines
}

/// What an allow-list allowed, counted in the totals above (never hidden):
/// said when something was allowed, or once when traces predate allow-lists.
fn allowed_line(totals: &TotalsView) -> Option<String> {
    let old = totals.traces_before_allowed;
    if old == 0 && totals.allowed_events == 0 {
        return None;
    }
    let old_traces = count(old, "trace");
    if old == totals.traces {
        return Some(format!("Allowed by an allow-list: not recorded ({old_traces} of format before 1.3)"));
    }
    let by_entry: Vec<String> = totals.allowed_by.iter().map(|(entry, n)| format!("{entry} {n}")).collect();
    let by_entry = if by_entry.is_empty() { String::new() } else { format!(": {}", by_entry.join(", ")) };
    let before = if old == 0 { String::new() } else { format!(" (not recorded in {old_traces} of format before 1.3)") };
    Some(format!("Allowed by an allow-list: {} of the blocking events{by_entry}{before}", totals.allowed_events))
}

fn trace_line(trace: &TraceFacts) -> String {
    let mut line = format!(
        "Trace '{}': label {}, host {}, Python {}, threshold {} ms",
        trace.path,
        trace.label.as_deref().unwrap_or("none"),
        trace.host,
        trace.python_version,
        fmt_short_ms(trace.threshold_ms)
    );
    if !trace.role.is_empty() {
        line.push_str(&format!(", pid {} ({}", trace.pid, trace.role));
        if trace.role != "main" {
            line.push_str(&format!(" of pid {}", trace.parent_pid));
        }
        line.push(')');
    }
    if trace.cut_short {
        line.push_str(", cut short");
    }
    if trace.unreadable_chunks > 0 {
        line.push_str(&format!(", {} of {} chunks unreadable", trace.unreadable_chunks, trace.chunks));
    }
    line
}

/// `base → new (+150%)`: one value of a diff row on both sides, `–` for a
/// side without the group.
pub(crate) fn change_text(row: &DiffRow, pick: fn(&SideValues) -> f64) -> String {
    both_sides_text(row.base.as_ref().map(pick), row.new.as_ref().map(pick))
}

/// `base → new (+150%)`, `–` for a side without the value.
fn both_sides_text(base: Option<f64>, new: Option<f64>) -> String {
    let side = |value: Option<f64>| value.map_or_else(|| "–".to_owned(), trim);
    let percent = match (base, new) {
        (Some(base), Some(new)) if base > 0.0 => match ((new - base) / base * 100.0).round() {
            0.0 => String::new(), // also -0.0: a change too small to show
            percent => format!(" ({percent:+}%)"),
        },
        _ => String::new(),
    };
    format!("{} → {}{percent}", side(base), side(new))
}

/// The cells of a diff row after its status and key, in the order the
/// table and markdown formats show them (see [`DIFF_HEADER`]).
pub(crate) fn diff_cells(row: &DiffRow) -> [String; 5] {
    [
        change_text(row, |v| v.severity_per_1k),
        change_text(row, |v| v.events_per_1k),
        change_text(row, |v| v.p95_ms),
        change_text(row, |v| v.max_ms),
        change_text(row, |v| v.exceeded_pct),
    ]
}

/// The titles of [`diff_cells`].
pub(crate) const DIFF_HEADER: [&str; 5] =
    ["severity per 1k slices", "events per 1k slices", "p95 ms", "max ms", "% over threshold"];

/// A route's value on both sides, `base → new (+100%)`, `–` for a side without it.
fn route_change(row: &RouteDiffRow, pick: fn(&RouteSideValues) -> f64) -> String {
    both_sides_text(row.base.as_ref().map(pick), row.new.as_ref().map(pick))
}

/// The cells of a route's diff row after its status and route (see [`ROUTE_DIFF_HEADER`]).
pub(crate) fn route_diff_cells(row: &RouteDiffRow) -> [String; 5] {
    [
        route_change(row, |v| v.loop_ms_per_request),
        route_change(row, |v| v.events_per_request),
        route_change(row, |v| v.requests as f64),
        row.p_value().map_or_else(|| "–".to_owned(), crate::stats::p_text),
        machine_band_text(row),
    ]
}

/// The ratios of loop time per request within which the other routes say
/// the machine moved (`x0.8–x1.9 (2 routes)`), `–` when none could.
fn machine_band_text(row: &RouteDiffRow) -> String {
    row.machine_band.map_or_else(
        || "–".to_owned(),
        |band| {
            let (low, high) = band.band();
            format!("x{low:.2}–x{high:.2} ({})", crate::units::count(band.peers as u64, "route"))
        },
    )
}

/// The titles of [`route_diff_cells`].
pub(crate) const ROUTE_DIFF_HEADER: [&str; 5] =
    ["loop ms per request", "events per request", "requests", "p", "machine's band"];

/// What the routes' comparison says under its title.
pub(crate) const ROUTE_DIFF_HEADLINE: &str = "each route's loop time and blocking events per request, tested \
as the gate tests a group's rates (regressed: beyond chance and by --min-increase; loop time only past \
the machine's band, the ratios within which the other routes moved, by --min-increase more and by \
--min-route-change-ms); a regressed route fails --fail-on route (or any), not regressed.";

/// What the Routes table's numbers are.
pub(crate) const ROUTES_HEADLINE: &str =
    "requests are those the framework routed; loop ms/req is the route's busy time \
(tasks its requests spawned included) over them, p50 and p95 that of each request's own task.";

/// Said instead of the Routes table when no request was routed.
pub(crate) const NO_ROUTES: &str = "No request was routed: the traces name no route (recorded before aiocop \
named routes, or no web framework it knows served them).";

/// Rows of the Tasks table the terminal, Markdown and HTML show (all are
/// in the JSON and the CSV).
pub(crate) const TASK_ROWS_SHOWN: usize = 20;

/// What the Tasks table's numbers are.
pub(crate) const TASKS_HEADLINE: &str = "timed tasks were created and ended in the trace (and the time window); \
wall is from creation to the end of the last step, loop ms its steps' time (mean), ready the time its steps \
waited for the loop once ready, waiting ms the rest (I/O, timers, other tasks; mean). Milliseconds.";

/// Said once when traces predate task timing.
pub(crate) fn no_task_timing_note(report: &Report) -> Option<String> {
    let traces = report.tasks.traces_without_task_timing;
    let which = match traces {
        0 => return None,
        t if t == report.traces.len() as u64 => "the traces were".to_owned(),
        t => format!("{t} of the traces were"),
    };
    Some(format!("No task timing: {which} recorded before format 1.4."))
}

/// Says how many tasks started eagerly (3.12+ eager tasks), if any did.
pub(crate) fn eager_tasks_note(report: &Report) -> Option<String> {
    let rows = &report.tasks.rows;
    let eager: u64 = rows.iter().map(|row| row.eager).sum();
    if eager == 0 {
        return None;
    }
    let ended: u64 = rows.iter().map(|row| row.ended_eagerly).sum();
    Some(format!(
        "Eager tasks: {eager} of the tasks ran their first step at once inside the slice that created them, \
         {ended} of them ending there with no slice of their own. That step is in their loop time, not in \
         their creator task's; the Loop time table counts it once, in the creators' slices."
    ))
}

/// What follows "Loop lag:": the distribution with its count.
pub(crate) fn loop_lag_text(lag: &LagSummary) -> String {
    format!(
        "how long ready callbacks waited for the loop, over {} slices: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms.",
        lag.slices,
        fmt_ms(lag.p50_ms),
        fmt_ms(lag.p95_ms),
        fmt_ms(lag.p99_ms),
        fmt_ms(lag.max_ms),
    )
}

/// Whether the Tasks table has anything to show: tasks seen only by their
/// slices (none created and ended while recording) have no times.
pub(crate) fn any_task_timed(report: &Report) -> bool {
    report.tasks.rows.iter().any(|row| row.timed > 0)
}

/// A Tasks row's values after its key, as Markdown and CSV write them
/// (tasks, timed, wall p50/p95, loop, ready p50/p95, waiting, cancelled, raised).
pub(crate) fn task_cells(row: &crate::tasks::TaskRow) -> [String; 10] {
    [
        row.tasks.to_string(),
        row.timed.to_string(),
        fmt_ms(row.wall_p50_ms),
        fmt_ms(row.wall_p95_ms),
        fmt_ms(row.loop_ms),
        fmt_ms(row.ready_wait_p50_ms),
        fmt_ms(row.ready_wait_p95_ms),
        fmt_ms(row.waiting_ms),
        row.cancelled.to_string(),
        row.raised.to_string(),
    ]
}

/// Said under a Tasks table cut at [`TASK_ROWS_SHOWN`].
pub(crate) fn more_tasks_text(report: &Report) -> Option<String> {
    let rows = report.tasks.rows.len();
    (rows > TASK_ROWS_SHOWN).then(|| format!("{} more in --format json or --csv-table tasks.", rows - TASK_ROWS_SHOWN))
}

/// The loop lag of both sides, `Loop lag: p50 0.2 → 0.3 ms, …`, and its verdict.
pub(crate) fn lag_diff_text(lag: &LagDiff) -> String {
    let (b, n) = (&lag.base, &lag.new);
    let p = match lag.status {
        Status::Improved => lag.fall_p_value,
        _ => lag.rise_p_value,
    };
    format!(
        "p50 {} → {} ms, p95 {} → {} ms, p99 {} → {} ms, max {} → {} ms over {} → {} slices; mean {} → {} ms: {} ({})",
        trim(b.p50_ms),
        trim(n.p50_ms),
        trim(b.p95_ms),
        trim(n.p95_ms),
        trim(b.p99_ms),
        trim(n.p99_ms),
        trim(b.max_ms),
        trim(n.max_ms),
        b.slices,
        n.slices,
        trim(lag.base_mean_ms),
        trim(lag.new_mean_ms),
        lag.status.as_str(),
        crate::stats::p_text(p)
    )
}

/// What the comparison of tasks says under its title.
pub(crate) const TASK_DIFF_HEADLINE: &str = "the mean wall time and ready-wait of each timed task, and the loop \
lag's mean per slice, tested as the gate tests a group's rates (regressed: beyond chance, by --min-increase and, a \
task's, by --min-route-change-ms); not scaled to the machine's speed; the gate (--fail-on) does not look at them.";

/// A value of a task's diff row on both sides, `base → new (+100%)`.
fn task_change(row: &TaskDiffRow, pick: fn(&TaskSideValues) -> f64) -> String {
    both_sides_text(row.base.as_ref().map(pick), row.new.as_ref().map(pick))
}

/// The cells of a task's diff row after its status and key (see [`TASK_DIFF_HEADER`]).
pub(crate) fn task_diff_cells(row: &TaskDiffRow) -> [String; 4] {
    [
        task_change(row, |v| v.wall_ms),
        task_change(row, |v| v.ready_wait_ms),
        task_change(row, |v| v.timed as f64),
        row.p_value().map_or_else(|| "–".to_owned(), crate::stats::p_text),
    ]
}

/// The titles of [`task_diff_cells`].
pub(crate) const TASK_DIFF_HEADER: [&str; 4] = ["wall ms/task", "ready ms/task", "timed tasks", "p"];

/// Said under the tasks' comparison when unchanged rows were left out.
pub(crate) fn tasks_not_shown_text(diff: &Diff) -> Option<String> {
    let hidden = diff.tasks.rows_not_shown;
    (hidden > 0).then(|| format!("{} unchanged (--all shows them).", count(hidden as u64, "more row")))
}

/// The title line of a diff: both sides by name.
pub(crate) fn diff_title(diff: &Diff) -> String {
    format!("Base {} → new {}, by {}", diff.base.name(), diff.new.name(), diff.group_by.title())
}

fn side_line(which: &str, side: &SideView) -> String {
    let totals = &side.totals;
    format!(
        "{which} {}: {} in {:.3} s, {} with blocking I/O ({}), {} over the threshold, {} CPU-blocking, {} dropped",
        side.name(),
        count(totals.slices, "slice"),
        totals.duration_s,
        totals.blocking_slices,
        count(totals.events, "event"),
        totals.exceeded,
        totals.cpu_blocking,
        totals.dropped
    )
}

/// The lines under a diff's table: both sides, the counts of each status,
/// the event table, the gate.
pub(crate) fn diff_summary_lines(diff: &Diff) -> Vec<String> {
    let counts = &diff.counts;
    let mut lines = vec![side_line("Base", &diff.base), side_line("New", &diff.new)];
    let hidden = if diff.rows_not_shown > 0 { " (not shown: --all shows them)" } else { "" };
    lines.push(format!(
        "Groups: {} new, {} regressed, {} improved, {} gone, {} unchanged{hidden}",
        counts.new, counts.regressed, counts.improved, counts.gone, counts.unchanged
    ));
    let mut scoring = format!("Both sides scored with the {} side's event weights", diff.scored_with);
    if diff.event_table_changes.is_empty() {
        scoring.push_str(", the same on both sides");
    } else {
        let weight = |w: Option<i64>| w.map_or_else(|| "–".to_owned(), |w| w.to_string());
        let changes: Vec<String> = diff
            .event_table_changes
            .iter()
            .map(|c| format!("{} {} → {}", c.event, weight(c.base_weight), weight(c.new_weight)))
            .collect();
        scoring.push_str(&format!("; they differ: {}", changes.join(", ")));
    }
    lines.push(scoring);
    let gate = &diff.gate;
    if !gate.fail_on.is_empty() {
        let verdict = if gate.failed {
            format!("failed ({})", count(gate.reasons.len() as u64, "reason"))
        } else {
            "passed".to_owned()
        };
        let one_time = if gate.gate_one_time { "" } else { ", one-time work left out" };
        let routes =
            gate.routes_judged.map_or(String::new(), |judged| format!(", {} judged", count(judged as u64, "route")));
        lines.push(format!(
            "Gate (--fail-on {}, confidence {}, groups of at least {} on the new side{one_time}{routes}): {verdict}",
            gate.fail_on.join(", "),
            gate.confidence,
            count(gate.min_count, "slice")
        ));
    }
    if let Some(warning) = &diff.warning {
        lines.push(format!("Warning: {warning}"));
    }
    lines
}

#[cfg(test)]
pub(crate) mod tests;
