//! Runs a parsed command line: opens the inputs, reads every chunk in
//! parallel, and writes the result. The command line becomes library
//! options here and nowhere else.
//!
//! Reading is two stages (see [`crate::aggregate`] and [`crate::resolve`]).
//! Files are read in parallel, each by its own task that opens it, reads it
//! and closes it (so that a fleet of thousands of traces does not hold
//! thousands of open files). Within a file, chunks are decoded in parallel
//! on rayon's threads and folded into an aggregate keyed by the file's ids,
//! together with the file's definitions; then the aggregate is resolved to
//! text keys through the file's whole dictionary, and the files' results are
//! merged in input order. Chunks are read from disk one at a time per thread
//! and dropped once folded: memory holds aggregates and definitions, never a
//! whole trace. `--by context:KEY` first reads each file once more to find
//! the key's id.
//!
//! Warnings (a file cut short, unreadable chunks, a newer format minor, a
//! footer that disagrees with the chunks) are one line each on stderr,
//! printed in input order before the output.
//!
//! Every command that reads traces reads them within one memory budget
//! (`--max-memory`, [`aiocop_trace::budget`]) for all of its files, threads
//! and sides: a trace that needs more ends the run with one line naming the
//! file, the chunk and the limit. Beyond the budget, the process holds its
//! code and what the budget does not count: each thread's reused buffers
//! (up to 4 MiB) and zstd context, and the analysis built from the slices.

use crate::aggregate::{fold_chunks, ChunkOptions, FileAggregate};
use crate::cli::{ColorChoice, Command, DiffArgs, FilterArgs, InfoArgs, InfoFormat, MemoryArgs, ReportArgs};
use crate::diff::{self, Diff, DiffOptions, ScoreWith};
use crate::error::AnalyzeError;
use crate::export::{self, ReportFormat, Style};
use crate::group::{GroupBy, IgnoreSet};
use crate::info::{InfoCounts, TraceInfo};
use crate::loop_time::DEFAULT_LONG_MS;
use crate::report::{self, OptionsView, RankOptions, Report, TotalsView, TraceFacts};
use crate::resolve::{self, Analysis, EventWeights, ResolveOptions};
use crate::stalls::{StallOptions, DEFAULT_STALL_GAP_NS};
use aiocop_trace::format::{FORMAT_MINOR, FRAME_HEADER_LEN};
use aiocop_trace::records::TraceFooter;
use aiocop_trace::SeverityLevel;
use aiocop_trace::{MemoryBudget, TraceFile};
use globset::GlobBuilder;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Input bytes past which reading shows a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;

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
        None => run_report(cli.report).map(|()| Outcome::Done),
    }
}

/// Prints a warning: one line on stderr.
fn warn(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "aiocop-analyze: warning: {message}");
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

/// The warning for a file of a newer format minor, if it is one.
pub(crate) fn newer_minor_warning(trace: &TraceFile) -> Option<String> {
    let (major, minor) = trace.format_version();
    (minor > FORMAT_MINOR).then(|| {
        format!(
            "'{}' is trace format {major}.{minor}, newer than this build reads ({major}.{FORMAT_MINOR}): what it adds is skipped",
            trace.path()
        )
    })
}

/// Prints every error but the last, which it returns; or the values, in input order.
fn all_or_errors<T>(results: Vec<Result<T, AnalyzeError>>) -> Result<Vec<T>, AnalyzeError> {
    let mut values = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(value) => values.push(value),
            Err(error) => errors.push(error),
        }
    }
    // A refusal of the memory budget ends the whole read: the other files'
    // refusals follow from it, and only the one that needed too much is said.
    let refused = |e: &AnalyzeError| matches!(e, AnalyzeError::Read(r) if r.is_over_memory_limit());
    if let Some(first) = errors.iter().position(refused).map(|at| errors.remove(at)) {
        errors.retain(|e| !refused(e));
        errors.push(first);
    }
    match errors.pop() {
        None => Ok(values),
        Some(last) => {
            for error in errors {
                let _ = writeln!(std::io::stderr().lock(), "aiocop-analyze: {error}");
            }
            Err(last)
        }
    }
}

