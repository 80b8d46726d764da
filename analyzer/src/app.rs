//! Runs a parsed command line: the CLI layer. The command line becomes
//! library options here and nowhere else (`read_options` for reading);
//! then it reads ([`crate::read`]), makes the report, diff or view, and
//! writes it out.
//!
//! Every command that reads traces reads them within one memory budget
//! (`--max-memory`, [`aiocop_trace::budget`]) for all of its files, threads
//! and sides: a trace that needs more ends the run with one line naming the
//! file, the chunk and the limit. Beyond the budget, the process holds its
//! code and what the budget does not count: each thread's reused buffers
//! (up to 4 MiB) and zstd context, and the analysis built from the slices.

use crate::aggregate::fold_chunks;
use crate::cli::{
    AllowlistArgs, ColorChoice, Command, DiffArgs, FilterArgs, InfoArgs, InfoFormat, MemoryArgs, ReportArgs,
};
use crate::diff::{self, Diff, DiffOptions, ScoreWith};
use crate::error::AnalyzeError;
use crate::export::{self, ReportFormat, Style};
use crate::group::IgnoreSet;
use crate::info::{InfoCounts, TraceInfo};
use crate::loop_time::DEFAULT_LONG_MS;
use crate::read::{
    all_or_errors, check_readable, chunk_bytes, newer_minor_warning, progress_bar, read_side, seconds_to_ns,
    trusted_footer, warn, ReadOptions, Side,
};
use crate::report::{self, OptionsView, RankOptions, Report};
use crate::stalls::DEFAULT_STALL_GAP_NS;
use aiocop_trace::{MemoryBudget, TraceFile};
use globset::GlobBuilder;
use rayon::prelude::*;
use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// How a run that wrote its output ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `diff --fail-on` found what it fails on (exit code 1).
    GateFailed,
}

pub fn run(cli: crate::cli::Cli) -> Result<Outcome, AnalyzeError> {
    match cli.command {
        Some(Command::Report(args)) => run_report(args).map(|()| Outcome::Done),
        Some(Command::Diff(args)) => run_diff(args),
        Some(Command::Info(args)) => run_info(args).map(|()| Outcome::Done),
        Some(Command::Timeline(args)) => run_timeline(args).map(|()| Outcome::Done),
        Some(Command::Flamegraph(args)) => run_flamegraph(args).map(|()| Outcome::Done),
        Some(Command::Allowlist(args)) => run_allowlist(args).map(|()| Outcome::Done),
        Some(Command::Export(args)) => run_export(args).map(|()| Outcome::Done),
        None => run_report(cli.report).map(|()| Outcome::Done),
    }
}

fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, AnalyzeError> {
    // A pool of our own, not rayon's global one: the Python extension may
    // run the analyzer more than once in a process that uses rayon itself.
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("aiocop-analyze-{i}"))
        .build()
        .map_err(|e| AnalyzeError::Threads { threads, problem: e.to_string() })
}

pub(crate) struct Destination {
    path: Option<PathBuf>,
}

impl Destination {
    fn new(output: Option<&Path>) -> Destination {
        Destination { path: output.filter(|p| p.as_os_str() != "-").map(Path::to_path_buf) }
    }

    fn is_stdout(&self) -> bool {
        self.path.is_none()
    }

    /// Fails (before anything is read) when the file's directory does not exist.
    fn check(&self) -> Result<(), AnalyzeError> {
        let Some(path) = &self.path else { return Ok(()) };
        match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => Err(AnalyzeError::Output {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("no directory '{}'", dir.display())),
            }),
            _ => Ok(()),
        }
    }

    fn write(&self, text: &str) -> Result<(), AnalyzeError> {
        match &self.path {
            None => {
                let mut stdout = std::io::stdout().lock();
                match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(AnalyzeError::BrokenPipe),
                    Err(source) => Err(AnalyzeError::Output { path: "<stdout>".to_owned(), source }),
                }
            }
            Some(path) => std::fs::write(path, text)
                .map_err(|source| AnalyzeError::Output { path: path.display().to_string(), source }),
        }
    }
}

