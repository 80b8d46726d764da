//! GitHub-flavoured Markdown: the Loop time table, the longest stalls, the
//! loop lag and the Tasks table, the ranking as a table, the CPU-blocking
//! ranking as another, and the totals as a list. Keys are code spans, so
//! that `<no stack>` or `<frozen ...>` show as text, not as HTML.

use super::{
    any_alike, any_task_timed, diff_cells, diff_summary_lines, diff_title, eager_tasks_note, elapsed_cells,
    guessed_stalls_note, lag_diff_text, loop_lag_text, loop_time_headline, more_tasks_text, no_task_timing_note,
    route_diff_cells, samples_note, stall_top_text, stalls_headline, summary_lines, task_cells, task_diff_cells,
    tasks_not_shown_text, top_events_text, unexplained_note, untimed_samples_note, via_text, wall_clock_native_note,
    Exporter, Style, DIFF_HEADER, NO_ROUTES, ROUTES_HEADLINE, ROUTE_DIFF_HEADER, ROUTE_DIFF_HEADLINE, TASKS_HEADLINE,
    TASK_DIFF_HEADER, TASK_DIFF_HEADLINE, TASK_ROWS_SHOWN,
};
use crate::diff::Diff;
use crate::report::Report;
use crate::units::{fmt_ms, fmt_share};

pub struct MarkdownExporter;

const EVENTS_SHOWN: usize = 3;