/// Whether reading shows a progress bar: on a terminal, for inputs large
/// enough to take a while, unless `--quiet`.
fn shows_progress(bytes: u64, stderr_is_terminal: bool, quiet: bool) -> bool {
    stderr_is_terminal && !quiet && bytes >= PROGRESS_MIN_BYTES
}

/// A progress bar over the inputs' bytes on stderr (see [`shows_progress`]).
fn progress_bar(paths: &[PathBuf], quiet: bool) -> ProgressBar {
    let bytes: u64 = paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    if !shows_progress(bytes, std::io::stderr().is_terminal(), quiet) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} reading {bar:40} {bytes}/{total_bytes} ({eta} left)") {
        bar.set_style(style);
    }
    bar
}

/// Bytes chunk `index` takes in its file, for the progress bar.
fn chunk_bytes(trace: &TraceFile, index: usize) -> u64 {
    trace.chunk_info(index).map_or(0, |info| FRAME_HEADER_LEN as u64 + u64::from(info.payload_len))
}

/// A trace's footer, if it agrees with what was read, and a warning if not.
pub(crate) struct CheckedFooter {
    pub footer: Option<TraceFooter>,
    pub warning: Option<String>,
}

/// The footer of `trace` if its counts are the chunks' (its chunk count,
/// and its slice count when `slices_read` says how many every chunk
/// held); else a warning, and no footer: a footer that lies (damaged,
/// crafted) must not give the recorded time or the counts.
pub(crate) fn trusted_footer(trace: &TraceFile, slices_read: Option<u64>) -> CheckedFooter {
    let Some(footer) = trace.footer() else { return CheckedFooter { footer: None, warning: None } };
    let chunks = trace.chunk_count() as u64;
    let mut problems = Vec::new();
    if footer.chunks != chunks {
        problems.push(format!("{} where the file holds {chunks}", crate::export::count(footer.chunks, "chunk")));
    }
    if let Some(slices) = slices_read.filter(|&slices| slices != footer.slices) {
        problems.push(format!("{} where its chunks hold {slices}", crate::export::count(footer.slices, "slice")));
    }
    if problems.is_empty() {
        return CheckedFooter { footer: Some(footer.clone()), warning: None };
    }
    let warning = format!(
        "'{}': its footer does not match its chunks (it counts {}): it is ignored, and the counts and times are the chunks'",
        trace.path(),
        problems.join(", and ")
    );
    CheckedFooter { footer: None, warning: Some(warning) }
}

/// The one-line warning for a file cut short or with unreadable chunks.
pub(crate) fn check_readable(trace: &TraceFile, unreadable: u64, first_error: Option<String>) -> Option<String> {
    let mut problems = Vec::new();
    if let Some(damage) = trace.damage() {
        // The trace crate's message starts with the quoted path, which the
        // warning has already named.
        let quoted = format!("'{}'", trace.path());
        let damage = damage.to_string();
        let damage = damage.strip_prefix(&quoted).unwrap_or(&damage).trim_start_matches(':').trim_start();
        problems.push(format!("it is read only up to a damaged frame ({damage})"));
    } else if trace.cut_short() {
        problems
            .push("it was cut short (no footer: the recording did not stop cleanly, or is still going on)".to_owned());
    }
    if let Some(error) = first_error {
        // The trace crate's message names the file: the warning names it first already.
        let prefix = format!("'{}': ", trace.path());
        let error = error.strip_prefix(&prefix).map_or_else(|| error.clone(), str::to_owned);
        let more = match unreadable {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", crate::export::count(n - 1, "unreadable chunk")),
        };
        problems.push(format!("{error}{more}"));
    }
    if problems.is_empty() {
        return None;
    }
    let readable = trace.chunk_count() as u64 - unreadable;
    Some(format!(
        "'{}': {}; using its {}",
        trace.path(),
        problems.join("; "),
        crate::export::count(readable, "readable chunk")
    ))
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

fn seconds_to_ns(seconds: f64) -> u64 {
    // Saturates: `as` clamps a float too large for u64.
    (seconds * 1e9).round() as u64
}

fn label_matcher(pattern: &str) -> Result<globset::GlobMatcher, AnalyzeError> {
    let glob = GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map_err(|e| AnalyzeError::BadPattern { pattern: pattern.to_owned(), problem: e.kind().to_string() })?;
    Ok(glob.compile_matcher())
}

/// The filters turned into the options of reading: checked once, shared by
/// every file of a report and by both sides of a diff.
pub(crate) struct ReadOptions<'a> {
    pub filters: &'a FilterArgs,
    /// `--max-memory`, for every file read.
    pub budget: Arc<MemoryBudget>,
    pub ignore: Option<IgnoreSet>,
    pub label: Option<globset::GlobMatcher>,
    /// Scores events by name with these weights instead of each trace's own
    /// (`diff` scores both sides with one table).
    pub weights: Option<EventWeights>,
    /// Frame keys by identity, without lines (`diff` matches releases by them).
    pub by_identity: bool,
    /// `--long-ms`, in nanoseconds.
    pub long_ns: u64,
    /// The stall gap tolerance (`--stall-gap-us`), in nanoseconds.
    pub stall_gap_ns: u64,
    /// Folds each file's stacks for a flame graph too ([`Side::flame`]).
    pub flame: Option<crate::flamegraph::FrameNames>,
    /// `--quiet`: no progress bar.
    pub quiet: bool,
    /// Keep the busy time over each trace (the HTML report's chart).
    pub busy_series: bool,
}