/// Whether to colour: `always`, `never`, or with `auto` only on a terminal
/// with `NO_COLOR` unset (or empty) and `TERM` not `dumb`.
pub fn color_enabled(choice: ColorChoice, terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && no_color.is_none_or(OsStr::is_empty) && term.is_none_or(|t| t != "dumb"),
    }
}

pub(crate) fn style_for(output: &crate::cli::OutputArgs, destination: &Destination) -> Style {
    let terminal = destination.is_stdout() && std::io::stdout().is_terminal();
    let color = color_enabled(
        output.color,
        terminal,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    );
    // The width of the terminal written to (stdout's), not of /dev/tty.
    let width = if terminal { console::Term::stdout().size_checked().map(|(_rows, columns)| columns) } else { None };
    Style { color, width: width.filter(|_| output.format == ReportFormat::Table), wide: output.wide }
}

fn label_matcher(pattern: &str) -> Result<globset::GlobMatcher, AnalyzeError> {
    let glob = GlobBuilder::new(pattern).literal_separator(false).build().map_err(|e| AnalyzeError::BadPattern {
        what: "--label",
        pattern: pattern.to_owned(),
        problem: e.kind().to_string(),
    })?;
    Ok(glob.compile_matcher())
}

/// The filters and `--max-memory` turned into the options of reading,
/// checked once: shared by every file of a report and both sides of a diff.
/// The options only one command sets (`--long-ms`, the flame graph, ...)
/// are set by that command after this.
pub(crate) fn read_options(filters: &FilterArgs, memory: MemoryArgs) -> Result<ReadOptions, AnalyzeError> {
    if let (Some(since), Some(until)) = (filters.since, filters.until) {
        if since >= until {
            return Err(AnalyzeError::Usage(format!("--since {since} is not before --until {until}")));
        }
    }
    let ignore = IgnoreSet::new(&filters.ignore).map_err(|(pattern, e)| AnalyzeError::BadPattern {
        what: "--ignore",
        pattern,
        problem: e.kind().to_string(),
    })?;
    let label = match &filters.label {
        Some(pattern) => Some((pattern.clone(), label_matcher(pattern)?)),
        None => None,
    };
    Ok(ReadOptions {
        since_ns: filters.since.map_or(0, seconds_to_ns),
        until_ns: filters.until.map_or(u64::MAX, seconds_to_ns),
        threshold_ns: filters.threshold_ms.map(|ms| seconds_to_ns(ms / 1000.0)),
        by: filters.by.clone(),
        app_roots: filters.app_roots.clone(),
        exceeded_only: filters.exceeded_only,
        ignore,
        label,
        budget: MemoryBudget::new(memory.max_memory),
        weights: None,
        by_identity: false,
        long_ns: seconds_to_ns(DEFAULT_LONG_MS / 1000.0),
        stall_gap_ns: DEFAULT_STALL_GAP_NS,
        flame: None,
        quiet: false,
        busy_series: false,
        routes: filters.by.has_routes_table(),
    })
}

/// `--long-ms` and `--stall-gap-us`, checked: a usage error (one line) unless positive.
fn check_report_args(args: &ReportArgs) -> Result<(), AnalyzeError> {
    if !(args.long_ms.is_finite() && args.long_ms > 0.0) {
        return Err(AnalyzeError::Usage(format!("--long-ms {} is not a number of milliseconds above 0", args.long_ms)));
    }
    if !(args.stall_gap_us.is_finite() && args.stall_gap_us >= 0.0) {
        return Err(AnalyzeError::Usage(format!(
            "--stall-gap-us {} is not a number of microseconds of at least 0",
            args.stall_gap_us
        )));
    }
    Ok(())
}

