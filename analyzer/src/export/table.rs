//! The report for people: where the loop's time went (the Loop time table)
//! and its longest stalls, then a comfy-table ranking of blocking I/O,
//! example traces of the top rows, the CPU-blocking ranking, then the
//! totals and the traces' facts.
//!
//! To a pipe or a file every column is written whole, as scripts read it;
//! on a terminal ([`Style::width`]) fewer columns are shown (`--wide`: all)
//! and laid out to fit by the `fit` module.

use super::fit::{fit_key, lay_out, shorten_key, wrap_text, Fit, Text};
use super::{
    any_alike, any_task_timed, diff_cells, diff_summary_lines, diff_title, eager_tasks_note, elapsed_cells,
    guessed_stalls_note, lag_diff_text, loop_lag_text, loop_time_headline, more_tasks_text, no_task_timing_note,
    route_diff_cells, samples_note, stalls_headline, summary_lines, task_diff_cells, tasks_not_shown_text,
    top_events_text, unexplained_note, untimed_samples_note, via_text, wall_clock_native_note, Exporter, Style,
    DIFF_HEADER, NO_ROUTES, ROUTES_HEADLINE, ROUTE_DIFF_HEADER, ROUTE_DIFF_HEADLINE, TASKS_HEADLINE, TASK_DIFF_HEADER,
    TASK_DIFF_HEADLINE, TASK_ROWS_SHOWN,
};
use crate::diff::{Diff, Status};
use crate::report::Report;
use crate::units::{fmt_ms, fmt_share};
use aiocop_trace::frame::TRACE_SEPARATOR;
use aiocop_trace::SeverityLevel;
use comfy_table::{presets, Attribute, Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Table, Width};

/// Rows whose example trace is shown under the table.
const EXAMPLES_SHOWN: usize = 3;
/// Event names shown per row.
const EVENTS_SHOWN: usize = 3;
/// In the full table, text columns are no narrower than this.
const MIN_TEXT_WIDTH: u16 = 20;

pub struct TableExporter;

/// A column: its title, how it gives way on a terminal, and whether it is
/// shown there without `--wide`.
struct Column {
    title: String,
    fit: Fit,
    right: bool,
    narrow: bool,
}

/// A number column (right-aligned, whole).
fn number(title: &str, narrow: bool) -> Column {
    Column { title: title.to_owned(), fit: Fit::Fixed, right: true, narrow }
}

/// A diff's value column (right-aligned, wrapped between words on a narrow terminal).
fn phrase(title: &str, narrow: bool) -> Column {
    Column { title: title.to_owned(), fit: Fit::Phrase, right: true, narrow }
}

fn text(title: &str, fit: Fit) -> Column {
    Column { title: title.to_owned(), fit, right: false, narrow: true }
}

/// How a cell is coloured.
#[derive(Clone, Copy)]
enum Paint {
    None,
    Level(SeverityLevel),
    Status(Status),
}

/// A table before it is drawn: its columns, and its rows of cells.
struct Grid {
    columns: Vec<Column>,
    rows: Vec<Vec<(Text, Paint)>>,
}

impl Grid {
    fn new(columns: Vec<Column>) -> Grid {
        Grid { columns, rows: Vec::new() }
    }

    fn add(&mut self, row: Vec<(Text, Paint)>) {
        self.rows.push(row);
    }

    /// The table drawn: whole to a pipe, fitted to a terminal.
    fn draw(&self, style: Style) -> String {
        let shown: Vec<usize> = (0..self.columns.len())
            .filter(|&c| style.width.is_none() || style.wide || self.columns[c].narrow)
            .collect();
        let titles: Vec<String> = shown.iter().map(|&c| self.columns[c].title.clone()).collect();
        let texts: Vec<Vec<Text>> =
            self.rows.iter().map(|row| shown.iter().map(|&c| row[c].0.clone()).collect()).collect();
        let (titles, cells) = match style.width {
            Some(width) => {
                let fits: Vec<Fit> = shown.iter().map(|&c| self.columns[c].fit).collect();
                lay_out(usize::from(width), &titles, &fits, &texts)
            }
            None => (titles, texts.into_iter().map(|row| row.into_iter().map(|t| t.full).collect()).collect()),
        };
        let mut table = Table::new();
        table.load_style(presets::UTF8_FULL_CONDENSED);
        // Never ask the terminal: `style` says what it is, so that output to a
        // file or a pipe is the same wherever it is made.
        table.force_no_tty();
        if style.color {
            table.enforce_styling();
        }
        table.set_content_arrangement(ContentArrangement::Disabled);
        table.set_header(titles.iter().map(|title| {
            let cell = Cell::new(title);
            if style.color {
                cell.add_attribute(Attribute::Bold)
            } else {
                cell
            }
        }));
        for (index, &c) in shown.iter().enumerate() {
            let Some(column) = table.column_mut(index) else { continue };
            let spec = &self.columns[c];
            if spec.right {
                column.set_cell_alignment(CellAlignment::Right);
            }
            // On a terminal the layout has made every cell fit already.
            if style.width.is_none() {
                column.set_constraint(match spec.fit {
                    Fit::Fixed | Fit::Phrase => ColumnConstraint::ContentWidth,
                    Fit::Words | Fit::Key => ColumnConstraint::LowerBoundary(Width::Fixed(MIN_TEXT_WIDTH)),
                });
            }
        }
        for (row, cells) in self.rows.iter().zip(cells) {
            table.add_row(
                shown.iter().zip(cells).map(|(&c, text)| paint(Cell::new(text), row[c].1, style)).collect::<Vec<_>>(),
            );
        }
        table.to_string()
    }
}