/// `text` as a code span inside a table cell.
fn code(text: &str) -> String {
    let text = text.replace('|', "\\|");
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn table_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

impl Exporter for MarkdownExporter {
    /// A title naming both sides, a table of the rows, and the summary as a
    /// list: fit for a pull-request comment.
    fn render_diff(&self, diff: &Diff, _style: Style) -> String {
        let mut out = format!("**aiocop diff**: {}\n\n", cell(&diff_title(diff)).replace('<', "&lt;"));
        if diff.rows.is_empty() {
            out.push_str("No group changed.\n");
        } else {
            let title = diff.group_by.title();
            out.push_str(&table_row(
                &["status".to_owned(), title]
                    .into_iter()
                    .chain(DIFF_HEADER.iter().map(|h| h.to_string()))
                    .collect::<Vec<_>>(),
            ));
            out.push_str("|:--|:--|--:|--:|--:|--:|--:|\n");
            for row in &diff.rows {
                let status = if row.status.is_worse() {
                    format!("**{}**", row.status.as_str())
                } else {
                    row.status.as_str().to_owned()
                };
                let cells: Vec<String> = [status, code(&row.key)].into_iter().chain(diff_cells(row)).collect();
                out.push_str(&table_row(&cells));
            }
        }
        render_route_diff(&mut out, diff);
        render_task_diff(&mut out, diff);
        out.push('\n');
        for line in diff_summary_lines(diff) {
            out.push_str(&format!("- {}\n", cell(&line).replace('<', "&lt;")));
        }
        out
    }

    fn render(&self, report: &Report, _style: Style) -> String {
        let mut out = String::new();
        render_routes(&mut out, report);
        render_loop_time(&mut out, report);
        render_stalls(&mut out, report);
        render_tasks(&mut out, report);
        out.push_str(&format!("**Blocking I/O** by {}:\n\n", report.group_by.title()));
        if report.groups.is_empty() {
            out.push_str("No blocking I/O");
            out.push_str(if report.totals.groups > 0 { " at this severity.\n" } else { " recorded.\n" });
        } else {
            let title = report.group_by.title();
            out.push_str(&format!(
                "| # | {title} | slices | events | score | level | over | total ms | p50 ms | p95 ms | p99 ms | max ms | top events |\n"
            ));
            out.push_str("|--:|:--|--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|:--|\n");
            for row in &report.groups {
                let mut cells = vec![
                    row.rank.to_string(),
                    code(&row.key),
                    row.slices.to_string(),
                    row.events.to_string(),
                    row.severity_score.to_string(),
                    row.severity_level.to_owned(),
                    row.exceeded.to_string(),
                ];
                cells.extend(elapsed_cells(row.elapsed_ms()));
                cells.push(cell(&top_events_text(row, EVENTS_SHOWN)));
                out.push_str(&table_row(&cells));
            }
            if report.groups_not_shown > 0 {
                out.push_str(&format!("\n… and {} more.\n", report.groups_not_shown));
            }
        }
        if !report.cpu_groups.is_empty() {
            let title = report.group_by.cpu_title();
            out.push_str(&format!("\n**CPU-blocking slices** (over the threshold, no blocking I/O), by {title}:\n\n"));
            out.push_str(&format!(
                "| # | {title} | slices | samples | total ms | p50 ms | p95 ms | p99 ms | max ms |\n"
            ));
            out.push_str("|--:|:--|--:|--:|--:|--:|--:|--:|--:|\n");
            for row in &report.cpu_groups {
                let mut cells =
                    vec![row.rank.to_string(), code(&row.key), row.slices.to_string(), row.samples.to_string()];
                cells.extend(elapsed_cells(row.elapsed_ms()));
                out.push_str(&table_row(&cells));
            }
            if report.cpu_groups_not_shown > 0 {
                out.push_str(&format!("\n… and {} more.\n", report.cpu_groups_not_shown));
            }
        }
        out.push('\n');
        for line in summary_lines(report) {
            // `<no samples>` would be an HTML tag.
            out.push_str(&format!("- {}\n", line.replace('<', "&lt;")));
        }
        out
    }
}

/// `text` outside a code span: `<no samples>` would be an HTML tag.
fn prose(text: &str) -> String {
    cell(text).replace('<', "&lt;")
}

/// `--by route`: the Routes table, as the terminal's.
fn render_routes(out: &mut String, report: &Report) {
    if !report.group_by.has_routes_table() {
        return;
    }
    out.push_str(&format!("**Routes**: {}\n\n", prose(ROUTES_HEADLINE)));
    if report.routes.is_empty() {
        out.push_str(&format!("{}\n\n", prose(NO_ROUTES)));
        return;
    }
    out.push_str("| # | route | requests | loop ms/req | p50 ms | p95 ms | share | events/req | score | worst |\n");
    out.push_str("|--:|:--|--:|--:|--:|--:|--:|--:|--:|:--|\n");
    for row in &report.routes {
        out.push_str(&table_row(&[
            row.rank.to_string(),
            code(&row.route),
            row.requests.to_string(),
            fmt_ms(row.loop_ms_per_request),
            fmt_ms(row.p50_ms),
            fmt_ms(row.p95_ms),
            fmt_share(row.busy_share),
            format!("{:.2}", row.events_per_request),
            row.severity_score.to_string(),
            row.worst.unwrap_or("-").to_owned(),
        ]));
    }
    out.push('\n');
}

/// `diff --by route`: every route of either side.
fn render_route_diff(out: &mut String, diff: &Diff) {
    if !diff.group_by.has_routes_table() {
        return;
    }
    out.push_str(&format!("\n**Routes**: {}\n\n", prose(ROUTE_DIFF_HEADLINE)));
    if diff.routes.is_empty() {
        out.push_str(&format!("{}\n", prose(NO_ROUTES)));
        return;
    }
    let header: Vec<String> = ["status", "route"].into_iter().chain(ROUTE_DIFF_HEADER).map(str::to_owned).collect();
    out.push_str(&table_row(&header));
    out.push_str("|:--|:--|--:|--:|--:|--:|\n");
    for row in &diff.routes {
        let status =
            if row.status.is_worse() { format!("**{}**", row.status.as_str()) } else { row.status.as_str().to_owned() };
        let cells: Vec<String> =
            [status, code(&row.route)].into_iter().chain(route_diff_cells(row).map(|c| prose(&c))).collect();
        out.push_str(&table_row(&cells));
    }
}

/// Loop lag and tasks of both sides.
fn render_task_diff(out: &mut String, diff: &Diff) {
    let tasks = &diff.tasks;
    if tasks.loop_lag.is_none() && tasks.rows.is_empty() && tasks.rows_not_shown == 0 {
        return;
    }
    out.push_str(&format!("\n**Tasks and loop lag**: {}\n\n", prose(TASK_DIFF_HEADLINE)));
    if let Some(lag) = &tasks.loop_lag {
        out.push_str(&format!("Loop lag: {}\n\n", prose(&lag_diff_text(lag))));
    }
    if !tasks.rows.is_empty() {
        let header: Vec<String> = ["status", tasks.by].into_iter().chain(TASK_DIFF_HEADER).map(str::to_owned).collect();
        out.push_str(&table_row(&header));
        out.push_str("|:--|:--|--:|--:|--:|--:|\n");
        for row in &tasks.rows {
            let status = match row.status.is_worse() {
                true => format!("**{}**", row.status.as_str()),
                false => row.status.as_str().to_owned(),
            };
            let cells: Vec<String> =
                [status, code(&row.key)].into_iter().chain(task_diff_cells(row).map(|c| prose(&c))).collect();
            out.push_str(&table_row(&cells));
        }
    }
    if let Some(more) = tasks_not_shown_text(diff) {
        out.push_str(&format!("\n{more}\n"));
    }
}

fn render_loop_time(out: &mut String, report: &Report) {
    let view = &report.loop_time;
    out.push_str(&format!("**Loop time**: {}\n\n", prose(&loop_time_headline(report))));
    for note in
        [samples_note(report), untimed_samples_note(report), wall_clock_native_note(report)].into_iter().flatten()
    {
        out.push_str(&format!("{}\n\n", prose(&note)));
    }
    if let Some(note) = unexplained_note(report) {
        out.push_str(&format!("{}\n\n", prose(&note)));
    }
    if view.groups.is_empty() {
        out.push_str("No slice recorded.\n\n");
        return;
    }
    let title = report.group_by.title();
    out.push_str(&format!("| # | {title} | busy ms | share | io ms | cpu ms | slices | samples | from |\n"));
    out.push_str("|--:|:--|--:|--:|--:|--:|--:|--:|:--|\n");
    for row in &view.groups {
        out.push_str(&table_row(&[
            row.rank.to_string(),
            code(&row.key),
            fmt_ms(row.busy_ms),
            fmt_share(row.share),
            fmt_ms(row.io_ms),
            fmt_ms(row.cpu_ms),
            row.slices.to_string(),
            row.samples.to_string(),
            via_text(row),
        ]));
    }
    if view.groups_not_shown > 0 {
        out.push_str(&format!(
            "\n… and {} more, {} ms.\n",
            view.groups_not_shown,
            fmt_ms(view.groups_not_shown_busy_ms)
        ));
    }
    out.push('\n');
}

fn render_stalls(out: &mut String, report: &Report) {
    out.push_str(&format!("**Stalls**: {}\n\n", prose(&stalls_headline(report))));
    if let Some(note) = guessed_stalls_note(report) {
        out.push_str(&format!("{}\n\n", prose(&note)));
    }
    if report.stalls.is_empty() {
        return;
    }
    let alike = any_alike(report);
    if alike {
        out.push_str("| # | trace, thread | start s | duration ms | slices | alike | alike ms | most time in |\n");
        out.push_str("|--:|:--|--:|--:|--:|--:|--:|:--|\n");
    } else {
        out.push_str("| # | trace, thread | start s | duration ms | slices | most time in |\n");
        out.push_str("|--:|:--|--:|--:|--:|:--|\n");
    }
    for row in &report.stalls {
        let mut cells = vec![
            row.rank.to_string(),
            code(&format!("{}, {}", row.trace, row.thread)),
            format!("{:.3}", row.start_s),
            fmt_ms(row.duration_ms),
            row.slices.to_string(),
            prose(&stall_top_text(row)),
        ];
        if alike {
            cells.insert(5, row.alike.to_string());
            cells.insert(6, fmt_ms(row.alike_ms));
        }
        out.push_str(&table_row(&cells));
    }
    if report.stalls_not_shown > 0 {
        out.push_str(&format!("\n… and {} more.\n", report.stalls_not_shown));
    }
    out.push('\n');
}

/// The loop lag and the Tasks table, as the terminal's (every column).
fn render_tasks(out: &mut String, report: &Report) {
    let tasks = &report.tasks;
    if let Some(note) = no_task_timing_note(report) {
        out.push_str(&format!("{}\n\n", prose(&note)));
    }
    if let Some(lag) = &tasks.loop_lag {
        out.push_str(&format!("**Loop lag**: {}\n\n", prose(&loop_lag_text(lag))));
    }
    if !any_task_timed(report) {
        return;
    }
    out.push_str(&format!("**Tasks** by {}: {}\n\n", tasks.by, prose(TASKS_HEADLINE)));
    out.push_str(&format!(
        "| {} | tasks | timed | wall p50 | wall p95 | loop ms | ready p50 | ready p95 | waiting ms | cancelled | raised |\n",
        tasks.by
    ));
    out.push_str("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for row in tasks.rows.iter().take(TASK_ROWS_SHOWN) {
        let cells: Vec<String> = std::iter::once(code(&row.key)).chain(task_cells(row)).collect();
        out.push_str(&table_row(&cells));
    }
    if let Some(more) = more_tasks_text(report) {
        out.push_str(&format!("\n{more}\n"));
    }
    if let Some(eager) = eager_tasks_note(report) {
        out.push_str(&format!("\n{}\n", prose(&eager)));
    }
    out.push('\n');
}
