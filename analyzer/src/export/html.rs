//! The HTML report: one self-contained page, for a browser with no network.
//!
//! As hyperfine's HTML export does, the page is ordinary files beside this
//! one, pulled in with `include_str!`: `html/template.html` (a minijinja
//! template), `html/styles.css` and `html/script.js`. This module only turns
//! a [`Report`] or a [`Diff`] into the template's values; the template
//! escapes every text. The page promises:
//!
//! - no request leaves it: styles, script and pictures are inline, and its
//!   Content-Security-Policy forbids loading anything;
//! - it reads with JavaScript off: every table is plain HTML, the busy share
//!   over time and the flame graph are SVG drawn here; the script only sorts
//!   tables when a column's title is clicked;
//! - the report's JSON (the `--format json` contract) is embedded in
//!   `<script type="application/json" id="aiocop-report">` for scripts.

use super::fit::relative_to;
use super::{
    any_task_timed, diff_cells, diff_summary_lines, diff_title, eager_tasks_note, guessed_stalls_note, lag_diff_text,
    loop_lag_text, loop_time_headline, more_tasks_text, no_task_timing_note, route_diff_cells, samples_note,
    stalls_headline, summary_lines, task_diff_cells, tasks_not_shown_text, top_events_text, unexplained_note,
    untimed_samples_note, via_text, wall_clock_native_note, Exporter, Style, DIFF_HEADER, NO_ROUTES, ROUTES_HEADLINE,
    ROUTE_DIFF_HEADER, ROUTE_DIFF_HEADLINE, TASKS_HEADLINE, TASK_DIFF_HEADER, TASK_DIFF_HEADLINE, TASK_ROWS_SHOWN,
};
use crate::diff::RouteSideValues;
use crate::diff::TaskSideValues;
use crate::diff::{Diff, DiffRow, SideValues};
use crate::report::Report;
use crate::units::{count, fmt_ms, fmt_share, fmt_short_ms};
use aiocop_trace::frame::TRACE_SEPARATOR;
use serde::Serialize;

const TEMPLATE: &str = include_str!("html/template.html");
const STYLES: &str = include_str!("html/styles.css");
const SCRIPT: &str = include_str!("html/script.js");

/// Example stacks shown (blocking I/O groups, then CPU-blocking ones).
const EXAMPLES_SHOWN: usize = 10;
/// Event names shown per row.
const EVENTS_SHOWN: usize = 5;
/// The busy share chart's drawing area, in SVG units.
const CHART_WIDTH: f64 = 800.0;
const CHART_HEIGHT: f64 = 120.0;

pub struct HtmlExporter;

/// A table cell: its text, the value it sorts by, its class, and the
/// text shown on hover (a key's full paths where the cell shows them short).
#[derive(Serialize)]
struct Cell {
    text: String,
    sort: Option<f64>,
    class: Option<&'static str>,
    hover: Option<String>,
}

fn text(text: impl Into<String>) -> Cell {
    Cell { text: text.into(), sort: None, class: None, hover: None }
}

/// A key (or keys), its paths shown as the terminal shows them: relative
/// to the `--app-root`s and the current directory, in full on hover.
fn code(full: impl Into<String>, roots: &[String]) -> Cell {
    let (text, hover) = shortened(full.into(), roots);
    Cell { text, sort: None, class: Some("key"), hover }
}

/// `full` with its paths made relative to `roots`, and `full` itself when
/// that changed it.
fn shortened(full: String, roots: &[String]) -> (String, Option<String>) {
    let shown = relative_to(&full, roots);
    let hover = (shown != full).then_some(full);
    (shown, hover)
}

fn number(shown: impl ToString, value: f64) -> Cell {
    Cell { text: shown.to_string(), sort: Some(value), class: Some("num"), hover: None }
}

fn ms(value: f64) -> Cell {
    number(fmt_ms(value), value)
}

#[derive(Serialize)]
struct Column {
    title: &'static str,
    numeric: bool,
}