impl ReadOptions<'_> {
    pub(crate) fn new(filters: &FilterArgs, memory: MemoryArgs) -> Result<ReadOptions<'_>, AnalyzeError> {
        if let (Some(since), Some(until)) = (filters.since, filters.until) {
            if since >= until {
                return Err(AnalyzeError::Usage(format!("--since {since} is not before --until {until}")));
            }
        }
        let ignore = IgnoreSet::new(&filters.ignore)
            .map_err(|(pattern, e)| AnalyzeError::BadPattern { pattern, problem: e.kind().to_string() })?;
        let label = filters.label.as_deref().map(label_matcher).transpose()?;
        Ok(ReadOptions {
            filters,
            budget: MemoryBudget::new(memory.max_memory),
            ignore,
            label,
            weights: None,
            by_identity: false,
            long_ns: seconds_to_ns(DEFAULT_LONG_MS / 1000.0),
            stall_gap_ns: DEFAULT_STALL_GAP_NS,
            flame: None,
            quiet: false,
            busy_series: false,
        })
    }
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
    let mut options = ReadOptions::new(&args.filters, args.output.memory)?;
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
fn diff_flame_graph(base: &crate::flamegraph::Folded, new: &crate::flamegraph::Folded) -> Option<String> {
    let subtitle = "the new side's stacks, against the base's scaled to the same total".to_owned();
    let text = crate::flamegraph::SvgText {
        title: "Busy time by stack, against the base".to_owned(),
        subtitle: Some(subtitle),
    };
    let svg = crate::flamegraph::differential_svg(base, new, &text).ok()?;
    String::from_utf8(svg).ok()
}

/// Reads both sides, scored with one side's event table, and writes their
/// comparison; prints one line per reason the gate fails on stderr.
pub fn run_diff(mut args: DiffArgs) -> Result<Outcome, AnalyzeError> {
    if args.skip_first_s > args.filters.since.unwrap_or(0.0) {
        args.filters.since = Some(args.skip_first_s);
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
    let mut options = ReadOptions::new(&args.filters, args.output.memory)?;
    options.weights = Some(diff::weights_of(scoring_table));
    options.by_identity = true;
    options.quiet = args.output.quiet;
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
            diff.flame_graph_svg = diff_flame_graph(&base.flame, &new.flame);
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
        gate_one_time: args.gate_one_time,
        frame_keys: matches!(
            args.filters.by,
            crate::group::GroupBy::EntryPoint
                | crate::group::GroupBy::Function
                | crate::group::GroupBy::AppFrame
                | crate::group::GroupBy::Stack
        ),
    };
    let (mut rows, rise_tests, fall_tests) = diff::compare(base, new, &diff_options);
    let counts = diff::count_statuses(&rows);
    let warning = diff::nothing_in_common(&rows);
    let reasons = diff::gate(&rows, &diff_options);
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
        by: filters.by.to_string(),
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
    }
}

fn default_top(args: &ReportArgs) -> usize {
    args.top.unwrap_or(match args.output.format {
        ReportFormat::Table | ReportFormat::Markdown => 20,
        ReportFormat::Html => 50,
        ReportFormat::Json | ReportFormat::Csv => 0,
    })
}