pub fn run_report(args: ReportArgs) -> Result<(), AnalyzeError> {
    check_report_args(&args)?;
    let mut options = read_options(&args.filters, args.output.memory)?;
    options.long_ns = seconds_to_ns(args.long_ms / 1000.0).max(1);
    options.stall_gap_ns = seconds_to_ns(args.stall_gap_us / 1_000_000.0);
    options.quiet = args.output.quiet;
    options.busy_series = args.output.format == ReportFormat::Html;
    if args.output.format == ReportFormat::Html {
        options.flame = Some(crate::flamegraph::FrameNames::Shown);
    }
    let destination = Destination::new(args.output.output.as_deref());
    destination.check()?;
    let paths = crate::input::expand(&args.inputs)?;
    let pool = thread_pool(args.output.threads)?;

    let (mut report, flame) = pool.install(|| -> Result<_, AnalyzeError> {
        let mut side = read_side(&paths, &options)?;
        let flame = std::mem::take(&mut side.flame);
        Ok((make_report(&args, side), flame))
    })?;
    let style = style_for(&args.output, &destination);
    if args.output.format == ReportFormat::Html && flame.total_ns() > 0 {
        report.pictures.flame_graph_svg = report_flame_graph(&flame);
    }
    if style.width.is_some() {
        export::fit::relative_report(&mut report, &export::fit::roots(&args.filters.app_roots));
    }
    let text = export::exporter(args.output.format).render(&report, style);
    destination.write(&text)
}

/// The HTML report's flame graph: the `flamegraph` command's picture of the
/// same read.
fn report_flame_graph(flame: &crate::flamegraph::Folded) -> Option<String> {
    let subtitle = format!("{:.1} ms busy", flame.total_ns() as f64 / 1e6);
    let text =
        crate::flamegraph::SvgText { title: "The loop's busy time by stack".to_owned(), subtitle: Some(subtitle) };
    let svg = crate::flamegraph::svg(flame, &text).ok()?;
    String::from_utf8(svg).ok()
}

/// The HTML diff's flame graph: the new side's stacks coloured by how their
/// time changed from the base's (`flamegraph --diff`'s picture).
fn diff_flame_graph(
    base: &crate::flamegraph::Folded,
    new: &crate::flamegraph::Folded,
    test: crate::flamegraph::ChangeTest,
) -> Option<String> {
    let subtitle = "the new side's stacks, against the base's scaled to the same total".to_owned();
    let text = crate::flamegraph::SvgText {
        title: "Busy time by stack, against the base".to_owned(),
        subtitle: Some(subtitle),
    };
    let svg = crate::flamegraph::differential_svg(base, new, &text, test).ok()?;
    String::from_utf8(svg).ok()
}

/// Reads both sides, scored with one side's event table, and writes their
/// comparison; prints one line per reason the gate fails on stderr.
pub fn run_diff(mut args: DiffArgs) -> Result<Outcome, AnalyzeError> {
    if args.skip_first_s > args.filters.since.unwrap_or(0.0) {
        args.filters.since = Some(args.skip_first_s);
    }
    if !matches!(args.csv_table, report::CsvTable::Groups | report::CsvTable::Routes | report::CsvTable::Tasks) {
        return Err(AnalyzeError::Usage("--csv-table: a diff writes groups, routes or tasks".to_owned()));
    }
    let destination = Destination::new(args.output.output.as_deref());
    let base_paths = expand_side(&args.base, &args.more_base)?;
    let new_paths = expand_side(&args.new, &args.more_new)?;
    // The first trace of each side gives its event table (read from its
    // header only) before either side is scored.
    let budget = MemoryBudget::new(args.output.memory.max_memory);
    let base_table = TraceFile::open_within(&base_paths[0], budget.clone())?.header().event_table.clone();
    let new_table = TraceFile::open_within(&new_paths[0], budget)?.header().event_table.clone();
    let scoring_table = match args.rescore {
        ScoreWith::New => &new_table,
        ScoreWith::Base => &base_table,
    };
    destination.check()?;
    let mut options = read_options(&args.filters, args.output.memory)?;
    options.weights = Some(diff::weights_of(scoring_table));
    options.by_identity = true;
    options.quiet = args.output.quiet;
    options.routes |= args.fail_on.iter().any(|fail_on| fail_on.gates_routes());
    if args.output.format == ReportFormat::Html {
        options.flame = Some(crate::flamegraph::FrameNames::Identity);
        options.busy_series = true;
    }
    let pool = thread_pool(args.output.threads)?;
    let (base, new) = pool.install(|| -> Result<(Side, Side), AnalyzeError> {
        Ok((read_side(&base_paths, &options)?, read_side(&new_paths, &options)?))
    })?;

    for (which, side, paths) in [("base", &base, &base_paths), ("new", &new, &new_paths)] {
        if side.analysis.totals.slices == 0 {
            return Err(AnalyzeError::Usage(format!(
                "the {which} side ('{}'{}) has no slices to compare{}",
                paths[0].display(),
                if paths.len() > 1 { format!(" and {} more", paths.len() - 1) } else { String::new() },
                if args.filters.since.is_some() || args.filters.until.is_some() || args.filters.label.is_some() {
                    " in the window and labels asked for (--since, --skip-first-s, --until, --label)"
                } else {
                    ""
                }
            )));
        }
    }
    let mut diff = make_diff(&args, &base, &new, diff::table_changes(&base_table, &new_table));
    if args.output.format == ReportFormat::Html {
        if new.flame.total_ns() > 0 {
            let test = crate::flamegraph::ChangeTest { confidence: args.confidence, min_increase: args.min_increase };
            diff.flame_graph_svg = diff_flame_graph(&base.flame, &new.flame, test);
        }
        diff.new_side = Some(Box::new(make_report(&side_report_args(&args), new)));
    }
    if let Some(warning) = &diff.warning {
        warn(warning);
    }
    let style = style_for(&args.output, &destination);
    if style.width.is_some() {
        export::fit::relative_diff(&mut diff, &export::fit::roots(&args.filters.app_roots));
    }
    let text = export::exporter(args.output.format).render_diff(&diff, style);
    destination.write(&text)?;
    for reason in &diff.gate.reasons {
        let _ = writeln!(std::io::stderr().lock(), "aiocop-analyze: gate: {reason}");
    }
    Ok(if diff.gate.failed { Outcome::GateFailed } else { Outcome::Done })
}