fn columns(titles: &[&'static str], numeric: &[usize]) -> Vec<Column> {
    titles.iter().enumerate().map(|(i, &title)| Column { title, numeric: numeric.contains(&i) }).collect()
}

/// A section of the page: a title, lines of prose, and a table.
#[derive(Serialize)]
struct Section {
    id: &'static str,
    title: String,
    lines: Vec<String>,
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
    /// Said instead of the table when it has no row.
    empty: String,
    /// Said under the table: rows not shown.
    more: Option<String>,
}

/// The busy share over time, as bars: one picture per trace, all on the same time axis.
#[derive(Serialize)]
struct Chart {
    width: f64,
    height: f64,
    line: String,
    traces: Vec<TraceChart>,
}

/// One trace's bars: a process (a worker, a master) is never averaged with another.
#[derive(Serialize)]
struct TraceChart {
    /// Empty when the report has one trace.
    name: String,
    bars: Vec<Bar>,
    end_label: String,
}

#[derive(Serialize)]
struct Bar {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    title: String,
}

/// Loop lag over time: a bar per second, its height the second's p99.
#[derive(Serialize)]
struct LagChart {
    width: f64,
    height: f64,
    line: String,
    /// The value at the top of the axis: the highest p99 of a second.
    top_label: String,
    end_label: String,
    bars: Vec<Bar>,
}

/// One example stack: its title and frames shown short, each with its full
/// text on hover when that differs.
#[derive(Serialize)]
struct Example {
    title: String,
    title_hover: Option<String>,
    frames: Vec<(String, Option<String>)>,
}

/// The gate's verdict on a diff.
#[derive(Serialize)]
struct Verdict {
    failed: bool,
    text: String,
    reasons: Vec<String>,
}

#[derive(Serialize)]
struct Page {
    title: String,
    generator: String,
    styles: &'static str,
    script: &'static str,
    data_json: String,
    summary: Vec<String>,
    verdict: Option<Verdict>,
    chart: Option<Chart>,
    sections: Vec<Section>,
    lag_chart: Option<LagChart>,
    /// The section the loop lag chart follows (the Tasks table it is of).
    lag_chart_after: &'static str,
    flame_graph: Option<String>,
    flame_graph_note: String,
    /// The section the flame graph follows.
    flame_graph_after: &'static str,
    examples: Vec<Example>,
}

impl Exporter for HtmlExporter {
    fn render(&self, report: &Report, _style: Style) -> String {
        let mut summary = vec![format!("Loop time: {}", loop_time_headline(report))];
        summary.extend(samples_note(report));
        summary.extend(untimed_samples_note(report));
        summary.extend(wall_clock_native_note(report));
        summary.extend(unexplained_note(report));
        summary.extend(guessed_stalls_note(report));
        summary.extend(summary_lines(report));
        let page = Page {
            title: format!("aiocop report: {}", crate::report::title_names(&report.traces).join(", ")),
            generator: generator(),
            styles: STYLES,
            script: SCRIPT,
            data_json: embedded_json(report),
            summary,
            verdict: None,
            chart: chart(report),
            sections: routes_section(report)
                .into_iter()
                .chain([
                    loop_section(report),
                    stalls_section(report),
                    tasks_section(report),
                    io_section(report),
                    cpu_section(report),
                ])
                .collect(),
            lag_chart: lag_chart(report),
            lag_chart_after: "tasks",
            flame_graph: report.pictures.flame_graph_svg.as_deref().map(inline_svg),
            flame_graph_note: FLAME_GRAPH_NOTE.to_owned(),
            flame_graph_after: "loop-time",
            examples: examples(report),
        };
        render_page(&page)
    }

    fn render_diff(&self, diff: &Diff, _style: Style) -> String {
        let gate = &diff.gate;
        let verdict = (!gate.fail_on.is_empty()).then(|| Verdict {
            failed: gate.failed,
            text: if gate.failed {
                format!(
                    "The gate failed (--fail-on {}): {}",
                    gate.fail_on.join(", "),
                    count(gate.reasons.len() as u64, "reason")
                )
            } else {
                format!("The gate passed (--fail-on {}, confidence {})", gate.fail_on.join(", "), gate.confidence)
            },
            reasons: gate.reasons.clone(),
        });
        let mut titles = vec!["status", "group"];
        titles.extend(DIFF_HEADER);
        let roots = diff.new_side.as_deref().map_or(&[][..], |new| &new.pictures.key_roots);
        let section = Section {
            id: "comparison",
            title: format!("Comparison by {}", diff.group_by.title()),
            lines: Vec::new(),
            columns: columns(&titles, &[2, 3, 4, 5, 6]),
            rows: diff.rows.iter().map(|row| diff_row(row, roots)).collect(),
            empty: "No group changed.".to_owned(),
            more: (diff.rows_not_shown > 0)
                .then(|| format!("{} unchanged (--all shows them)", count(diff.rows_not_shown as u64, "more row"))),
        };
        let mut sections = vec![section];
        sections.extend(route_diff_section(diff));
        sections.extend(task_diff_section(diff));
        let new_side = diff.new_side.as_deref();
        if let Some(new) = new_side {
            let (mut loop_time, mut stalls) = (loop_section(new), stalls_section(new));
            loop_time.title = "Loop time of the new side".to_owned();
            stalls.title = "Longest stalls of the new side".to_owned();
            let mut tasks = tasks_section(new);
            tasks.title = "Tasks and loop lag of the new side".to_owned();
            // "tasks" is the comparison of both sides' tasks.
            tasks.id = NEW_SIDE_TASKS;
            sections.extend([loop_time, stalls, tasks]);
        }
        let page = Page {
            title: diff_title(diff),
            generator: generator(),
            styles: STYLES,
            script: SCRIPT,
            data_json: embedded_json(diff),
            summary: diff_summary_lines(diff),
            verdict,
            chart: new_side.and_then(chart).map(|mut chart| {
                chart.line = format!("The new side. {}", chart.line);
                chart
            }),
            sections,
            lag_chart: new_side.and_then(lag_chart).map(|mut chart| {
                chart.line = format!("The new side. {}", chart.line);
                chart
            }),
            lag_chart_after: NEW_SIDE_TASKS,
            flame_graph: diff.flame_graph_svg.as_deref().map(inline_svg),
            flame_graph_note: DIFF_FLAME_GRAPH_NOTE.to_owned(),
            flame_graph_after: "comparison",
            examples: new_side.map(examples).unwrap_or_default(),
        };
        render_page(&page)
    }
}

/// The id of the diff page's Tasks table of the new side.
const NEW_SIDE_TASKS: &str = "new-tasks";

const FLAME_GRAPH_NOTE: &str =
    "The loop's busy time by stack: every slice's time, split as the Loop time table splits it (hover a box for its time).";

const DIFF_FLAME_GRAPH_NOTE: &str = "The new side's busy time by stack, frames matched across releases by module and \
     qualified name, against the base scaled to the same total (hover a box for its change). Only stacks whose share \
     of the time changed beyond chance, by the diff gate's test, are coloured (red grew, blue shrank); the rest is \
     white. Under the picture: the counts, and when the two sides sampled their time unalike (then two recordings \
     of one build are coloured too).";

fn generator() -> String {
    format!("aiocop-analyze {}", env!("CARGO_PKG_VERSION"))
}

fn render_page(page: &Page) -> String {
    let mut env = minijinja::Environment::new();
    env.add_filter("breakable", breakable);
    env.add_template("report.html", TEMPLATE).expect("the HTML template parses");
    let template = env.get_template("report.html").expect("the template was just added");
    let mut html = template.render(page).expect("the HTML template renders every page");
    html.push('\n');
    html
}

/// A key, escaped, that may break after each `/` (and nowhere else) to fit its column.
fn breakable(text: &str) -> minijinja::Value {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;");
    minijinja::Value::from_safe_string(escaped.replace('/', "/<wbr>"))
}

/// `value` as JSON that can stand inside a `<script>` element: `<`, `>`
/// and `&` are written as `\u` escapes, which JSON reads back the same.
fn embedded_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).expect("the report serializes: its keys are strings");
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// An SVG document made fit to stand inside the page: no XML prolog,
/// doctype nor comments, and without scripts or event handlers (inferno's zoom and search
/// would run in the page's context; its `<title>` tooltips stay).
pub(crate) fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    let mut out = svg[start..].to_owned();
    for (open, close) in [("<script", "</script>"), ("<!--", "-->")] {
        let mut kept = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(open) {
            kept.push_str(&rest[..at]);
            rest = rest[at..].find(close).map_or("", |end| &rest[at + end + close.len()..]);
        }
        kept.push_str(rest);
        out = kept;
    }
    // `on...="..."` attributes of tags (inferno's `onload`, `onclick`,
    // `onmouseover`); the text between tags is kept as it is.
    let mut cleaned = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(open) = rest.find('<') {
        cleaned.push_str(&rest[..open]);
        let close = rest[open..].find('>').map_or(rest.len(), |end| open + end + 1);
        cleaned.push_str(&without_handlers(&rest[open..close]));
        rest = &rest[close..];
    }
    cleaned.push_str(rest);
    cleaned
}