/// One input, read: what the report needs of it.
enum FileOutcome {
    /// Left out by `--label`; its label.
    Skipped(Option<String>),
    Read(Box<ReadFile>),
}

struct ReadFile {
    facts: TraceFacts,
    analysis: Analysis,
    warnings: Vec<String>,
    flame: crate::flamegraph::Folded,
}

/// Inputs read and merged: a report's, or one side of a diff.
pub struct Side {
    pub analysis: Analysis,
    /// Each trace read, in input order.
    pub facts: Vec<TraceFacts>,
    /// Every input path, read or left out by `--label`, in input order (a
    /// file's number in the analysis is its index here).
    pub paths: Vec<String>,
    /// With [`ReadOptions::flame`], the busy time by stack.
    pub flame: crate::flamegraph::Folded,
}

impl Side {
    /// The totals every format shows, for groups at `min_severity` or above.
    pub fn totals(&self, min_severity: Option<SeverityLevel>) -> TotalsView {
        let totals = &self.analysis.totals;
        let duration_ns: u64 = self.facts.iter().map(|f| seconds_to_ns(f.duration_s)).sum();
        TotalsView {
            traces: totals.traces,
            slices: totals.slices,
            blocking_slices: totals.blocking_slices,
            exceeded: totals.exceeded,
            cpu_blocking: totals.cpu_blocking,
            events: totals.events,
            dropped: totals.dropped_slices,
            dropped_events: totals.dropped_events,
            duration_s: report::seconds(duration_ns),
            groups: self.analysis.groups.values().filter(|g| min_severity.is_none_or(|min| g.worst >= min)).count(),
            cpu_groups: self.analysis.cpu_groups.len(),
            stalls: self.analysis.stalls.len(),
            // The stalls' durations as shown, added up: the list and the total agree.
            stall_ms: self.analysis.stalls.iter().map(|s| report::us(s.duration_ns)).sum::<u64>() as f64 / 1000.0,
        }
    }
}

