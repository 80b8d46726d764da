//! The report for people: where the loop's time went (the Loop time table)
//! and its longest stalls, then a comfy-table ranking of blocking I/O,
//! example traces of the top rows, the CPU-blocking ranking, then the
//! totals and the traces' facts.

use super::{
    diff_cells, diff_summary_lines, diff_title, elapsed_cells, fmt_ms, fmt_share, loop_time_headline, samples_note,
    stall_top_text, stalls_headline, summary_lines, top_events_text, unexplained_note, via_text, Exporter, Style,
    DIFF_HEADER,
};
use crate::diff::{Diff, Status};
use crate::report::Report;
use aiocop_trace::frame::TRACE_SEPARATOR;
use aiocop_trace::SeverityLevel;
use comfy_table::{presets, Attribute, Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Table, Width};

/// Rows whose example trace is shown under the table.
const EXAMPLES_SHOWN: usize = 3;
/// Event names shown per row.
const EVENTS_SHOWN: usize = 3;
/// Text columns wrap no narrower than this.
const MIN_TEXT_WIDTH: u16 = 20;
/// The level column of the blocking I/O table (never wrapped).
const LEVEL_COLUMN: usize = 5;

pub struct TableExporter;

/// A table whose `right_aligned` (number) columns never wrap; on a narrow
/// terminal the others (key, event names) wrap, down to `MIN_TEXT_WIDTH`.
fn new_table(style: Style, header: &[String], right_aligned: &[usize]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    // Never ask the terminal: `style` says what it is, so that output to a
    // file or a pipe is the same wherever it is made.
    table.force_no_tty();
    if style.color {
        table.enforce_styling();
    }
    match style.width {
        Some(width) => {
            table.set_content_arrangement(ContentArrangement::Dynamic).set_width(width);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table.set_header(header.iter().map(|title| {
        let cell = Cell::new(title);
        if style.color {
            cell.add_attribute(Attribute::Bold)
        } else {
            cell
        }
    }));
    for index in 0..header.len() {
        let Some(column) = table.column_mut(index) else { continue };
        if right_aligned.contains(&index) {
            column.set_cell_alignment(CellAlignment::Right);
            column.set_constraint(ColumnConstraint::ContentWidth);
        } else if index != LEVEL_COLUMN {
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(MIN_TEXT_WIDTH)));
        } else {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    table
}

fn level_cell(level: SeverityLevel, style: Style) -> Cell {
    let cell = Cell::new(level.as_str());
    match (style.color, level) {
        (true, SeverityLevel::High) => cell.fg(Color::Red).add_attribute(Attribute::Bold),
        (true, SeverityLevel::Medium) => cell.fg(Color::Yellow),
        _ => cell,
    }
}

fn bold(text: &str, style: Style) -> String {
    if style.color {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn status_cell(status: Status, style: Style) -> Cell {
    let cell = Cell::new(status.as_str());
    match (style.color, status) {
        (true, Status::New | Status::Regressed) => cell.fg(Color::Red).add_attribute(Attribute::Bold),
        (true, Status::Improved | Status::Gone) => cell.fg(Color::Green),
        _ => cell,
    }
}

impl Exporter for TableExporter {
    fn render_diff(&self, diff: &Diff, style: Style) -> String {
        let mut out = format!("{}\n", bold(&diff_title(diff), style));
        if diff.rows.is_empty() {
            out.push_str("No group changed.\n");
        } else {
            let header: Vec<String> = ["status".to_owned(), diff.group_by.title()]
                .into_iter()
                .chain(DIFF_HEADER.iter().map(|h| h.to_string()))
                .collect();
            // Column 0 (status) is short: never wrapped, like a level column.
            let mut table = new_table(style, &header, &[2, 3, 4, 5, 6]);
            if let Some(column) = table.column_mut(0) {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
            for row in &diff.rows {
                table.add_row(
                    [status_cell(row.status, style), Cell::new(&row.key)]
                        .into_iter()
                        .chain(diff_cells(row).map(Cell::new))
                        .collect::<Vec<_>>(),
                );
            }
            out.push_str(&table.to_string());
            out.push('\n');
        }
        out.push('\n');
        for line in diff_summary_lines(diff) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn render(&self, report: &Report, style: Style) -> String {
        let mut out = String::new();
        render_loop_time(&mut out, report, style);
        render_stalls(&mut out, report, style);
        out.push_str(&bold("Blocking I/O", style));
        out.push_str(&format!(" by {}:\n", report.group_by.title()));
        if report.groups.is_empty() {
            out.push_str("No blocking I/O");
            out.push_str(if report.totals.groups > 0 { " at this severity.\n" } else { " recorded.\n" });
        } else {
            let header: Vec<String> = [
                "#",
                &report.group_by.title(),
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
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut table = new_table(style, &header, &[0, 2, 3, 4, 6, 7, 8, 9, 10, 11]);
            for row in &report.groups {
                table.add_row(
                    vec![
                        Cell::new(row.rank),
                        Cell::new(&row.key),
                        Cell::new(row.slices),
                        Cell::new(row.events),
                        Cell::new(row.severity_score),
                        level_cell(row.level, style),
                        Cell::new(row.exceeded),
                    ]
                    .into_iter()
                    .chain(elapsed_cells(row.elapsed_ms()).map(Cell::new))
                    .chain([Cell::new(top_events_text(row, EVENTS_SHOWN))])
                    .collect::<Vec<_>>(),
                );
            }
            out.push_str(&table.to_string());
            out.push('\n');
            if report.groups_not_shown > 0 {
                out.push_str(&format!("… and {} more (--top 0 shows all)\n", report.groups_not_shown));
            }
            out.push('\n');
            out.push_str(&bold("Example traces", style));
            out.push_str(" (innermost frame first):\n");
            for row in report.groups.iter().take(EXAMPLES_SHOWN) {
                out.push_str(&format!("{}. {}: {}\n", row.rank, row.key, row.example_event));
                for (depth, frame) in row.example_trace.split(TRACE_SEPARATOR).enumerate() {
                    let arrow = if depth == 0 { "   " } else { "<- " };
                    out.push_str(&format!("     {arrow}{frame}\n"));
                }
            }
        }
        if !report.cpu_groups.is_empty() {
            out.push('\n');
            out.push_str(&bold("CPU-blocking slices", style));
            out.push_str(&format!(" (over the threshold, no blocking I/O), by {}:\n", report.group_by.cpu_title()));
            let header: Vec<String> = [
                "#",
                &report.group_by.cpu_title(),
                "slices",
                "samples",
                "total ms",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut table = new_table(style, &header, &[0, 2, 3, 4, 5, 6, 7, 8]);
            for row in &report.cpu_groups {
                table.add_row(
                    vec![Cell::new(row.rank), Cell::new(&row.key), Cell::new(row.slices), Cell::new(row.samples)]
                        .into_iter()
                        .chain(elapsed_cells(row.elapsed_ms()).map(Cell::new))
                        .collect::<Vec<_>>(),
                );
            }
            out.push_str(&table.to_string());
            out.push('\n');
            if report.cpu_groups_not_shown > 0 {
                out.push_str(&format!("… and {} more (--top 0 shows all)\n", report.cpu_groups_not_shown));
            }
        }
        out.push('\n');
        for line in summary_lines(report) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// The Loop time table, its headline and the note on missing samples.
fn render_loop_time(out: &mut String, report: &Report, style: Style) {
    let view = &report.loop_time;
    out.push_str(&bold("Loop time", style));
    out.push_str(&format!(": {}\n", loop_time_headline(report)));
    if let Some(note) = samples_note(report) {
        out.push_str(&note);
        out.push('\n');
    }
    if let Some(note) = unexplained_note(report) {
        out.push_str(&note);
        out.push('\n');
    }
    if view.groups.is_empty() {
        out.push_str("No slice recorded.\n\n");
        return;
    }
    let header: Vec<String> =
        ["#", &report.group_by.title(), "busy ms", "share", "io ms", "cpu ms", "slices", "samples", "from"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut table = new_table(style, &header, &[0, 2, 3, 4, 5, 6, 7]);
    if let Some(column) = table.column_mut(8) {
        column.set_constraint(ColumnConstraint::ContentWidth);
    }
    for row in &view.groups {
        table.add_row(vec![
            Cell::new(row.rank),
            Cell::new(&row.key),
            Cell::new(fmt_ms(row.busy_ms)),
            Cell::new(fmt_share(row.share)),
            Cell::new(fmt_ms(row.io_ms)),
            Cell::new(fmt_ms(row.cpu_ms)),
            Cell::new(row.slices),
            Cell::new(row.samples),
            Cell::new(via_text(row)),
        ]);
    }
    out.push_str(&table.to_string());
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
    out.push_str(&bold("Stalls", style));
    out.push_str(&format!(": {}\n", stalls_headline(report)));
    if report.stalls.is_empty() {
        out.push('\n');
        return;
    }
    // Which trace and thread, when there is more than one of either.
    let place = report.traces.len() > 1 || report.stalls.iter().any(|row| row.thread != report.stalls[0].thread);
    let mut header = vec!["#", "start s", "duration ms", "slices", "most time in"];
    if place {
        header.insert(1, "trace, thread");
    }
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let right: &[usize] = if place { &[0, 2, 3, 4] } else { &[0, 1, 2, 3] };
    let mut table = new_table(style, &header, right);
    for row in &report.stalls {
        let mut cells = vec![
            Cell::new(row.rank),
            Cell::new(format!("{:.3}", row.start_s)),
            Cell::new(fmt_ms(row.duration_ms)),
            Cell::new(row.slices),
            Cell::new(stall_top_text(row)),
        ];
        if place {
            cells.insert(1, Cell::new(format!("{}, {}", row.trace, row.thread)));
        }
        table.add_row(cells);
    }
    out.push_str(&table.to_string());
    out.push('\n');
    if report.stalls_not_shown > 0 {
        out.push_str(&format!("… and {} more (--top 0 shows all)\n", report.stalls_not_shown));
    }
    out.push('\n');
}
