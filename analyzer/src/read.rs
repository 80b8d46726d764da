//! Reading one side: the traces of a report, or one side of a diff, read
//! into a [`Side`]. The first step after the trace file (record -> trace
//! file -> **read** -> aggregate -> resolve -> report/diff/views).
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
//! [`ReadOptions`] are plain values: the command line becomes them in
//! [`crate::app`], and nothing here knows of clap.

use crate::aggregate::{fold_chunks, ChunkOptions, Extra, FileAggregate};
use crate::error::AnalyzeError;
use crate::flamegraph::{Folded, FrameNames};
use crate::group::IgnoreSet;
use crate::keys::GroupBy;
use crate::report::{self, TotalsView, TraceFacts};
use crate::resolve::{self, Analysis, EventWeights, ResolveOptions};
use crate::stalls::StallOptions;
use aiocop_trace::format::{FORMAT_MINOR, FRAME_HEADER_LEN};
use aiocop_trace::records::{StringId, TraceFooter, TraceHeader};
use aiocop_trace::SeverityLevel;
use aiocop_trace::{MemoryBudget, TraceFile};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Input bytes past which reading shows a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 16 << 20;

/// How traces are read: checked once, shared by every file of a report
/// and by both sides of a diff.
pub struct ReadOptions {
    /// `--since`, in nanoseconds from each trace's start (0 without it).
    pub since_ns: u64,
    /// `--until`, in nanoseconds from each trace's start (`u64::MAX` without it).
    pub until_ns: u64,
    /// `--threshold-ms`, in nanoseconds: re-evaluates `exceeded`; `None`
    /// keeps each trace's own.
    pub threshold_ns: Option<u64>,
    /// `--by`.
    pub by: GroupBy,
    /// `--app-root`.
    pub app_roots: Vec<String>,
    /// `--exceeded-only`.
    pub exceeded_only: bool,
    /// `--ignore`, compiled.
    pub ignore: Option<IgnoreSet>,
    /// `--label`: its pattern (named when no trace matches) and its matcher.
    pub label: Option<(String, globset::GlobMatcher)>,
    /// `--max-memory`, for every file read.
    pub budget: Arc<MemoryBudget>,
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
    pub flame: Option<FrameNames>,
    /// `--quiet`: no progress bar.
    pub quiet: bool,
    /// Keep the busy time over each trace (the HTML report's chart).
    pub busy_series: bool,
    /// Count each route's requests and time ([`Side::routes`]): `--by
    /// route`, or a diff whose gate looks at routes (`--fail-on route`).
    pub routes: bool,
}

impl ReadOptions {
    fn resolve_options(&self) -> ResolveOptions<'_> {
        ResolveOptions {
            by: &self.by,
            app_roots: &self.app_roots,
            ignore: self.ignore.as_ref(),
            exceeded_only: self.exceeded_only,
            weights: self.weights.as_ref(),
            by_identity: self.by_identity,
        }
    }
}

/// One input, read: what the report needs of it.
enum FileOutcome {
    /// Left out by `--label`; its label.
    Skipped(Option<String>),
    Read(Box<ReadFile>),
}

impl FileOutcome {
    fn warnings(&self) -> &[String] {
        match self {
            FileOutcome::Skipped(_) => &[],
            FileOutcome::Read(file) => &file.warnings,
        }
    }
}