/// Reads `paths` and merges them (inside the caller's thread pool).
///
/// Each file is opened, read and closed by its own task, so that a fleet of
/// thousands of traces never holds thousands of open files; its chunks are
/// read in parallel within it.
pub(crate) fn read_side(paths: &[PathBuf], options: &ReadOptions<'_>) -> Result<Side, AnalyzeError> {
    let filters = options.filters;
    let since_ns = filters.since.map_or(0, seconds_to_ns);
    let until_ns = filters.until.map_or(u64::MAX, seconds_to_ns);
    let threshold_ns = filters.threshold_ms.map(|ms| seconds_to_ns(ms / 1000.0));
    let resolve_options = ResolveOptions {
        by: &filters.by,
        app_roots: &filters.app_roots,
        ignore: options.ignore.as_ref(),
        exceeded_only: filters.exceeded_only,
        weights: options.weights.as_ref(),
        by_identity: options.by_identity,
    };
    let progress = progress_bar(paths, options.quiet);

    let read_file = |file: usize, path: &PathBuf| -> Result<FileOutcome, AnalyzeError> {
        let trace = TraceFile::open_within(path, options.budget.clone())?;
        if let Some(matcher) = &options.label {
            let label = trace.header().label.clone();
            if !label.as_deref().is_some_and(|l| matcher.is_match(l)) {
                progress.inc(std::fs::metadata(path).map_or(0, |m| m.len()));
                return Ok(FileOutcome::Skipped(label));
            }
        }
        // `--by context:KEY` needs the key's string id before slices are read.
        let context_id = match &filters.by {
            GroupBy::Context(key) => (0..trace.chunk_count())
                .into_par_iter()
                .filter_map(|i| {
                    trace.read_chunk_definitions(i).ok().and_then(|c| resolve::find_string(&c.strings, key))
                })
                .min(),
            _ => None,
        };
        let header = trace.header();
        let chunk_options = ChunkOptions {
            // A flame graph roots sampled stacks at what ran: signatures keep
            // it where `--by` has no other use for their extra key.
            extra: match (resolve::extra_for(&filters.by, context_id), options.flame) {
                (crate::aggregate::Extra::None, Some(_)) => crate::aggregate::Extra::What,
                (extra, _) => extra,
            },
            threshold_ns,
            since_ns,
            until_ns,
            long_ns: options.long_ns,
            import_event: header
                .event_table
                .iter()
                .position(|e| e.name == "import")
                .and_then(|i| u16::try_from(i).ok()),
            stalls: StallOptions {
                threshold_ns: threshold_ns.unwrap_or(header.threshold_ns),
                gap_ns: options.stall_gap_ns,
            },
            busy_series: options.busy_series,
        };
        let mut aggregate = fold_chunks(
            trace.chunk_count(),
            FileAggregate::default,
            |aggregate, index| {
                aggregate.add_from(&trace, index, &chunk_options);
                progress.inc(chunk_bytes(&trace, index));
            },
            FileAggregate::merge,
        );

        if let Some(refused) = aggregate.over_memory_limit.take() {
            return Err(refused.into());
        }
        if let (0, Some(damage)) = (trace.chunk_count(), trace.damage()) {
            return Err(AnalyzeError::DamagedBeforeAnyChunk { damage: damage.to_string() });
        }
        let mut warnings: Vec<String> = newer_minor_warning(&trace).into_iter().collect();
        let footer = trusted_footer(&trace, None);
        warnings.extend(footer.warning);
        let first_error = aggregate.first_error.take().map(|(_, error)| error);
        if aggregate.unreadable == trace.chunk_count() as u64 {
            if let Some(error) = first_error {
                return Err(AnalyzeError::NothingReadable { error, chunks: trace.chunk_count() });
            }
        }
        warnings.extend(check_readable(&trace, aggregate.unreadable, first_error.map(|e| e.to_string())));
        let mut analysis = Analysis::default();
        analysis.add_file(file, trace.header(), &aggregate, resolve_options);
        let facts = trace_facts(&trace, footer.footer.as_ref(), &aggregate, since_ns, until_ns);
        let mut flame = crate::flamegraph::Folded::default();
        if let Some(names) = options.flame {
            flame.add_file(trace.header(), &aggregate, options.ignore.as_ref(), names);
        }
        aggregate.runs = Vec::new();
        Ok(FileOutcome::Read(Box::new(ReadFile { facts, analysis, warnings, flame })))
    };
    let outcomes: Vec<Result<FileOutcome, AnalyzeError>> =
        paths.par_iter().enumerate().map(|(file, path)| read_file(file, path)).collect();
    progress.finish_and_clear();

    let mut analysis = Analysis::default();
    let mut facts = Vec::new();
    let mut flame = crate::flamegraph::Folded::default();
    let mut skipped_labels = Vec::new();
    for outcome in all_or_errors(outcomes)? {
        match outcome {
            FileOutcome::Skipped(label) => skipped_labels.push(label.unwrap_or_else(|| "none".to_owned())),
            FileOutcome::Read(file) => {
                for warning in &file.warnings {
                    warn(warning);
                }
                facts.push(file.facts);
                analysis.merge(file.analysis);
                flame.merge(file.flame);
            }
        }
    }
    if facts.is_empty() {
        if let Some(pattern) = &filters.label {
            skipped_labels.sort();
            skipped_labels.dedup();
            return Err(AnalyzeError::NoLabelMatch { pattern: pattern.clone(), labels: skipped_labels.join(", ") });
        }
    }
    let paths = paths.iter().map(|p| p.display().to_string()).collect();
    Ok(Side { analysis, facts, paths, flame })
}

/// The ranked report of what was read.
fn make_report(args: &ReportArgs, mut side: Side) -> Report {
    let filters = &args.filters;
    let min_severity = args.min_severity.map(|m| m.level());
    let totals = side.totals(min_severity);
    let top = default_top(args);
    let rank = RankOptions { sort: args.sort, top, min_severity };
    let loop_time = report::loop_time(&side.analysis, top, args.long_ms);
    let (busy_series_ns, totals_traces) =
        (std::mem::take(&mut side.analysis.busy_series_ns), side.analysis.totals.traces);
    let (stalls, stalls_not_shown) = report::stalls(&side.analysis.stalls, top, &side.paths);
    let (groups, groups_not_shown, cpu_groups, cpu_groups_not_shown) = report::rank(side.analysis, rank);
    Report {
        schema_version: report::SCHEMA_VERSION,
        schema_minor: report::SCHEMA_MINOR,
        by: filters.by.to_string(),
        loop_time,
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
        pictures: {
            let (busy_share, interval_s) = report::busy_share(&busy_series_ns, totals_traces);
            report::Pictures { busy_share, interval_s, flame_graph_svg: None }
        },
    }
}