/// What `report` would be asked for one side of a diff, with the diff's
/// filters: the HTML diff page shows the new side's loop time and stalls.
fn side_report_args(args: &DiffArgs) -> ReportArgs {
    ReportArgs {
        inputs: Vec::new(),
        filters: args.filters.clone(),
        min_severity: None,
        top: Some(10),
        sort: report::SortColumn::Score,
        long_ms: DEFAULT_LONG_MS,
        stall_gap_us: DEFAULT_STALL_GAP_NS as f64 / 1000.0,
        csv_table: report::CsvTable::default(),
        output: args.output.clone(),
    }
}

/// The paths of one side of a diff: its input, then its `--base`/`--new` ones.
fn expand_side(first: &Path, more: &[PathBuf]) -> Result<Vec<PathBuf>, AnalyzeError> {
    let inputs: Vec<PathBuf> = std::iter::once(first.to_path_buf()).chain(more.iter().cloned()).collect();
    crate::input::expand(&inputs)
}

fn make_diff(args: &DiffArgs, base: &Side, new: &Side, event_table_changes: Vec<diff::WeightChange>) -> Diff {
    let diff_options = DiffOptions {
        min_increase: args.min_increase,
        min_p95_change_ms: args.min_p95_change_ms,
        min_count: args.min_count,
        fail_on: args.fail_on.clone(),
        all: args.all,
        confidence: args.confidence,
        min_slices_p95: args.min_slices_p95,
        min_route_change_ms: args.min_route_change_ms,
        gate_one_time: args.gate_one_time,
        frame_keys: args.filters.by.names_code(),
    };
    let (mut rows, rise_tests, fall_tests) = diff::compare(base, new, &diff_options);
    // Every route of either side, unchanged ones included: a short table.
    let routes = crate::route_diff::compare_routes(&base.routes, &new.routes, &diff_options);
    let mut tasks =
        crate::task_diff::compare_tasks(&base.tasks, &new.tasks, args.filters.by.has_routes_table(), &diff_options);
    if !diff_options.all {
        let before = tasks.rows.len();
        tasks.rows.retain(|row| row.status != diff::Status::Unchanged);
        tasks.rows_not_shown = before - tasks.rows.len();
    }
    let counts = diff::count_statuses(&rows);
    let mut reasons = diff::gate(&rows, &diff_options);
    let (route_reasons, routes_judged) = crate::route_diff::gate(&routes, &diff_options);
    reasons.extend(route_reasons);
    let warning =
        diff::nothing_in_common(&rows).or_else(|| crate::route_diff::nothing_to_gate(routes_judged, &diff_options));
    let gate = diff::Gate {
        fail_on: args.fail_on.iter().map(|f| f.as_str()).collect(),
        min_count: args.min_count,
        confidence: args.confidence,
        min_increase_pct: diff::round_pct(args.min_increase),
        min_p95_change_ms: args.min_p95_change_ms,
        min_slices_p95: args.min_slices_p95,
        skip_first_s: args.skip_first_s,
        gate_one_time: args.gate_one_time,
        rise_tests,
        fall_tests,
        failed: !reasons.is_empty(),
        reasons,
        routes_judged,
    };
    let shown_before = rows.len();
    if !diff_options.all {
        rows.retain(|row| row.status != diff::Status::Unchanged);
    }
    let side_view = |side: &Side| diff::SideView {
        labels: diff::labels(&side.facts),
        totals: side.totals(None),
        traces: side.facts.clone(),
    };
    let filters = &args.filters;
    Diff {
        schema_version: diff::DIFF_SCHEMA_VERSION,
        schema_minor: diff::DIFF_SCHEMA_MINOR,
        by: filters.by.to_string(),
        routes,
        tasks,
        base: side_view(base),
        new: side_view(new),
        scored_with: args.rescore.as_str(),
        event_table_changes,
        counts,
        rows_not_shown: shown_before - rows.len(),
        rows,
        warning,
        gate,
        flame_graph_svg: None,
        new_side: None,
        options: diff::DiffOptionsView {
            min_increase_pct: diff::round_pct(args.min_increase),
            min_p95_change_ms: args.min_p95_change_ms,
            all: args.all,
            threshold_ms: filters.threshold_ms,
            since_s: filters.since,
            until_s: filters.until,
            exceeded_only: filters.exceeded_only,
            ignore: filters.ignore.clone(),
            app_roots: filters.app_roots.clone(),
        },
        group_by: filters.by.clone(),
        csv_table: args.csv_table,
    }
}