fn paint(cell: Cell, paint: Paint, style: Style) -> Cell {
    if !style.color {
        return cell;
    }
    match paint {
        Paint::Level(SeverityLevel::High) | Paint::Status(Status::New | Status::Regressed) => {
            cell.fg(Color::Red).add_attribute(Attribute::Bold)
        }
        Paint::Level(SeverityLevel::Medium) => cell.fg(Color::Yellow),
        Paint::Status(Status::Improved | Status::Gone) => cell.fg(Color::Green),
        _ => cell,
    }
}

fn plain(text: impl ToString) -> (Text, Paint) {
    (Text::plain(text.to_string()), Paint::None)
}

fn key(text: &str) -> (Text, Paint) {
    (Text::key(text), Paint::None)
}

/// Prose: on a terminal, wrapped between words to its width.
fn push_prose(out: &mut String, text: &str, style: Style) {
    match style.width {
        Some(width) => out.push_str(&wrap_text(text, usize::from(width))),
        None => out.push_str(text),
    }
}

fn bold(text: &str, style: Style) -> String {
    if style.color {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

impl Exporter for TableExporter {
    fn render_diff(&self, diff: &Diff, style: Style) -> String {
        let mut out = String::new();
        push_prose(&mut out, &format!("{}\n", bold(&diff_title(diff), style)), style);
        if diff.rows.is_empty() {
            out.push_str("No group changed.\n");
        } else {
            let mut columns = vec![text("status", Fit::Fixed), text(&diff.group_by.title(), Fit::Key)];
            // On a terminal: the severity rate and the p95, the others with --wide.
            columns.extend(DIFF_HEADER.iter().enumerate().map(|(i, title)| phrase(title, i == 0 || i == 2)));
            let mut grid = Grid::new(columns);
            for row in &diff.rows {
                let mut cells = vec![(Text::plain(row.status.as_str()), Paint::Status(row.status)), key(&row.key)];
                cells.extend(diff_cells(row).map(plain));
                grid.add(cells);
            }
            out.push_str(&grid.draw(style));
            out.push('\n');
        }
        render_route_diff(&mut out, diff, style);
        render_task_diff(&mut out, diff, style);
        out.push('\n');
        for line in diff_summary_lines(diff) {
            push_prose(&mut out, &format!("{line}\n"), style);
        }
        out
    }

    fn render(&self, report: &Report, style: Style) -> String {
        let mut out = String::new();
        render_routes(&mut out, report, style);
        render_loop_time(&mut out, report, style);
        render_stalls(&mut out, report, style);
        render_tasks(&mut out, report, style);
        push_prose(&mut out, &format!("{} by {}:\n", bold("Blocking I/O", style), report.group_by.title()), style);
        if report.groups.is_empty() {
            out.push_str("No blocking I/O");
            out.push_str(if report.totals.groups > 0 { " at this severity.\n" } else { " recorded.\n" });
        } else {
            // On a terminal: what is needed to rank and to act, the rest with --wide.
            let mut grid = Grid::new(vec![
                number("#", true),
                text(&report.group_by.title(), Fit::Key),
                number("slices", true),
                number("events", false),
                number("score", true),
                text("level", Fit::Fixed),
                number("over", false),
                number("total ms", false),
                number("p50 ms", false),
                number("p95 ms", true),
                number("p99 ms", false),
                number("max ms", false),
                text("top events", Fit::Words),
            ]);
            for row in &report.groups {
                let mut cells = vec![
                    plain(row.rank),
                    key(&row.key),
                    plain(row.slices),
                    plain(row.events),
                    plain(row.severity_score),
                    (Text::plain(row.level.as_str()), Paint::Level(row.level)),
                    plain(row.exceeded),
                ];
                cells.extend(elapsed_cells(row.elapsed_ms()).map(plain));
                cells.push(plain(top_events_text(row, EVENTS_SHOWN)));
                grid.add(cells);
            }
            out.push_str(&grid.draw(style));
            out.push('\n');
            if report.groups_not_shown > 0 {
                out.push_str(&format!("… and {} more (--top 0 shows all)\n", report.groups_not_shown));
            }
            out.push('\n');
            out.push_str(&bold("Example traces", style));
            out.push_str(" (innermost frame first):\n");
            for row in report.groups.iter().take(EXAMPLES_SHOWN) {
                // On a terminal the key is shortened to fit after its rank (over
                // lines where its file name cannot fit on one), and each frame after its arrow.
                let rank = format!("{}. ", row.rank);
                let key = match style.width {
                    Some(width) => shorten_key(&row.key, usize::from(width).saturating_sub(rank.len() + 1))
                        .join(&format!("\n{}", " ".repeat(rank.len()))),
                    None => row.key.clone(),
                };
                push_prose(&mut out, &format!("{rank}{key}: {}\n", row.example_event), style);
                for (depth, frame) in row.example_trace.split(TRACE_SEPARATOR).enumerate() {
                    let arrow = if depth == 0 { "   " } else { "<- " };
                    let frame = match style.width {
                        Some(width) => fit_key(frame, usize::from(width).saturating_sub(8)).join("\n        "),
                        None => frame.to_owned(),
                    };
                    out.push_str(&format!("     {arrow}{frame}\n"));
                }
            }
        }
        if !report.cpu_groups.is_empty() {
            out.push('\n');
            // One line of prose, wrapped whole (its bold words included) to the terminal.
            let title = format!(
                "{} (over the threshold, no blocking I/O), by {}:\n",
                bold("CPU-blocking slices", style),
                report.group_by.cpu_title()
            );
            push_prose(&mut out, &title, style);
            let mut grid = Grid::new(vec![
                number("#", true),
                text(&report.group_by.cpu_title(), Fit::Key),
                number("slices", true),
                number("samples", true),
                number("total ms", true),
                number("p50 ms", false),
                number("p95 ms", true),
                number("p99 ms", false),
                number("max ms", true),
            ]);
            for row in &report.cpu_groups {
                let mut cells = vec![plain(row.rank), key(&row.key), plain(row.slices), plain(row.samples)];
                cells.extend(elapsed_cells(row.elapsed_ms()).map(plain));
                grid.add(cells);
            }
            out.push_str(&grid.draw(style));
            out.push('\n');
            if report.cpu_groups_not_shown > 0 {
                out.push_str(&format!("… and {} more (--top 0 shows all)\n", report.cpu_groups_not_shown));
            }
        }
        out.push('\n');
        for line in summary_lines(report) {
            push_prose(&mut out, &format!("{line}\n"), style);
        }
        out
    }
}

/// `diff --by route`: every route of either side, most loop time per request added first.
fn render_route_diff(out: &mut String, diff: &Diff, style: Style) {
    if !diff.group_by.has_routes_table() {
        return;
    }
    out.push('\n');
    push_prose(out, &format!("{}: {}\n", bold("Routes", style), ROUTE_DIFF_HEADLINE), style);
    if diff.routes.is_empty() {
        push_prose(out, &format!("{NO_ROUTES}\n"), style);
        return;
    }
    let mut columns = vec![text("status", Fit::Fixed), text("route", Fit::Key)];
    // On a terminal: the two rates; the requests and p-value with --wide.
    columns.extend(ROUTE_DIFF_HEADER.iter().enumerate().map(|(i, title)| phrase(title, i < 2)));
    let mut grid = Grid::new(columns);
    for row in &diff.routes {
        let mut cells = vec![(Text::plain(row.status.as_str()), Paint::Status(row.status)), key(&row.route)];
        cells.extend(route_diff_cells(row).map(plain));
        grid.add(cells);
    }
    out.push_str(&grid.draw(style));
    out.push('\n');
}

/// Loop lag and tasks of both sides: the changed rows (all with --all).
fn render_task_diff(out: &mut String, diff: &Diff, style: Style) {
    let tasks = &diff.tasks;
    if tasks.loop_lag.is_none() && tasks.rows.is_empty() && tasks.rows_not_shown == 0 {
        return;
    }
    out.push('\n');
    push_prose(out, &format!("{}: {}\n", bold("Tasks and loop lag", style), TASK_DIFF_HEADLINE), style);
    if let Some(lag) = &tasks.loop_lag {
        push_prose(out, &format!("{}: {}\n", bold("Loop lag", style), lag_diff_text(lag)), style);
    }
    if !tasks.rows.is_empty() {
        let mut columns = vec![text("status", Fit::Fixed), text(tasks.by, Fit::Key)];
        // On a terminal: the two means; the tasks and p-value with --wide.
        columns.extend(TASK_DIFF_HEADER.iter().enumerate().map(|(i, title)| phrase(title, i < 2)));
        let mut grid = Grid::new(columns);
        for row in &tasks.rows {
            let mut cells = vec![(Text::plain(row.status.as_str()), Paint::Status(row.status)), key(&row.key)];
            cells.extend(task_diff_cells(row).map(plain));
            grid.add(cells);
        }
        out.push_str(&grid.draw(style));
        out.push('\n');
    }
    if let Some(more) = tasks_not_shown_text(diff) {
        out.push_str(&format!("{more}\n"));
    }
}

/// `--by route`: the Routes table, most loop time per request first.
fn render_routes(out: &mut String, report: &Report, style: Style) {
    if !report.group_by.has_routes_table() {
        return;
    }
    push_prose(out, &format!("{}: {}\n", bold("Routes", style), ROUTES_HEADLINE), style);
    if report.routes.is_empty() {
        push_prose(out, &format!("{NO_ROUTES}\n\n"), style);
        return;
    }
    let mut grid = Grid::new(vec![
        number("#", true),
        text("route", Fit::Key),
        number("requests", true),
        number("loop ms/req", true),
        // p50 and the share with --wide: the table fits 80 columns.
        number("p50 ms", false),
        number("p95 ms", true),
        number("share", false),
        number("events/req", true),
        number("score", false),
        text("worst", Fit::Fixed),
    ]);
    for row in &report.routes {
        grid.add(vec![
            plain(row.rank),
            key(&row.route),
            plain(row.requests),
            plain(fmt_ms(row.loop_ms_per_request)),
            plain(fmt_ms(row.p50_ms)),
            plain(fmt_ms(row.p95_ms)),
            plain(fmt_share(row.busy_share)),
            plain(format!("{:.2}", row.events_per_request)),
            plain(row.severity_score),
            match row.worst {
                Some(level) => (Text::plain(level.to_owned()), Paint::Level(level_of(level))),
                None => plain("-"),
            },
        ]);
    }
    out.push_str(&grid.draw(style));
    out.push('\n');
}

/// The Tasks table (by coroutine, or route) and the loop lag.
fn render_tasks(out: &mut String, report: &Report, style: Style) {
    let tasks = &report.tasks;
    if let Some(note) = no_task_timing_note(report) {
        push_prose(out, &format!("{note}\n"), style);
    }
    if let Some(lag) = &tasks.loop_lag {
        push_prose(out, &format!("{}: {}\n", bold("Loop lag", style), loop_lag_text(lag)), style);
    }
    if !any_task_timed(report) {
        if tasks.loop_lag.is_some() {
            out.push('\n');
        }
        return;
    }
    push_prose(out, &format!("{} by {}: {}\n", bold("Tasks", style), tasks.by, TASKS_HEADLINE), style);
    let mut grid = Grid::new(vec![
        text(tasks.by, Fit::Key),
        number("tasks", true),
        // How many were timed and the medians with --wide: the table fits 80 columns.
        number("timed", false),
        number("wall p50", false),
        number("wall p95", true),
        number("loop ms", true),
        number("ready p50", false),
        number("ready p95", true),
        number("waiting ms", true),
    ]);
    for row in tasks.rows.iter().take(TASK_ROWS_SHOWN) {
        grid.add(vec![
            key(&row.key),
            plain(row.tasks),
            plain(row.timed),
            plain(fmt_ms(row.wall_p50_ms)),
            plain(fmt_ms(row.wall_p95_ms)),
            plain(fmt_ms(row.loop_ms)),
            plain(fmt_ms(row.ready_wait_p50_ms)),
            plain(fmt_ms(row.ready_wait_p95_ms)),
            plain(fmt_ms(row.waiting_ms)),
        ]);
    }
    out.push_str(&grid.draw(style));
    if let Some(more) = more_tasks_text(report) {
        out.push_str(&format!("{more}\n"));
    }
    if let Some(eager) = eager_tasks_note(report) {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        push_prose(out, &format!("{eager}\n"), style);
    }
    out.push_str("\n\n");
}

fn level_of(name: &str) -> SeverityLevel {
    match name {
        "high" => SeverityLevel::High,
        "medium" => SeverityLevel::Medium,
        _ => SeverityLevel::Low,
    }
}

/// The Loop time table, its headline and the note on missing samples.
fn render_loop_time(out: &mut String, report: &Report, style: Style) {
    let view = &report.loop_time;
    push_prose(out, &format!("{}: {}\n", bold("Loop time", style), loop_time_headline(report)), style);
    let notes =
        [samples_note(report), untimed_samples_note(report), wall_clock_native_note(report), unexplained_note(report)];
    for note in notes.into_iter().flatten() {
        push_prose(out, &format!("{note}\n"), style);
    }
    if view.groups.is_empty() {
        out.push_str("No slice recorded.\n\n");
        return;
    }
    let mut grid = Grid::new(vec![
        number("#", true),
        text(&report.group_by.title(), Fit::Key),
        number("busy ms", true),
        number("share", true),
        number("io ms", false),
        number("cpu ms", false),
        number("slices", true),
        number("samples", false),
        // A list (`events, samples, native`): it wraps between its items on a narrow terminal.
        text("from", Fit::Words),
    ]);
    for row in &view.groups {
        grid.add(vec![
            plain(row.rank),
            key(&row.key),
            plain(fmt_ms(row.busy_ms)),
            plain(fmt_share(row.share)),
            plain(fmt_ms(row.io_ms)),
            plain(fmt_ms(row.cpu_ms)),
            plain(row.slices),
            plain(row.samples),
            // As a list on a terminal (wrapped between items), as written elsewhere to a pipe.
            plain(if style.width.is_some() { via_text(row).replace('+', ", ") } else { via_text(row) }),
        ]);
    }
    out.push_str(&grid.draw(style));
    out.push('\n');
    if view.groups_not_shown > 0 {
        out.push_str(&format!(
            "… and {} more, {} ms (--top 0 shows all)\n",
            view.groups_not_shown,
            fmt_ms(view.groups_not_shown_busy_ms)
        ));
    }
    out.push('\n');
}

/// The longest stalls.
fn render_stalls(out: &mut String, report: &Report, style: Style) {
    push_prose(out, &format!("{}: {}\n", bold("Stalls", style), stalls_headline(report)), style);
    if let Some(note) = guessed_stalls_note(report) {
        push_prose(out, &format!("{note}\n"), style);
    }
    if report.stalls.is_empty() {
        out.push('\n');
        return;
    }
    // Which trace and thread, when there is more than one of either.
    let place = report.traces.len() > 1 || report.stalls.iter().any(|row| row.thread != report.stalls[0].thread);
    let mut columns = vec![
        number("#", true),
        number("start s", true),
        number("duration ms", true),
        number("slices", true),
        text("most time in", Fit::Key),
    ];
    let alike = any_alike(report);
    if alike {
        columns.insert(4, number("alike", true));
        // Their time in all only with --wide: a terminal's room goes to the keys.
        columns.insert(5, number("alike ms", false));
    }
    if place {
        columns.insert(1, text("trace, thread", Fit::Key));
    }
    let mut grid = Grid::new(columns);
    for row in &report.stalls {
        // One group a line on a terminal, its key shortened to fit.
        let top = row.top.iter().map(|t| (t.key.clone(), format!(" {} ms", fmt_ms(t.busy_ms)))).collect();
        let mut cells = vec![
            plain(row.rank),
            plain(format!("{:.3}", row.start_s)),
            plain(fmt_ms(row.duration_ms)),
            plain(row.slices),
            (Text::keyed_values(top), Paint::None),
        ];
        if alike {
            cells.insert(4, plain(row.alike));
            cells.insert(5, plain(fmt_ms(row.alike_ms)));
        }
        if place {
            let place = Text {
                full: format!("{}, {}", row.trace, row.thread),
                keys: vec![(row.trace.clone(), format!(", {}", row.thread))],
            };
            cells.insert(1, (place, Paint::None));
        }
        grid.add(cells);
    }
    out.push_str(&grid.draw(style));
    out.push('\n');
    if report.stalls_not_shown > 0 {
        out.push_str(&format!("… and {} more (--top 0 shows all)\n", report.stalls_not_shown));
    }
    out.push('\n');
}