fn trace_facts(
    trace: &TraceFile,
    footer: Option<&TraceFooter>,
    aggregate: &FileAggregate,
    since_ns: u64,
    until_ns: u64,
) -> TraceFacts {
    let header = trace.header();
    let (major, minor) = trace.format_version();
    let end_ns = footer.map_or(aggregate.counts.last_end_ns, |f| f.end_offset_ns);
    TraceFacts {
        path: trace.path().to_owned(),
        format_version: format!("{major}.{minor}"),
        aiocop_version: header.aiocop_version.clone(),
        python_version: header.python_version.clone(),
        platform: header.platform.clone(),
        host: header.host.clone(),
        pid: header.pid,
        parent_pid: header.process.parent_pid,
        role: header.process.role.clone(),
        root_command: header.process.root_command.clone(),
        label: header.label.clone(),
        threshold_ms: report::ms(header.threshold_ns),
        start_unix_ns: header.start_unix_ns,
        duration_s: report::seconds(end_ns.min(until_ns).saturating_sub(since_ns)),
        slices: aggregate.counts.slices,
        samples: aggregate.counts.samples,
        chunks: trace.chunk_count(),
        unreadable_chunks: aggregate.unreadable,
        cut_short: trace.cut_short(),
    }
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
        let mut infos = Vec::new();
        for (info, warnings) in all_or_errors(results)? {
            for warning in warnings {
                warn(&warning);
            }
            infos.push(info);
        }
        Ok(infos)
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
    let read = ReadOptions::new(&args.filters, args.memory)?;
    let filters = &args.filters;
    let options = TimelineOptions {
        tracks: args.tracks,
        since_ns: filters.since.map_or(0, seconds_to_ns),
        until_ns: filters.until.map_or(u64::MAX, seconds_to_ns),
        min_ns: seconds_to_ns(args.min_ms / 1000.0),
        threshold_ns: filters.threshold_ms.map(|ms| seconds_to_ns(ms / 1000.0)),
        stall_gap_ns: DEFAULT_STALL_GAP_NS,
        ignore: read.ignore.as_ref(),
        window: 4,
    };
    let paths = crate::input::expand(&args.inputs)?;
    let pool = thread_pool(args.threads)?;
    let destination = Destination::new(args.output.as_deref());
    let write = |out: &mut (dyn Write + Send), name: &str| {
        let mut sink = JsonSink::new(out, name);
        let outcomes = pool.install(|| write_traces(&paths, read.label.as_ref(), &read.budget, &options, &mut sink))?;
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
    let mut options = ReadOptions::new(&args.filters, args.memory)?;
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
        let labels: Vec<&str> = side.facts.iter().filter_map(|f| f.label.as_deref()).collect();
        let mut labels = labels;
        labels.dedup();
        format!(
            "{}{}, {:.1} ms busy",
            crate::export::count(side.facts.len() as u64, "trace"),
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
            let svg = crate::flamegraph::differential_svg(&base.flame, &side.flame, &text).map_err(failed)?;
            String::from_utf8_lossy(&svg).into_owned()
        }
    };
    destination.write(&text)
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

    #[test]
    fn progress_only_on_a_terminal_for_long_reads_unless_quiet() {
        assert!(shows_progress(PROGRESS_MIN_BYTES, true, false));
        assert!(!shows_progress(PROGRESS_MIN_BYTES, true, true));
        assert!(!shows_progress(PROGRESS_MIN_BYTES, false, false));
        assert!(!shows_progress(PROGRESS_MIN_BYTES - 1, true, false));
    }

    #[test]
    fn seconds_become_nanoseconds_and_saturate() {
        assert_eq!(seconds_to_ns(2.1), 2_100_000_000);
        assert_eq!(seconds_to_ns(0.0), 0);
        assert_eq!(seconds_to_ns(1e300), u64::MAX);
    }
}