fn default_top(args: &ReportArgs) -> usize {
    args.top.unwrap_or(match args.output.format {
        ReportFormat::Table | ReportFormat::Markdown => 20,
        ReportFormat::Html => 50,
        ReportFormat::Json | ReportFormat::Csv => 0,
    })
}

/// The ranked report of what was read.
fn make_report(args: &ReportArgs, mut side: Side) -> Report {
    let filters = &args.filters;
    let min_severity = args.min_severity.map(|m| m.level());
    let totals = side.totals(min_severity);
    let top = default_top(args);
    let rank = RankOptions { sort: args.sort, top, min_severity };
    let loop_time = report::loop_time(&side.analysis, top, args.long_ms);
    let routes = crate::routes::route_rows(std::mem::take(&mut side.routes), side.analysis.loop_totals.busy_ns);
    let busy_share = busy_share_by_trace(&mut side);
    let (stalls, stalls_not_shown) = report::stalls(&side.analysis.stalls, top, &side.paths);
    let (groups, groups_not_shown, cpu_groups, cpu_groups_not_shown) = report::rank(side.analysis, rank);
    Report {
        schema_version: report::SCHEMA_VERSION,
        schema_minor: report::SCHEMA_MINOR,
        by: filters.by.to_string(),
        loop_time,
        routes,
        tasks: report::TasksView::of(&side.tasks, filters.by.has_routes_table()),
        stalls,
        stalls_not_shown,
        groups,
        groups_not_shown,
        cpu_groups,
        cpu_groups_not_shown,
        totals,
        traces: side.facts,
        options: OptionsView {
            threshold_ms: filters.threshold_ms,
            since_s: filters.since,
            until_s: filters.until,
            exceeded_only: filters.exceeded_only,
            min_severity: min_severity.map(|l| l.as_str()),
            ignore: filters.ignore.clone(),
            label: filters.label.clone(),
            app_roots: filters.app_roots.clone(),
            sort: args.sort.name(),
            top: args.top,
            long_ms: args.long_ms,
        },
        group_by: filters.by.clone(),
        csv_table: args.csv_table,
        pictures: report::Pictures {
            key_roots: match args.output.format {
                ReportFormat::Html => export::fit::roots(&filters.app_roots),
                _ => Vec::new(),
            },
            ..busy_share
        },
    }
}