/// A tag without its `on...="..."` attributes.
fn without_handlers(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(at) = rest.find(" on") {
        let attribute = &rest[at + 1..];
        let name_len = attribute.find('=').unwrap_or(0);
        let is_handler = name_len > 2
            && attribute[..name_len].chars().all(|c| c.is_ascii_lowercase())
            && attribute[name_len + 1..].starts_with('"');
        if !is_handler {
            out.push_str(&rest[..at + 3]);
            rest = &rest[at + 3..];
            continue;
        }
        out.push_str(&rest[..at]);
        let value = &attribute[name_len + 2..];
        rest = value.find('"').map_or("", |end| &value[end + 1..]);
    }
    out.push_str(rest);
    out
}

fn chart(report: &Report) -> Option<Chart> {
    let pictures = &report.pictures;
    let interval_s = pictures.interval_s;
    if pictures.busy_share.iter().all(|series| series.shares.is_empty()) {
        return None;
    }
    let points = pictures.busy_share.iter().map(|series| series.shares.len()).max().unwrap_or(0) as f64;
    let bar_width = CHART_WIDTH / points;
    let several = pictures.busy_share.len() > 1;
    let traces = pictures
        .busy_share
        .iter()
        .map(|series| {
            let bars = series
                .shares
                .iter()
                .enumerate()
                .map(|(i, &share)| {
                    let from_s = i as f64 * interval_s;
                    Bar {
                        x: round2(i as f64 * bar_width),
                        y: round2(CHART_HEIGHT * (1.0 - share)),
                        width: round2(bar_width),
                        height: round2(CHART_HEIGHT * share),
                        title: format!("{from_s:.1} s to {:.1} s: {} busy", from_s + interval_s, fmt_share(share)),
                    }
                })
                .collect();
            TraceChart {
                name: if several { series.trace.clone() } else { String::new() },
                bars,
                end_label: format!("{:.1} s", points * interval_s),
            }
        })
        .collect();
    Some(Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        line: format!(
            "The loop's busy share in each {} ms after {}, from 0 to 100%.",
            fmt_short_ms(interval_s * 1000.0),
            if several { "each trace's start, one picture per trace (process)" } else { "the trace's start" }
        ),
        traces,
    })
}