struct ReadFile {
    facts: TraceFacts,
    analysis: Analysis,
    warnings: Vec<String>,
    flame: Folded,
    routes: crate::routes::Routes,
    tasks: crate::tasks::TaskTimes,
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
    pub flame: Folded,
    /// With [`ReadOptions::routes`], the requests and time of each route.
    pub routes: crate::routes::Routes,
    /// Tasks by coroutine (by route with `--by route`) and loop lag.
    pub tasks: crate::tasks::TaskTimes,
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
            allowed_events: totals.allowed_events,
            allowed_by: totals.allowed_by.clone(),
            traces_before_allowed: self.facts.iter().filter(|f| !records_allowed(&f.format_version)).count() as u64,
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
pub fn read_side(paths: &[PathBuf], options: &ReadOptions) -> Result<Side, AnalyzeError> {
    let progress = progress_bar(paths, options.quiet);
    let outcomes: Vec<Result<FileOutcome, AnalyzeError>> =
        paths.par_iter().enumerate().map(|(file, path)| read_file(file, path, options, &progress)).collect();
    progress.finish_and_clear();
    merge_files(paths, all_or_errors(outcomes, FileOutcome::warnings)?, options)
}

/// Reads input number `file`: left out by `--label`, or folded and resolved.
fn read_file(
    file: usize,
    path: &PathBuf,
    options: &ReadOptions,
    progress: &ProgressBar,
) -> Result<FileOutcome, AnalyzeError> {
    let trace = TraceFile::open_within(path, options.budget.clone())?;
    if let Some((_, matcher)) = &options.label {
        let label = trace.header().label.clone();
        if !label.as_deref().is_some_and(|l| matcher.is_match(l)) {
            progress.inc(std::fs::metadata(path).map_or(0, |m| m.len()));
            return Ok(FileOutcome::Skipped(label));
        }
    }
    let mut chunk_options = chunk_options(trace.header(), options, context_string_id(&trace, &options.by));
    chunk_options.iterations_possible = trace.format_version() >= (1, 3);
    let mut aggregate = fold_chunks(
        trace.chunk_count(),
        FileAggregate::default,
        |aggregate, index| {
            aggregate.add_from(&trace, index, &chunk_options);
            progress.inc(chunk_bytes(&trace, index));
        },
        FileAggregate::merge,
    );
    let (footer, warnings) = check_file(&trace, &mut aggregate)?;
    let mut analysis = Analysis::default();
    analysis.add_file(file, trace.header(), &aggregate, options.resolve_options());
    let facts = trace_facts(&trace, footer.as_ref(), &aggregate, options.since_ns, options.until_ns);
    let mut flame = Folded::default();
    if let Some(names) = options.flame {
        flame.add_file(trace.header(), &aggregate, options.ignore.as_ref(), names);
    }
    aggregate.runs = Vec::new();
    let routes = match options.routes {
        true => crate::routes::file_routes(&trace, options.since_ns, options.until_ns),
        false => crate::routes::Routes::default(),
    };
    let tasks = crate::tasks::file_tasks(&trace, options.by.has_routes_table(), options.since_ns, options.until_ns);
    Ok(FileOutcome::Read(Box::new(ReadFile { facts, analysis, warnings, flame, routes, tasks })))
}

/// The string id of `--by context:KEY`'s key in `trace`, needed before
/// slices are read; `None` for other keys, or a key the trace never names.
fn context_string_id(trace: &TraceFile, by: &GroupBy) -> Option<StringId> {
    let key = by.context_key()?;
    (0..trace.chunk_count())
        .into_par_iter()
        .filter_map(|i| trace.read_chunk_definitions(i).ok().and_then(|c| resolve::find_string(&c.strings, key)))
        .min()
}

/// How the slices of a trace with `header` are taken in.
fn chunk_options(header: &TraceHeader, options: &ReadOptions, context_id: Option<StringId>) -> ChunkOptions {
    ChunkOptions {
        // A flame graph roots sampled stacks at what ran: signatures keep
        // it where `--by` has no other use for their extra key.
        extra: match (options.by.extra(context_id), options.flame) {
            (Extra::None, Some(_)) => Extra::What,
            (extra, _) => extra,
        },
        threshold_ns: options.threshold_ns,
        since_ns: options.since_ns,
        until_ns: options.until_ns,
        long_ns: options.long_ns,
        import_event: header.event_table.iter().position(|e| e.name == "import").and_then(|i| u16::try_from(i).ok()),
        stalls: StallOptions {
            threshold_ns: options.threshold_ns.unwrap_or(header.threshold_ns),
            gap_ns: options.stall_gap_ns,
        },
        busy_series: options.busy_series,
        iterations_possible: false,
        sample_interval_ns: header.sampling.interval_ns,
    }
}

/// After a file's chunks are folded: an error when nothing of it is usable
/// (over the memory budget, damaged before any chunk, no chunk readable);
/// else its trusted footer and its warnings.
fn check_file(
    trace: &TraceFile,
    aggregate: &mut FileAggregate,
) -> Result<(Option<TraceFooter>, Vec<String>), AnalyzeError> {
    if let Some(refused) = aggregate.over_memory_limit.take() {
        return Err(refused.into());
    }
    if let (0, Some(damage)) = (trace.chunk_count(), trace.damage()) {
        return Err(AnalyzeError::DamagedBeforeAnyChunk { damage: damage.to_string() });
    }
    let mut warnings: Vec<String> = newer_minor_warning(trace).into_iter().collect();
    let footer = trusted_footer(trace, None);
    warnings.extend(footer.warning);
    let first_error = aggregate.first_error.take().map(|(_, error)| error);
    if aggregate.unreadable == trace.chunk_count() as u64 {
        if let Some(error) = first_error {
            return Err(AnalyzeError::NothingReadable { error, chunks: trace.chunk_count() });
        }
    }
    warnings.extend(check_readable(trace, aggregate.unreadable, first_error.map(|e| e.to_string())));
    Ok((footer.footer, warnings))
}

/// The files read, merged in input order; an error
/// when `--label` left every file out.
fn merge_files(paths: &[PathBuf], outcomes: Vec<FileOutcome>, options: &ReadOptions) -> Result<Side, AnalyzeError> {
    let mut analysis = Analysis::default();
    let mut facts = Vec::new();
    let mut flame = Folded::default();
    let mut routes = crate::routes::Routes::default();
    let mut tasks = crate::tasks::TaskTimes::default();
    let mut skipped_labels = Vec::new();
    for outcome in outcomes {
        match outcome {
            FileOutcome::Skipped(label) => skipped_labels.push(label.unwrap_or_else(|| "none".to_owned())),
            FileOutcome::Read(file) => {
                facts.push(file.facts);
                analysis.merge(file.analysis);
                flame.merge(file.flame);
                for (route, stats) in file.routes {
                    routes.entry(route).or_default().merge(stats);
                }
                tasks.merge(file.tasks);
            }
        }
    }
    if facts.is_empty() {
        if let Some((pattern, _)) = &options.label {
            skipped_labels.sort();
            skipped_labels.dedup();
            return Err(AnalyzeError::NoLabelMatch { pattern: pattern.clone(), labels: skipped_labels.join(", ") });
        }
    }
    let paths = paths.iter().map(|p| p.display().to_string()).collect();
    Ok(Side { analysis, facts, paths, flame, routes, tasks })
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

/// Whether a trace of this format version (`1.3`) marks allowed events.
fn records_allowed(format_version: &str) -> bool {
    let minor = format_version.split_once('.').and_then(|(_, minor)| minor.parse::<u16>().ok());
    minor.is_some_and(|minor| minor >= 3)
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

/// Prints the warnings of the values (`warnings_of` each), in input order,
/// then every error but the last, which it returns; or the values, in input
/// order. The warnings are printed when another input failed too: an export
/// has written the files of the inputs that succeeded, and a damaged chunk
/// left out of them is said.
pub(crate) fn all_or_errors<T>(
    results: Vec<Result<T, AnalyzeError>>,
    warnings_of: impl Fn(&T) -> &[String],
) -> Result<Vec<T>, AnalyzeError> {
    let mut values = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(value) => values.push(value),
            Err(error) => errors.push(error),
        }
    }
    values.iter().flat_map(&warnings_of).for_each(|w| warn(w));
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
pub(crate) fn shows_progress(bytes: u64, stderr_is_terminal: bool, quiet: bool) -> bool {
    stderr_is_terminal && !quiet && bytes >= PROGRESS_MIN_BYTES
}

/// A progress bar over the inputs' bytes on stderr (see [`shows_progress`]).
pub(crate) fn progress_bar(paths: &[PathBuf], quiet: bool) -> ProgressBar {
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
pub(crate) fn chunk_bytes(trace: &TraceFile, index: usize) -> u64 {
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
        problems.push(format!("{} where the file holds {chunks}", crate::units::count(footer.chunks, "chunk")));
    }
    if let Some(slices) = slices_read.filter(|&slices| slices != footer.slices) {
        problems.push(format!("{} where its chunks hold {slices}", crate::units::count(footer.slices, "slice")));
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
            n => format!(" (and {} more)", crate::units::count(n - 1, "unreadable chunk")),
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
        crate::units::count(readable, "readable chunk")
    ))
}

/// Prints a warning: one line on stderr.
pub(crate) fn warn(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "aiocop-analyze: warning: {message}");
}

/// Seconds (or milliseconds over 1000) as nanoseconds.
pub(crate) fn seconds_to_ns(seconds: f64) -> u64 {
    // Saturates: `as` clamps a float too large for u64.
    (seconds * 1e9).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

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