pub fn run_allowlist(args: AllowlistArgs) -> Result<(), AnalyzeError> {
    let destination = Destination::new(args.output.as_deref());
    destination.check()?;
    let paths = crate::input::expand(&args.inputs)?;
    let seen = crate::allowlist::seen_in(&paths, &args.app_roots, &warn)?;
    destination.write(&crate::allowlist::render(&seen))
}

/// The busy share over time of each trace of `side`, in input order, each
/// named by its label, path, pid and role.
fn busy_share_by_trace(side: &mut Side) -> report::Pictures {
    let mut series = std::mem::take(&mut side.analysis.busy_series_ns);
    series.sort_by_key(|(file, _)| *file);
    let (shares, interval_s) = report::busy_share(&series.iter().map(|(_, s)| s.as_slice()).collect::<Vec<_>>());
    let name = |file: usize| {
        let path = side.paths.get(file).map_or("", String::as_str);
        match side.facts.iter().find(|f| f.path == path) {
            Some(facts) => report::trace_name(facts),
            None => path.to_owned(),
        }
    };
    let busy_share =
        series.iter().zip(shares).map(|((file, _), shares)| report::BusyShare { trace: name(*file), shares }).collect();
    report::Pictures { busy_share, interval_s, flame_graph_svg: None, key_roots: Vec::new() }
}

pub fn run_info(args: InfoArgs) -> Result<(), AnalyzeError> {
    let destination = Destination::new(args.output.as_deref());
    destination.check()?;
    let paths = crate::input::expand(&args.inputs)?;
    let pool = thread_pool(args.threads)?;
    let budget = MemoryBudget::new(args.memory.max_memory);
    let infos = pool.install(|| -> Result<Vec<TraceInfo>, AnalyzeError> {
        let progress = progress_bar(&paths, args.quiet);
        let read_file = |path: &PathBuf| -> Result<(TraceInfo, Vec<String>), AnalyzeError> {
            let trace = TraceFile::open_within(path, budget.clone())?;
            let mut counts = fold_chunks(
                trace.chunk_count(),
                InfoCounts::default,
                |counts, index| {
                    counts.add_from(&trace, index);
                    progress.inc(chunk_bytes(&trace, index));
                },
                InfoCounts::merge,
            );
            if let Some(refused) = counts.over_memory_limit.take() {
                return Err(refused.into());
            }
            let mut warnings: Vec<String> = newer_minor_warning(&trace).into_iter().collect();
            let slices_read = (counts.unreadable == 0).then_some(counts.slices);
            let footer = trusted_footer(&trace, slices_read);
            warnings.extend(footer.warning);
            let first_error = counts.first_error.take().map(|(_, e)| e.to_string());
            warnings.extend(check_readable(&trace, counts.unreadable, first_error));
            Ok((TraceInfo::new(&trace, footer.footer.as_ref(), &counts), warnings))
        };
        let results: Vec<_> = paths.par_iter().map(read_file).collect();
        progress.finish_and_clear();
        let infos = all_or_errors(results, |(_, warnings): &(TraceInfo, Vec<String>)| warnings.as_slice())?;
        Ok(infos.into_iter().map(|(info, _)| info).collect())
    })?;
    let text = match args.format {
        InfoFormat::Text => infos.iter().map(TraceInfo::text).collect::<Vec<_>>().join("\n"),
        InfoFormat::Json => {
            #[derive(serde::Serialize)]
            struct InfoJson<'a> {
                traces: &'a [TraceInfo],
            }
            let mut text = serde_json::to_string_pretty(&InfoJson { traces: &infos })
                .expect("trace info serializes: its keys are strings");
            text.push('\n');
            text
        }
    };
    destination.write(&text)
}