/// Each second's p99 loop lag as a bar, scaled to the highest; `None`
/// without task timing.
fn lag_chart(report: &Report) -> Option<LagChart> {
    let seconds = &report.tasks.loop_lag_by_second;
    let last = seconds.last()?.second;
    let top_ms = seconds.iter().map(|s| s.lag.p99_ms).fold(0.0, f64::max);
    let bar_width = CHART_WIDTH / (last + 1) as f64;
    let bars = seconds
        .iter()
        .map(|s| {
            let lag = &s.lag;
            let height = if top_ms > 0.0 { CHART_HEIGHT * lag.p99_ms / top_ms } else { 0.0 };
            Bar {
                x: round2(s.second as f64 * bar_width),
                y: round2(CHART_HEIGHT - height),
                width: round2(bar_width),
                height: round2(height),
                title: format!(
                    "{} s to {} s: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms over {} slices",
                    s.second,
                    s.second + 1,
                    fmt_ms(lag.p50_ms),
                    fmt_ms(lag.p95_ms),
                    fmt_ms(lag.p99_ms),
                    fmt_ms(lag.max_ms),
                    lag.slices
                ),
            }
        })
        .collect();
    Some(LagChart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        line: "Loop lag over time: each second's p99 after each trace's start (traces overlaid), from 0 to the \
               highest second's; hover a bar for its p50, p95, max and slices."
            .to_owned(),
        top_label: format!("{} ms", fmt_short_ms(top_ms)),
        end_label: format!("{} s", last + 1),
        bars,
    })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn loop_section(report: &Report) -> Section {
    let (view, roots) = (&report.loop_time, &report.pictures.key_roots);
    Section {
        id: "loop-time",
        title: "Loop time".to_owned(),
        lines: vec![loop_time_headline(report)],
        columns: columns(
            &["#", "group", "busy ms", "share", "io ms", "cpu ms", "slices", "samples", "from"],
            &[0, 2, 3, 4, 5, 6, 7],
        ),
        rows: view
            .groups
            .iter()
            .map(|row| {
                vec![
                    number(row.rank, row.rank as f64),
                    code(&row.key, roots),
                    ms(row.busy_ms),
                    number(fmt_share(row.share), row.share),
                    ms(row.io_ms),
                    ms(row.cpu_ms),
                    number(row.slices, row.slices as f64),
                    number(row.samples, row.samples as f64),
                    text(via_text(row)),
                ]
            })
            .collect(),
        empty: "No slice recorded.".to_owned(),
        more: (view.groups_not_shown > 0).then(|| {
            format!(
                "… and {} more, {} ms (--top 0 shows all)",
                view.groups_not_shown,
                fmt_ms(view.groups_not_shown_busy_ms)
            )
        }),
    }
}

fn stalls_section(report: &Report) -> Section {
    let roots = &report.pictures.key_roots;
    Section {
        id: "stalls",
        title: "Longest stalls".to_owned(),
        lines: vec![stalls_headline(report)],
        columns: columns(
            &["#", "trace, thread", "start s", "duration ms", "slices", "alike", "alike ms", "most time in"],
            &[0, 2, 3, 4, 5, 6],
        ),
        rows: report
            .stalls
            .iter()
            .map(|row| {
                let top: Vec<String> = row.top.iter().map(|t| format!("{} {} ms", t.key, fmt_ms(t.busy_ms))).collect();
                vec![
                    number(row.rank, row.rank as f64),
                    code(format!("{}, {}", row.trace, row.thread), roots),
                    number(format!("{:.3}", row.start_s), row.start_s),
                    ms(row.duration_ms),
                    number(row.slices, row.slices as f64),
                    number(row.alike, row.alike as f64),
                    ms(row.alike_ms),
                    code(top.join("\n"), roots),
                ]
            })
            .collect(),
        empty: "No stall.".to_owned(),
        more: (report.stalls_not_shown > 0).then(|| format!("… and {} more", report.stalls_not_shown)),
    }
}