/// `timeline`: see [`crate::timeline`]. The output is created before any
/// trace is read (a missing directory fails at once), then written as the
/// traces are read.
pub fn run_timeline(args: crate::cli::TimelineArgs) -> Result<(), AnalyzeError> {
    use crate::timeline::{write_traces, JsonSink, TimelineOptions};
    let read = read_options(&args.filters, args.memory)?;
    let options = TimelineOptions {
        tracks: args.tracks,
        since_ns: read.since_ns,
        until_ns: read.until_ns,
        min_ns: seconds_to_ns(args.min_ms / 1000.0),
        threshold_ns: read.threshold_ns,
        stall_gap_ns: DEFAULT_STALL_GAP_NS,
        ignore: read.ignore.as_ref(),
        window: 4,
    };
    let paths = crate::input::expand(&args.inputs)?;
    let pool = thread_pool(args.threads)?;
    let destination = Destination::new(args.output.as_deref());
    let write = |out: &mut (dyn Write + Send), name: &str| {
        let mut sink = JsonSink::new(out, name);
        let outcomes = pool.install(|| {
            write_traces(&paths, read.label.as_ref().map(|(_, matcher)| matcher), &read.budget, &options, &mut sink)
        })?;
        sink.finish()?;
        Ok::<_, AnalyzeError>(outcomes)
    };
    let outcomes = match &destination.path {
        None => write(&mut std::io::BufWriter::with_capacity(1 << 20, std::io::stdout()), "<stdout>")?,
        Some(path) => {
            let name = path.display().to_string();
            let failed = |source| AnalyzeError::Output { path: name.clone(), source };
            // Only a file this run created is removed on failure: never one
            // that was there (a user's file, or /dev/null).
            let (file, created) = match std::fs::File::create_new(path) {
                Ok(file) => (file, true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    (std::fs::File::create(path).map_err(failed)?, false)
                }
                Err(e) => return Err(failed(e)),
            };
            let file = std::io::BufWriter::with_capacity(1 << 20, file);
            let written = if path.extension().is_some_and(|e| e == "gz") {
                let mut gzip = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
                write(&mut gzip, &name).and_then(|outcomes| {
                    gzip.finish().and_then(|mut file| file.flush()).map_err(failed).map(|()| outcomes)
                })
            } else {
                write(&mut { file }, &name)
            };
            // Not a timeline cut short at an unusable trace: no file at all.
            if written.is_err() && created {
                let _ = std::fs::remove_file(path);
            }
            written?
        }
    };
    let (mut slices, mut short) = (0, 0);
    for outcome in &outcomes {
        outcome.warnings.iter().for_each(|w| warn(w));
        slices += outcome.counts.slices;
        short += outcome.counts.short_slices;
    }
    if args.min_ms > 0.0 {
        let _ = writeln!(
            std::io::stderr().lock(),
            "aiocop-analyze: note: --min-ms {} left out {short} of {slices} slices (shorter than {} ms)",
            args.min_ms,
            args.min_ms
        );
    }
    Ok(())
}

/// `flamegraph`: the traces read as a report reads them, with
/// [`ReadOptions::flame`], folded by [`crate::flamegraph`].
pub fn run_flamegraph(args: crate::cli::FlamegraphArgs) -> Result<(), AnalyzeError> {
    use crate::cli::FlameFormat;
    use crate::flamegraph::{FrameNames, SvgText};
    let mut options = read_options(&args.filters, args.memory)?;
    let names = if args.diff.is_empty() { FrameNames::Shown } else { FrameNames::Identity };
    options.flame = Some(names);
    let destination = Destination::new(args.output.as_deref());
    let paths = crate::input::expand(&args.inputs)?;
    let base_paths = if args.diff.is_empty() { Vec::new() } else { crate::input::expand(&args.diff)? };
    let pool = thread_pool(args.threads)?;
    let (side, base) = pool.install(|| -> Result<_, AnalyzeError> {
        let side = read_side(&paths, &options)?;
        let base = if base_paths.is_empty() { None } else { Some(read_side(&base_paths, &options)?) };
        Ok((side, base))
    })?;
    let what = |side: &Side| {
        let labels = report::distinct(side.facts.iter().filter_map(|f| f.label.as_deref()));
        format!(
            "{}{}, {:.1} ms busy",
            crate::units::count(side.facts.len() as u64, "trace"),
            if labels.is_empty() { String::new() } else { format!(" ({})", labels.join(", ")) },
            side.flame.total_ns() as f64 / 1e6
        )
    };
    let title = |default: &str| args.title.clone().unwrap_or_else(|| default.to_owned());
    let failed = |e: std::io::Error| AnalyzeError::Output { path: "<svg>".to_owned(), source: e };
    let text = match (&base, args.format) {
        (None, FlameFormat::Folded) => side.flame.text(),
        (Some(base), FlameFormat::Folded) => {
            crate::flamegraph::differential_text(&base.flame, &side.flame).map_err(failed)?
        }
        (None, FlameFormat::Svg) => {
            let text = SvgText { title: title("aiocop: the loop's busy time by stack"), subtitle: Some(what(&side)) };
            String::from_utf8_lossy(&crate::flamegraph::svg(&side.flame, &text).map_err(failed)?).into_owned()
        }
        (Some(base), FlameFormat::Svg) => {
            let subtitle = format!("{} against base {} (scaled to the same total)", what(&side), what(base));
            let text =
                SvgText { title: title("aiocop: busy time by stack, against the base"), subtitle: Some(subtitle) };
            let test = crate::flamegraph::ChangeTest { confidence: args.confidence, min_increase: args.min_increase };
            let svg = crate::flamegraph::differential_svg(&base.flame, &side.flame, &text, test).map_err(failed)?;
            String::from_utf8_lossy(&svg).into_owned()
        }
    };
    destination.write(&text)
}

/// `export`: see [`crate::tables`]. The output directory is checked (and
/// created) before any trace is read; each trace's warnings are printed in
/// input order, then one summary line.
pub fn run_export(args: crate::cli::ExportArgs) -> Result<(), AnalyzeError> {
    use crate::tables::{export_traces, prepare_output, ExportOptions};
    let crate::cli::ExportFormat::Parquet = args.format;
    let paths = crate::input::expand(&args.inputs)?;
    let options = ExportOptions {
        output: args.output.clone(),
        overwrite: args.overwrite,
        budget: MemoryBudget::new(args.memory.max_memory),
    };
    prepare_output(&options)?;
    let pool = thread_pool(args.threads)?;
    let started = std::time::Instant::now();
    let results = pool.install(|| export_traces(&paths, &options));
    let elapsed_s = started.elapsed().as_secs_f64();
    let exports = all_or_errors(results, |export| export.warnings.as_slice())?;
    let (mut slices, mut events, mut samples, mut written, mut read_bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for export in &exports {
        slices += export.read.slices;
        events += export.read.events;
        samples += export.read.samples;
        written += export.written_bytes;
        read_bytes += std::fs::metadata(&export.path).map_or(0, |m| m.len());
    }
    if !args.quiet {
        let per_second = if elapsed_s > 0.0 { slices as f64 / elapsed_s } else { 0.0 };
        let per_slice = |bytes: u64| if slices > 0 { bytes as f64 / slices as f64 } else { 0.0 };
        let _ = writeln!(
            std::io::stderr().lock(),
            "aiocop-analyze: exported {} ({slices} slices, {events} events, {samples} samples) to '{}' in {elapsed_s:.2} s \
             ({per_second:.0} slices/s); {:.1} MB of Parquet ({:.2} bytes/slice) from {:.1} MB of traces ({:.2} bytes/slice)",
            crate::units::count(exports.len() as u64, "trace"),
            args.output.display(),
            written as f64 / 1e6,
            per_slice(written),
            read_bytes as f64 / 1e6,
            per_slice(read_bytes),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_or_a_dumb_term() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert!(color_enabled(ColorChoice::Auto, true, None, os("xterm-256color")));
        assert!(color_enabled(ColorChoice::Auto, true, None, None));
        assert!(color_enabled(ColorChoice::Auto, true, os(""), os("xterm")));
        assert!(!color_enabled(ColorChoice::Auto, false, None, os("xterm")));
        assert!(!color_enabled(ColorChoice::Auto, true, os("1"), os("xterm")));
        assert!(!color_enabled(ColorChoice::Auto, true, None, os("dumb")));
        assert!(color_enabled(ColorChoice::Always, false, os("1"), os("dumb")));
        assert!(!color_enabled(ColorChoice::Never, true, None, os("xterm")));
    }
}