/// The loop lag and the Tasks table.
fn tasks_section(report: &Report) -> Section {
    let tasks = &report.tasks;
    let mut lines: Vec<String> = no_task_timing_note(report).into_iter().collect();
    lines.extend(tasks.loop_lag.as_ref().map(|lag| format!("Loop lag: {}", loop_lag_text(lag))));
    lines.push(format!("By {}: {TASKS_HEADLINE}", tasks.by));
    lines.extend(eager_tasks_note(report));
    // Tasks seen only by their slices (none created and ended while recording) have no times to show.
    let shown = if any_task_timed(report) { &tasks.rows[..] } else { &[] };
    let rows = shown.iter().take(TASK_ROWS_SHOWN).map(|row| {
        vec![
            code(&row.key, &report.pictures.key_roots),
            number(row.tasks, row.tasks as f64),
            number(row.timed, row.timed as f64),
            ms(row.wall_p50_ms),
            ms(row.wall_p95_ms),
            ms(row.loop_ms),
            ms(row.ready_wait_p50_ms),
            ms(row.ready_wait_p95_ms),
            ms(row.waiting_ms),
            number(row.cancelled, row.cancelled as f64),
            number(row.raised, row.raised as f64),
        ]
    });
    let titles = [
        tasks.by,
        "tasks",
        "timed",
        "wall p50",
        "wall p95",
        "loop ms",
        "ready p50",
        "ready p95",
        "waiting ms",
        "cancelled",
        "raised",
    ];
    Section {
        id: "tasks",
        title: "Tasks and loop lag".to_owned(),
        lines,
        columns: columns(&titles, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        rows: rows.collect(),
        empty: "No task was created and ended in the traces (and the time window).".to_owned(),
        more: more_tasks_text(report),
    }
}

fn io_section(report: &Report) -> Section {
    let roots = &report.pictures.key_roots;
    Section {
        id: "blocking-io",
        title: format!("Blocking I/O by {}", report.group_by.title()),
        lines: Vec::new(),
        columns: columns(
            &[
                "#",
                "group",
                "slices",
                "events",
                "score",
                "level",
                "over",
                "total ms",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "top events",
            ],
            &[0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        ),
        rows: report
            .groups
            .iter()
            .map(|row| {
                let mut cells = vec![
                    number(row.rank, row.rank as f64),
                    code(&row.key, roots),
                    number(row.slices, row.slices as f64),
                    number(row.events, row.events as f64),
                    number(row.severity_score, row.severity_score as f64),
                    Cell {
                        text: row.severity_level.to_owned(),
                        sort: Some(row.level as u8 as f64),
                        class: Some(match row.level {
                            aiocop_trace::SeverityLevel::High => "level-high",
                            aiocop_trace::SeverityLevel::Medium => "level-medium",
                            aiocop_trace::SeverityLevel::Low => "level-low",
                        }),
                        hover: None,
                    },
                    number(row.exceeded, row.exceeded as f64),
                ];
                cells.extend(row.elapsed_ms().map(ms));
                cells.push(text(top_events_text(row, EVENTS_SHOWN)));
                cells
            })
            .collect(),
        empty: if report.totals.groups > 0 { "No blocking I/O at this severity." } else { "No blocking I/O recorded." }
            .to_owned(),
        more: (report.groups_not_shown > 0)
            .then(|| format!("… and {} more (--top 0 shows all)", report.groups_not_shown)),
    }
}

fn cpu_section(report: &Report) -> Section {
    let roots = &report.pictures.key_roots;
    Section {
        id: "cpu-blocking",
        title: format!("CPU-blocking slices by {}", report.group_by.cpu_title()),
        lines: vec!["Over the threshold without blocking I/O.".to_owned()],
        columns: columns(
            &["#", "group", "slices", "samples", "total ms", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            &[0, 2, 3, 4, 5, 6, 7, 8],
        ),
        rows: report
            .cpu_groups
            .iter()
            .map(|row| {
                let mut cells = vec![
                    number(row.rank, row.rank as f64),
                    code(&row.key, roots),
                    number(row.slices, row.slices as f64),
                    number(row.samples, row.samples as f64),
                ];
                cells.extend(row.elapsed_ms().map(ms));
                cells
            })
            .collect(),
        empty: "No CPU-blocking slice.".to_owned(),
        more: (report.cpu_groups_not_shown > 0)
            .then(|| format!("… and {} more (--top 0 shows all)", report.cpu_groups_not_shown)),
    }
}

fn examples(report: &Report) -> Vec<Example> {
    let roots = &report.pictures.key_roots;
    let example = |title: String, trace: &str| {
        let (title, title_hover) = shortened(title, roots);
        let frames = trace.split(TRACE_SEPARATOR).map(|frame| shortened(frame.to_owned(), roots)).collect();
        Example { title, title_hover, frames }
    };
    let io = report
        .groups
        .iter()
        .map(|row| example(format!("{}. {}: {}", row.rank, row.key, row.example_event), &row.example_trace));
    let cpu = report
        .cpu_groups
        .iter()
        .map(|row| example(format!("CPU {}. {} (most sampled)", row.rank, row.key), &row.example_trace));
    io.chain(cpu).take(EXAMPLES_SHOWN).collect()
}

fn diff_row(row: &DiffRow, roots: &[String]) -> Vec<Cell> {
    // Sorted by the new side's value (the base's for a gone group).
    let value = |pick: fn(&SideValues) -> f64| row.new.as_ref().or(row.base.as_ref()).map_or(0.0, pick);
    let picks: [fn(&SideValues) -> f64; 5] =
        [|v| v.severity_per_1k, |v| v.events_per_1k, |v| v.p95_ms, |v| v.max_ms, |v| v.exceeded_pct];
    let mut cells = vec![
        Cell { text: row.status.as_str().to_owned(), sort: None, class: Some(status_class(row.status)), hover: None },
        code(&row.key, roots),
    ];
    cells.extend(diff_cells(row).into_iter().zip(picks).map(|(shown, pick)| number(shown, value(pick))));
    cells
}

/// `--by route`: the Routes table, first.
fn routes_section(report: &Report) -> Option<Section> {
    if !report.group_by.has_routes_table() {
        return None;
    }
    let rows = report.routes.iter().map(|row| {
        vec![
            number(row.rank, row.rank as f64),
            code(&row.route, &[]),
            number(row.requests, row.requests as f64),
            ms(row.loop_ms_per_request),
            ms(row.p50_ms),
            ms(row.p95_ms),
            number(fmt_share(row.busy_share), row.busy_share),
            number(format!("{:.2}", row.events_per_request), row.events_per_request),
            number(row.severity_score, row.severity_score as f64),
            text(row.worst.unwrap_or("-")),
        ]
    });
    Some(Section {
        id: "routes",
        title: "Routes".to_owned(),
        lines: vec![ROUTES_HEADLINE.to_owned()],
        columns: columns(
            &["#", "route", "requests", "loop ms/req", "p50 ms", "p95 ms", "share", "events/req", "score", "worst"],
            &[0, 2, 3, 4, 5, 6, 7, 8],
        ),
        rows: rows.collect(),
        empty: NO_ROUTES.to_owned(),
        more: None,
    })
}

/// A row of a comparison: its status, its key, and four values shown as
/// `base → new` and sorted by `sorts`.
fn compared_row(status: crate::diff::Status, key: &str, shown: [String; 4], sorts: [f64; 4]) -> Vec<Cell> {
    let status = Cell { text: status.as_str().to_owned(), sort: None, class: Some(status_class(status)), hover: None };
    let values = shown.into_iter().zip(sorts).map(|(shown, sort)| number(shown, sort));
    [status, code(key, &[])].into_iter().chain(values).collect()
}

/// `diff --by route`: every route of either side.
fn route_diff_section(diff: &Diff) -> Option<Section> {
    if !diff.group_by.has_routes_table() {
        return None;
    }
    let mut titles = vec!["status", "route"];
    titles.extend(ROUTE_DIFF_HEADER);
    let rows = diff.routes.iter().map(|row| {
        let value = |pick: fn(&RouteSideValues) -> f64| row.new.as_ref().or(row.base.as_ref()).map_or(0.0, pick);
        let [loop_ms, events, requests, p, band] = route_diff_cells(row);
        let sorts = [
            value(|v| v.loop_ms_per_request),
            value(|v| v.events_per_request),
            value(|v| v.requests as f64),
            row.p_value().unwrap_or(1.0),
        ];
        let mut cells = compared_row(row.status, &row.route, [loop_ms, events, requests, p], sorts);
        cells.push(Cell { text: band, sort: None, class: None, hover: None });
        cells
    });
    Some(Section {
        id: "routes",
        title: "Routes".to_owned(),
        lines: vec![ROUTE_DIFF_HEADLINE.to_owned()],
        columns: columns(&titles, &[2, 3, 4, 5]),
        rows: rows.collect(),
        empty: NO_ROUTES.to_owned(),
        more: None,
    })
}

/// `diff`: loop lag and tasks of both sides; `None` without task timing on either.
fn task_diff_section(diff: &Diff) -> Option<Section> {
    let tasks = &diff.tasks;
    if tasks.loop_lag.is_none() && tasks.rows.is_empty() && tasks.rows_not_shown == 0 {
        return None;
    }
    let mut lines = vec![TASK_DIFF_HEADLINE.to_owned()];
    lines.extend(tasks.loop_lag.as_ref().map(|lag| format!("Loop lag: {}", lag_diff_text(lag))));
    let mut titles = vec!["status", tasks.by];
    titles.extend(TASK_DIFF_HEADER);
    let rows = tasks.rows.iter().map(|row| {
        let value = |pick: fn(&TaskSideValues) -> f64| row.new.as_ref().or(row.base.as_ref()).map_or(0.0, pick);
        let sorts =
            [value(|v| v.wall_ms), value(|v| v.ready_wait_ms), value(|v| v.timed as f64), row.p_value().unwrap_or(1.0)];
        compared_row(row.status, &row.key, task_diff_cells(row), sorts)
    });
    Some(Section {
        id: "tasks",
        title: "Tasks and loop lag".to_owned(),
        lines,
        columns: columns(&titles, &[2, 3, 4, 5]),
        rows: rows.collect(),
        empty: "No task changed.".to_owned(),
        more: tasks_not_shown_text(diff),
    })
}

fn status_class(status: crate::diff::Status) -> &'static str {
    use crate::diff::Status;
    match status {
        Status::New | Status::Regressed => "status-worse",
        Status::Improved | Status::Gone => "status-better",
        Status::Unchanged => "status-same",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_break_only_after_a_slash_and_are_escaped() {
        assert_eq!(breakable("a/b.py:1:<f> & 'g'").to_string(), "a/<wbr>b.py:1:&lt;f&gt; &amp; &#x27;g&#x27;");
    }

    #[test]
    fn embedded_json_cannot_end_its_script_element() {
        let json = embedded_json(&serde_json::json!({"key": "</script><b>&"}));
        assert_eq!(json, r#"{"key":"\u003c/script\u003e\u003cb\u003e\u0026"}"#);
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["key"], "</script><b>&");
    }

    #[test]
    fn an_inline_svg_has_no_prolog_script_or_handlers() {
        let svg = r#"<?xml version="1.0"?><!DOCTYPE svg><svg onload="init(evt)" version="1.1"><!-- see https://x --><script><![CDATA[var x = 1;]]></script><g onclick="zoom(this)" class="func_g"><title>main (1 µs)</title></g><text x="1">only on="this"</text></svg>"#;
        assert_eq!(
            inline_svg(svg),
            r#"<svg version="1.1"><g class="func_g"><title>main (1 µs)</title></g><text x="1">only on="this"</text></svg>"#
        );
    }

    #[test]
    fn keys_show_paths_as_the_terminal_does_and_in_full_on_hover() {
        let mut report = super::super::tests::sample_report();
        report.loop_time.groups[0].key = "/srv/app/store/handlers.py:30:render_page".to_owned();
        report.groups[0].example_trace =
            "/srv/app/store/db.py:8:query <- /srv/app/store/handlers.py:30:render_page".to_owned();
        report.pictures.key_roots = vec!["/srv/app".to_owned()];
        let html = HtmlExporter.render(&report, Style::default());
        let full = "&#x2f;srv&#x2f;app&#x2f;store&#x2f;handlers.py:30:render_page";
        assert!(
            html.contains(&format!("<td class=\"key\" title=\"{full}\">store/<wbr>handlers.py:30:render_page</td>")),
            "{html}"
        );
        assert!(
            html.contains(&format!("<li><code title=\"{full}\">store&#x2f;handlers.py:30:render_page</code></li>")),
            "{html}"
        );
        // The JSON for scripts keeps the full key; a key with no path under a root has no hover.
        assert!(html.contains("\"key\":\"/srv/app/store/handlers.py:30:render_page\""), "{html}");
        assert!(html.contains("<td class=\"key\">app.py:40:crunch</td>"), "{html}");
    }

    #[test]
    fn the_title_names_each_label_once() {
        let mut report = super::super::tests::sample_report();
        let trace = |path: &str, label: Option<&str>| crate::report::TraceFacts {
            path: path.to_owned(),
            label: label.map(str::to_owned),
            ..report.traces[0].clone()
        };
        report.traces = vec![
            trace("w1.bin", Some("v1")),
            trace("w2.bin", Some("v1")),
            trace("master.bin", Some("v1")),
            trace("other.bin", None),
            trace("w3.bin", Some("v2")),
            trace("w4.bin", Some("v1")),
        ];
        let html = HtmlExporter.render(&report, Style::default());
        assert!(html.contains("<title>aiocop report: v1, other.bin, v2</title>"), "{html}");
    }

    #[test]
    fn each_trace_has_its_own_busy_share_never_an_average() {
        use crate::report::{BusyShare, Pictures};
        let mut report = super::super::tests::sample_report();
        let series = |trace: &str, shares: &[f64]| BusyShare { trace: trace.to_owned(), shares: shares.to_vec() };
        report.pictures = Pictures {
            busy_share: vec![
                series("master.bin (pid 1, main)", &[0.0, 0.0]),
                series("w1.bin (pid 2, fork child)", &[0.9, 0.85]),
                series("w2.bin (pid 3, fork child)", &[0.88, 0.9]),
            ],
            interval_s: 0.1,
            ..Pictures::default()
        };
        let html = HtmlExporter.render(&report, Style::default());
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 3, "{html}");
        for name in ["master.bin (pid 1, main)", "w1.bin (pid 2, fork child)", "w2.bin (pid 3, fork child)"] {
            assert!(html.contains(&format!("<h3>{name}</h3>")), "{name}\n{html}");
        }
        assert!(html.contains("<title>0.0 s to 0.1 s: 90% busy</title>"), "{html}");
        assert!(html.contains("<title>0.0 s to 0.1 s: 0% busy</title>"), "{html}");
        // The three averaged would be about 60% busy: no bar says so.
        assert!(!html.contains(": 59% busy") && !html.contains(": 60% busy"), "{html}");
        // One trace: one picture, not named.
        report.pictures.busy_share.truncate(1);
        let html = HtmlExporter.render(&report, Style::default());
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 1);
        assert!(!html.contains("<h3>"), "{html}");
    }

    #[test]
    fn the_tasks_table_and_loop_lag_over_time_are_on_the_page() {
        let mut report = super::super::tests::sample_report();
        let second = |second, p99_ms| crate::tasks::LagSecond {
            second,
            lag: crate::tasks::LagSummary { slices: 10, p50_ms: 0.1, p95_ms: 1.0, p99_ms, max_ms: 40.0 },
        };
        report.tasks.loop_lag_by_second = vec![second(0, 2.0), second(3, 30.0)];
        let html = HtmlExporter.render(&report, Style::default());
        assert!(html.contains("<section id=\"tasks\">"), "{html}");
        assert!(html.contains("Loop lag: how long ready callbacks waited for the loop, over 1200 slices"), "{html}");
        assert!(html.contains("<td class=\"key\">handle</td>"), "{html}");
        // A bar per second with a slice, the highest p99 at the top of the axis.
        assert!(html.contains("<section id=\"loop-lag-over-time\">"), "{html}");
        assert_eq!(html.matches("<svg class=\"chart lag-chart\"").count(), 1);
        assert!(html.contains(">30 ms</text>"), "{html}");
        let bar =
            "<rect class=\"bar\" x=\"600.0\" y=\"0.0\" width=\"200.0\" height=\"120.0\"><title>3 s to 4 s: p50 0.100 ms, \
                   p95 1.000 ms, p99 30.000 ms, max 40.000 ms over 10 slices</title></rect>";
        assert!(html.contains(bar), "{html}");
        assert!(html.contains("<rect class=\"bar\" x=\"0.0\" y=\"112.0\" width=\"200.0\" height=\"8.0\">"), "{html}");
    }

    #[test]
    fn an_empty_report_says_so_in_each_section_without_pictures() {
        let mut report = super::super::tests::sample_report();
        report.groups.clear();
        report.cpu_groups.clear();
        report.stalls.clear();
        report.loop_time.groups.clear();
        report.totals.groups = 0;
        report.tasks.rows.clear();
        report.tasks.loop_lag = None;
        report.tasks.loop_lag_by_second.clear();
        let html = HtmlExporter.render(&report, Style::default());
        let tasks = "No task was created and ended in the traces (and the time window).";
        for said in
            ["No slice recorded.", "No stall.", "No blocking I&#x2f;O recorded.", "No CPU-blocking slice.", tasks]
        {
            assert!(html.contains(&format!("<p class=\"empty\">{said}</p>")), "{said}\n{html}");
        }
        for absent in
            ["id=\"busy-over-time\"", "id=\"loop-lag-over-time\"", "id=\"flame-graph\"", "id=\"examples\"", "<table"]
        {
            assert!(!html.contains(absent), "{absent}");
        }
    }
}
