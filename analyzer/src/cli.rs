//! The command line: clap derive structs whose doc comments are the help.
//! They are turned into library options in one place, [`crate::app`].

use crate::diff::{FailOn, ScoreWith};
use crate::export::ReportFormat;
use crate::keys::GroupBy;
use crate::report::{CsvTable, MinSeverity, SortColumn};
use crate::timeline::Tracks;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const REPORT_EXAMPLES: &str = "\
Examples:
  aiocop-analyze trace.bin
      Rank the entry points of one recording by severity.
  aiocop-analyze 'traces/*.bin' --by app-frame --top 10
      Merge a fleet's per-worker traces; rank the frames of your own code.
  aiocop-analyze traces/ --by context:endpoint --min-severity high
      Which endpoints do heavy blocking I/O.
  aiocop-analyze trace.bin --ignore '*/logging/*' --exceeded-only --threshold-ms 20
      Known logging I/O aside, what blocked the loop for 20 ms or more.
  aiocop-analyze trace.bin --format json -o report.json
  aiocop-analyze info trace.bin

Exit codes: 0 the report was written; 2 an input is unusable, or a usage error.
(1 is a failing gate of `aiocop-analyze diff`.)";

const REPORT_SEMANTICS: &str = "\
Where the loop's time went (the Loop time table, first):
  Every slice's time goes to groups of the --by key: a slice with blocking
  events to its events' keys (split by event count), one with CPU samples to
  its samples' keys (each sample weighing the time since the previous one of
  its slice; an equal share in traces before format 1.3), any other to what
  ran (its coroutine or callback qualname). The groups add up to the busy
  time. io ms is the time of slices with blocking events, cpu ms the rest;
  `native` in the from column: some of the group's samples waited in C code
  it called (a sort, a C encoder). The headline
  says how much of the time in slices of --long-ms or more a stack (events
  or samples) explains; traces without CPU samples are said to be missing
  them.

Stalls:
  A stall is a run of slices of one loop, each starting at most
  --stall-gap-us after the previous one ended (the loop never got back to
  waiting for I/O), at least the threshold long: one long callback, or
  callbacks back to back. Listed longest first, with the groups with most
  time in them.

How the blocking I/O ranking is made:
  A slice is one run of a callback or task step on the event loop. A slice
  appears in a group when one of its blocking events has the group's key;
  its score there is the sum of those events' weights, taken from the
  trace's own event table, and it counts once however many events it has
  there. The level of a score is high from 50, medium from 10, low below.
  A group's worst level is the highest over its slices; its elapsed times
  (total, p50, p95, p99, max) are those of its slices.

  Keys (--by):
    entry-point    the innermost frame of the event's stack, path:line:function
    function       the innermost frame without its line: module:qualname when
                   the trace records them, else relative/path.py:function
    app-frame      the innermost frame in your own code: not the standard
                   library (lib/pythonX.Y, <frozen ...>), not site-packages or
                   dist-packages; with --app-root, the innermost frame under
                   one of the roots. Without one, the innermost third-party
                   frame (site-packages, dist-packages); else the entry point.
    handler        the outermost frame of your own code inside the event loop,
                   without its line: the handler (or what the framework
                   called into), its helpers, comprehensions and library
                   calls counted in it; never generated code (<string>,
                   <frozen ...>) nor the script that started the loop
    event          the event's name (open, time.sleep, socket.getaddrinfo)
    task           what the slice ran: the coroutine's qualname for a task
    route          the route of the request the slice served, as recorded
                   (GET /items/{item_id}: Starlette/FastAPI, aiohttp, Sanic,
                   Litestar, Django ASGI), <no route> outside requests; adds
                   the Routes table: requests routed, loop ms per request
                   (p50, p95 of each request's own task), share of the busy
                   time, blocking events per request, severity
    stack          the whole stack, innermost frame first, joined with ' <- '
    context:KEY    the slice's value of context provider KEY (<no KEY> if unset)

  CPU-blocking slices (over the threshold without any blocking event) have
  no severity: they are ranked in a table of their own, by total elapsed
  time, each keyed by its most frequent CPU sample at the same --by (for
  --by event, the sample's innermost frame; <no samples> when none was
  taken). --min-severity does not apply to them.

  Filters:
    --label, --since, --until, --threshold-ms and --ignore change what is
    read, and the totals with it. --exceeded-only and --min-severity choose
    the rows; the totals still describe everything read. A slice whose only
    blocking events are ignored is neither a blocking nor a CPU-blocking one.

  A lazy import (entry-point, app-frame) is one row at the frame that
  imported it, with the module named: app.py:12:handler (import numpy).

  Sort columns (--sort; numbers rank high first, keys alphabetically, ties
  go to the higher score, then the longer total time, then the key):
    key, slices, events, score (severity_score), level (severity_level),
    exceeded (over), total (total_ms), p50, p95, p99, max (p50_ms ... max_ms),
    busy (busy_ms: the loop time at the key)";

const DIFF_EXAMPLES: &str = "\
Examples:
  aiocop-analyze diff base.bin new.bin
      What got worse from one release to the next, most severe first.
  aiocop-analyze diff 'v1.4/*.bin' 'v1.5/*.bin' --by app-frame --all
      Every worker of each run; every row, unchanged ones too.
  aiocop-analyze diff base.bin new.bin --fail-on regressed --fail-on new
      A CI gate: exit 1 on a group worse beyond chance (at 0.99 over the whole
      diff) and by at least 20%, or a new group seen more than by chance.
  aiocop-analyze diff base.bin new.bin --fail-on regressed --fail-on new --fail-on route
      The same, and exit 1 on a route whose loop time per request rose
      beyond chance and beyond the band the other routes moved in (a run on
      a busier machine), or whose blocking events per request rose.
  aiocop-analyze diff base.bin new.bin --fail-on new-high --fail-on regressed --min-increase 50% --skip-first-s 10
      Stricter on size (50% worse), new high-severity groups however rare,
      and the first 10 s of each run (warm-up) left out.
  aiocop-analyze diff base.bin new.bin --format markdown -o diff.md
      A table for a pull-request comment.

Exit codes: 0 nothing failed the gate (or no --fail-on); 1 the gate failed
(a group or, with route or any, a route), one line per reason on stderr; 2 an input is unusable, or a usage error.";

const DIFF_SEMANTICS: &str = "\
How a diff is made:
  Each side is read as a report reads its inputs (same --by and filters).
  Rows are matched across releases by identity: for frame keys (entry-point,
  function, app-frame, stack), the frames without their lines, paths made
  relative (module:qualname when the trace records them), so a moved line or
  another deployment directory is the same row; the lines seen are detail.
  Runs differ in length, so a group's events and severity score are compared
  per 1,000 slices of their side.

  Status of a row:
    new        the group is only in NEW
    gone       the group is only in BASE
    regressed  its events or severity per 1k slices, or its p95 elapsed time,
               rose beyond chance and by at least --min-increase. Beyond
               chance: a Poisson rate-ratio test for the rates (the new
               side's count out of both, binomial with the new side's share
               of the slices; counts that come several to a slice divided by
               their dispersion); for the p95, only with --min-slices-p95
               slices on both sides, Fisher's exact test on the slices above
               the pooled p95, and a rise of --min-p95-change-ms too. Each
               p-value is Holm-adjusted over every test of the diff and must
               be at most 1 - --confidence.
    improved   none of those rose so, and one fell so
    unchanged  otherwise (shown with --all)
  One-time work is not tested nor gated (--gate-one-time: it is): groups
  whose events all came through the import system (first-call imports), and
  groups seen in at most 2 slices on each side. --skip-first-s leaves out
  each trace's warm-up.

  The gate counts rows with at least --min-count blocking slices on the new
  side: regressed rows; with new, new groups beyond chance (tested against 0
  on the base side); with new-high, new groups of high severity. With
  regressed and new, an unchanged build passes with a chance of at least
  --confidence. Each reason gives the numbers, the p-values and the
  confidence. With route (or any), routes are read whatever --by and a
  regressed route fails it too (see --by route's Routes table: loop time per
  request only beyond the band in which the other routes moved, so one route
  alone is never judged); a gate that judged no route says so.

  Rows are ordered by how much their severity per 1k slices rose (new and
  regressed groups first, improved and gone ones last), then by status.

  Both sides are scored with the NEW side's event table (--rescore base:
  the base's), matched by event name; weights that differ are listed.";

/// Rank where an asyncio program blocked its event loop, from aiocop traces.
///
/// `aiocop-analyze TRACE...` is `aiocop-analyze report TRACE...`.
#[derive(Debug, Parser)]
#[command(
    name = "aiocop-analyze",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    arg_required_else_help = true,
    after_help = REPORT_EXAMPLES,
    after_long_help = format!("{REPORT_SEMANTICS}\n\n{REPORT_EXAMPLES}"),
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rank where blocking I/O happened (the default command).
    #[command(after_help = REPORT_EXAMPLES, after_long_help = format!("{REPORT_SEMANTICS}\n\n{REPORT_EXAMPLES}"))]
    Report(ReportArgs),

    /// Compare two releases' traces group by group; with --fail-on, gate CI on regressions.
    #[command(after_help = DIFF_EXAMPLES, after_long_help = format!("{DIFF_SEMANTICS}\n\n{DIFF_EXAMPLES}"))]
    Diff(DiffArgs),

    /// Describe trace files: header, counts, time span, sizes, whether cut short.
    #[command(after_help = "Examples:\n  aiocop-analyze info trace.bin\n  aiocop-analyze info traces/ --format json")]
    Info(InfoArgs),

    /// Write the recording as a timeline (Chrome trace event JSON) for ui.perfetto.dev, chrome://tracing or speedscope.
    #[command(
        after_help = TIMELINE_EXAMPLES,
        after_long_help = format!("{TIMELINE_SEMANTICS}\n\n{TIMELINE_EXAMPLES}"),
        mut_arg("by", |a| a.hide(true)),
        mut_arg("app_roots", |a| a.hide(true)),
        mut_arg("exceeded_only", |a| a.hide(true)),
    )]
    Timeline(TimelineArgs),

    /// Draw the loop's busy time by stack as a flame graph (SVG), or write it as folded stacks.
    #[command(
        after_help = FLAMEGRAPH_EXAMPLES,
        after_long_help = format!("{FLAMEGRAPH_SEMANTICS}\n\n{FLAMEGRAPH_EXAMPLES}"),
        mut_arg("by", |a| a.hide(true)),
        mut_arg("app_roots", |a| a.hide(true)),
        mut_arg("exceeded_only", |a| a.hide(true)),
        mut_arg("threshold_ms", |a| a.hide(true)),
    )]
    Flamegraph(FlamegraphArgs),

    /// Print a [tool.aiocop] allow-list that allows every blocking call the traces saw, by function.
    #[command(after_help = ALLOWLIST_EXAMPLES, after_long_help = format!("{ALLOWLIST_SEMANTICS}\n\n{ALLOWLIST_EXAMPLES}"))]
    Allowlist(AllowlistArgs),
    /// Write the recordings as Parquet tables (slices, events, samples, traces) for DuckDB, polars or Spark.
    #[command(after_help = EXPORT_EXAMPLES, after_long_help = format!("{EXPORT_SEMANTICS}\n\n{EXPORT_EXAMPLES}"))]
    Export(ExportArgs),
}

const ALLOWLIST_EXAMPLES: &str = "\
Examples:
  python -m aiocop record -o trace.bin -- -m pytest
  aiocop-analyze allowlist trace.bin >> pyproject.toml
  aiocop-analyze allowlist traces/ --app-root src/ -o aiocop-allow.toml";

const ALLOWLIST_SEMANTICS: &str = "\
Adopt a blocking-call gate on a project that blocks today: record a run, print the allow-list,
paste it into pyproject.toml, and from then on only new blocking calls fail (raise_on_violations,
the pytest plugin). Remove an entry once its calls are fixed; entries that no longer allow anything
are reported as stale.

Each blocking event is attributed to the innermost frame of your code in its stack (not library
code, or under --app-root; else the innermost third-party frame), named by identity,
module:qualname (shop.views:CartView.total): no path, no line, so the entry survives edits and
moves. The entry allows the event names seen there, with their counts as a comment. An event is
allowed at run time when any frame of its stack has the entry's identity, so the block allows what
the recording saw. Events without a recorded stack (past the 50 kept in a slice) or without a frame
the allow-list can name (format 1.0 traces) are counted in the header comment, not covered.

Exit codes: 0 printed, 2 unusable input or output.";

/// `aiocop-analyze allowlist`.
#[derive(Clone, Debug, Args)]
pub struct AllowlistArgs {
    /// Trace files, directories or quoted glob patterns, merged.
    #[arg(required = true, value_name = "TRACE")]
    pub inputs: Vec<PathBuf>,

    /// Your code is under PATH (repeatable), as recorded; by default, any
    /// code that is not the standard library or a third-party package.
    #[arg(long = "app-root", value_name = "PATH")]
    pub app_roots: Vec<String>,

    /// Write to FILE instead of stdout ('-': stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// Trace files, directories (every trace inside, recursively) or quoted
    /// glob patterns ('traces/*.bin'), read in parallel and merged.
    #[arg(required = true, value_name = "TRACE")]
    pub inputs: Vec<PathBuf>,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// Only groups whose worst level is at least LEVEL.
    #[arg(long, value_name = "LEVEL", help_heading = "Filters")]
    pub min_severity: Option<MinSeverity>,

    /// Show the first N rows of each table (0: all) [default: 20 in a table
    /// or markdown, all in json or csv].
    #[arg(long, value_name = "N", allow_negative_numbers = true, help_heading = "Output")]
    pub top: Option<usize>,

    /// The column rows are ranked by (see --help for aliases and ties).
    #[arg(long, value_name = "COLUMN", default_value = "score", hide_possible_values = false, help_heading = "Output")]
    pub sort: SortColumn,

    /// Slices of MS milliseconds or more are long: the Loop time table says
    /// how much of their time a stack explains.
    #[arg(long, value_name = "MS", default_value_t = crate::loop_time::DEFAULT_LONG_MS, allow_negative_numbers = true, help_heading = "Loop time")]
    pub long_ms: f64,

    /// Two slices of a loop at most US microseconds apart are back to back:
    /// the loop did not get back to waiting for I/O between them (stalls).
    #[arg(long, value_name = "US", default_value_t = crate::stalls::DEFAULT_STALL_GAP_NS as f64 / 1000.0, allow_negative_numbers = true, help_heading = "Loop time")]
    pub stall_gap_us: f64,

    /// With --format csv, the table written: groups (blocking I/O), loop-time, stalls, routes (with --by route),
    /// tasks (the Tasks table, every row) or loop-lag (per second).
    #[arg(long, value_name = "TABLE", default_value = "groups", help_heading = "Output")]
    pub csv_table: CsvTable,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// What is read of each trace and how its slices are grouped: shared by
/// `report` and `diff`.
#[derive(Clone, Debug, Args)]
pub struct FilterArgs {
    /// What a row stands for: entry-point, function, app-frame, handler,
    /// event, task, route, stack or context:KEY.
    #[arg(long, value_name = "KEY", default_value = "entry-point", value_parser = parse_group_by, help_heading = "Grouping")]
    pub by: GroupBy,

    /// For --by app-frame: your code is under PATH (repeatable), as recorded
    /// (matched on whole path components).
    #[arg(long = "app-root", value_name = "PATH", help_heading = "Grouping")]
    pub app_roots: Vec<String>,

    /// Only slices over the threshold count in groups.
    #[arg(long, help_heading = "Filters")]
    pub exceeded_only: bool,

    /// Drop blocking events whose stack has a frame matching GLOB
    /// (repeatable): known and accepted blocking. Matched on
    /// 'path:line:function' as shown, on the path as shown and on the path as
    /// recorded; '*' matches '/' too ('*/logging/*', 'config.py:*:load').
    #[arg(long, value_name = "GLOB", help_heading = "Filters")]
    pub ignore: Vec<String>,

    /// Only traces whose label matches GLOB.
    #[arg(long, value_name = "GLOB", help_heading = "Filters")]
    pub label: Option<String>,

    /// Only slices starting at least SECONDS after their trace's start.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, allow_negative_numbers = true, help_heading = "Filters")]
    pub since: Option<f64>,

    /// Only slices starting less than SECONDS after their trace's start.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, allow_negative_numbers = true, help_heading = "Filters")]
    pub until: Option<f64>,

    /// Re-evaluate which slices are over the threshold at MS milliseconds
    /// (default: each trace's own threshold).
    #[arg(long, value_name = "MS", value_parser = parse_seconds, allow_negative_numbers = true, help_heading = "Filters")]
    pub threshold_ms: Option<f64>,
}

/// Where and how the result is written: shared by `report` and `diff`.
#[derive(Clone, Debug, Args)]
pub struct OutputArgs {
    /// A table for people, json to script against, csv, markdown for a pull
    /// request, or html: one self-contained page (with -o FILE).
    #[arg(long, value_name = "FORMAT", default_value = "table", help_heading = "Output")]
    pub format: ReportFormat,

    /// Write to FILE instead of stdout ('-': stdout).
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Colour: auto is on when stdout is a terminal, NO_COLOR is unset and TERM is not dumb.
    #[arg(long, value_name = "WHEN", default_value = "auto", help_heading = "Output")]
    pub color: ColorChoice,

    /// Threads decoding chunks (0: one per CPU).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub threads: usize,

    /// On a terminal, every column of the tables (by default, the main ones, fitted to its width).
    #[arg(long, help_heading = "Output")]
    pub wide: bool,

    /// No progress bar on stderr (it shows only on a terminal, for long reads).
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,

    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// How much memory a read may use: shared by every command that reads traces.
#[derive(Clone, Copy, Debug, Args)]
pub struct MemoryArgs {
    /// The most memory reading may take, for all files and threads together
    /// (both sides of a diff): decompressed chunks, and the strings, frames
    /// and stacks the traces define. A trace that needs more is refused
    /// (exit 2) rather than run the machine out of memory. SIZE in bytes, or
    /// with K, M, G (powers of 1024: 512M, 1GiB, 2G).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_memory: u64,
}

#[derive(Clone, Debug, Args)]
pub struct DiffArgs {
    /// The base side (the previous release): a trace file, a directory or a
    /// quoted glob ('base/*.bin': every worker of its run).
    #[arg(value_name = "BASE")]
    pub base: PathBuf,

    /// The new side (the candidate), likewise.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,

    /// One more input for the base side (repeatable).
    #[arg(long = "base", value_name = "TRACE")]
    pub more_base: Vec<PathBuf>,

    /// One more input for the new side (repeatable).
    #[arg(long = "new", value_name = "TRACE")]
    pub more_new: Vec<PathBuf>,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// Exit with 1 when a row is WHAT (repeatable), counting rows with at
    /// least --min-count blocking slices on the new side that are not
    /// one-time work: new-high (a new group of high severity), new (a new
    /// group beyond chance), regressed (a group), route (a regressed route:
    /// loop time or blocking events per request, whatever --by), or any
    /// (new, regressed or route).
    #[arg(long = "fail-on", value_name = "WHAT", help_heading = "Gate")]
    pub fail_on: Vec<FailOn>,

    /// A rate or p95 must rise (or fall) by at least PCT for a row to be
    /// regressed (or improved), as well as beyond chance.
    #[arg(long, value_name = "PCT", default_value = "20%", value_parser = parse_percent, allow_hyphen_values = true, help_heading = "Gate")]
    pub min_increase: f64,

    /// The chance that an unchanged build passes the gate: a change is
    /// beyond chance when its test, adjusted for every test of the diff
    /// (Holm-Bonferroni), has p <= 1 - P.
    #[arg(long, value_name = "P", default_value = "0.99", value_parser = parse_confidence, allow_hyphen_values = true, help_heading = "Gate")]
    pub confidence: f64,

    /// With --by route, a route's loop time per request must rise (or fall)
    /// by at least MS as well as by --min-increase and beyond chance; so
    /// must a task's mean wall time or ready-wait (diff's Tasks and loop lag).
    #[arg(long = "min-route-change-ms", value_name = "MS", default_value_t = crate::diff::DEFAULT_MIN_ROUTE_CHANGE_MS, value_parser = parse_seconds, allow_negative_numbers = true, help_heading = "Gate")]
    pub min_route_change_ms: f64,

    /// p95s are compared only when both sides have at least N slices of the group.
    #[arg(long = "min-slices-p95", value_name = "N", default_value_t = crate::diff::DEFAULT_MIN_SLICES_P95, allow_negative_numbers = true, help_heading = "Gate")]
    pub min_slices_p95: u64,

    /// Leave out the first SECONDS of each trace (start-up and warm-up work);
    /// the same as --since, named for what it is for.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_seconds, allow_hyphen_values = true, help_heading = "Gate")]
    pub skip_first_s: f64,

    /// Test and gate one-time work too: groups all of whose slices came
    /// through the import system (first-call imports), and groups seen in at
    /// most 2 slices on each side.
    #[arg(long, help_heading = "Gate")]
    pub gate_one_time: bool,

    /// A p95 elapsed time must also rise (or fall) by at least MS for a row to
    /// be regressed (or improved) by it: a busier machine adds milliseconds
    /// to every slice's tail (up to 5 ms in bench/gate_calibration.py's A/A
    /// runs), which no test of one run against another can tell from code.
    #[arg(long, value_name = "MS", default_value_t = crate::diff::DEFAULT_MIN_P95_CHANGE_MS, allow_hyphen_values = true, value_parser = parse_seconds, help_heading = "Gate")]
    pub min_p95_change_ms: f64,

    /// The gate ignores rows with fewer than N blocking slices on the new side.
    #[arg(long, value_name = "N", default_value_t = crate::diff::DEFAULT_MIN_COUNT, allow_negative_numbers = true, help_heading = "Gate")]
    pub min_count: u64,

    /// Score both sides with this side's event table (its weights, by event name).
    #[arg(long, value_name = "SIDE", default_value = "new", help_heading = "Grouping")]
    pub rescore: ScoreWith,

    /// Show unchanged rows too.
    #[arg(long, help_heading = "Output")]
    pub all: bool,

    /// With --format csv, the table written: groups, routes (with --by route) or tasks (tasks compared).
    #[arg(long, value_name = "TABLE", default_value = "groups", help_heading = "Output")]
    pub csv_table: CsvTable,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Clone, Debug, Args)]
pub struct InfoArgs {
    /// Trace files, directories or quoted glob patterns.
    #[arg(required = true, value_name = "TRACE")]
    pub inputs: Vec<PathBuf>,

    /// Text for people, or json.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: InfoFormat,

    /// Write to FILE instead of stdout ('-': stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Threads decoding chunks (0: one per CPU).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub threads: usize,

    /// No progress bar on stderr.
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub memory: MemoryArgs,
}

const TIMELINE_EXAMPLES: &str = "\
Examples:
  aiocop-analyze timeline trace.bin -o timeline.json
      Open timeline.json in ui.perfetto.dev (Open trace file), chrome://tracing or speedscope.app.
  aiocop-analyze timeline 'traces/*.bin' -o fleet.json.gz --min-ms 1
      Every worker of a run, one process each, slices under 1 ms left out, gzipped.
  aiocop-analyze timeline trace.bin --since 60 --until 90 --tracks task -o minute.json
      Half a minute of the run, one track per task.

Exit codes: 0 the timeline was written; 2 an input is unusable, or a usage error.";

const TIMELINE_SEMANTICS: &str = "\
What the timeline holds (Chrome trace event format, JSON):
  Each trace is a process, named by its command, role and label; each loop
  thread a track (--tracks task: each task a track of its own, callbacks
  that are not a task's step on their thread's track). Times are
  microseconds from the earliest trace's start (wall clock), so the workers
  of a fleet line up.
    slices            complete events named by what ran (the coroutine or
                      callback qualname), with args task, score and overran
                      (over the threshold, or --threshold-ms)
    blocking events   instant events at their offset in their slice, named
                      by the event, with args args (the call's arguments),
                      weight and stack (innermost frame first); --ignore
                      drops those with a matching frame
    CPU samples       instant events named by their innermost frame (cat
                      sample), with args stack, at the time the sampler was
                      due (recording's sampling), else spread evenly over
                      their slice
    stalls            complete events (cat stall) on a track beside their
                      thread's, spanning the back-to-back slices they are
                      made of (see `aiocop-analyze --help`)
  --min-ms leaves out shorter slices with their events and samples, and a
  note on stderr says how many; stalls are found from every slice.
  The file is written as the trace is read, chunk by chunk: memory holds a
  few chunks and the trace's strings, not its slices. A name ending in .gz
  is gzipped.";

const FLAMEGRAPH_EXAMPLES: &str = "\
Examples:
  aiocop-analyze flamegraph trace.bin -o flame.svg
      Open flame.svg in a browser: click a frame to zoom, Ctrl+F to search.
  aiocop-analyze flamegraph 'traces/*.bin' --ignore '*/logging/*' --since 10 -o flame.svg
  aiocop-analyze flamegraph trace.bin --format folded > stacks.folded
      Collapsed stacks (one 'frame;frame;... nanoseconds' line each) for other tools.
  aiocop-analyze flamegraph new.bin --diff base.bin -o diff.svg
      Red: more time than in the base release; blue: less.

Exit codes: 0 the flame graph was written; 2 an input is unusable, or a usage error.";

const FLAMEGRAPH_SEMANTICS: &str = "\
How the flame graph is made:
  Its width is the loop's busy time: every slice in the window gives its
  whole duration, in nanoseconds, as the report's Loop time table does
  (the two add up to the same busy time):
    - a slice with blocking events (not dropped by --ignore) splits its time
      between its events' stacks, by event count: the stack that blocked
      stands for the time of its slice;
    - else, a slice with CPU samples splits it between its samples' stacks,
      each sample weighing the time since the previous one of its slice (an
      equal share in traces before format 1.3); a sample that waited in C
      code gets a [native] frame under the function that called it;
    - any other slice (and one whose every event is ignored) is one frame,
      what ran.
  Every stack sits on a root frame, what ran (the coroutine or callback
  qualname), so a callback's width is its whole busy time; the loop's own
  frames, from the script's <module> to asyncio's Handle._run, are left out
  (what ran stands for them). Frames read 'function (path:line)', outermost
  at the bottom.
  --diff BASE draws this run (red: more time) against the base run (blue:
  less), the base's time scaled to this run's total, with frames named by
  their identity (module:qualname where the trace records it, else
  relative/path.py:function), so that a moved line or another deployment
  directory is the same frame. Only this run's stacks are drawn: one the
  base had alone has no width here (swap the sides to see it). Tooltips give
  each frame's time and, after the ';', its change as a share of the total.";

/// `aiocop-analyze timeline`.
#[derive(Clone, Debug, Args)]
pub struct TimelineArgs {
    /// Trace files, directories or quoted glob patterns: one process each.
    #[arg(required = true, value_name = "TRACE")]
    pub inputs: Vec<PathBuf>,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// Leave out slices shorter than MS milliseconds (with their events and samples).
    #[arg(long, value_name = "MS", default_value_t = 0.0, value_parser = parse_seconds, allow_negative_numbers = true, help_heading = "Filters")]
    pub min_ms: f64,

    /// One track per loop thread, or per task.
    #[arg(long, value_name = "TRACKS", default_value = "thread", help_heading = "Output")]
    pub tracks: Tracks,

    /// Write to FILE ('-': stdout); gzipped if FILE ends in .gz.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Threads decoding chunks (0: one per CPU).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub threads: usize,

    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// `aiocop-analyze flamegraph`.
#[derive(Clone, Debug, Args)]
pub struct FlamegraphArgs {
    /// Trace files, directories or quoted glob patterns, merged.
    #[arg(required = true, value_name = "TRACE")]
    pub inputs: Vec<PathBuf>,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// Draw the difference from BASE (the previous release's traces; repeatable).
    #[arg(long = "diff", value_name = "BASE", help_heading = "Output")]
    pub diff: Vec<PathBuf>,

    /// With --diff, a stack is coloured only when its share of the busy time
    /// changed beyond chance at confidence P (the diff gate's test,
    /// Holm-adjusted over the picture's stacks); the others are drawn white.
    #[arg(long, value_name = "P", default_value = "0.99", value_parser = parse_confidence, allow_hyphen_values = true, help_heading = "Output")]
    pub confidence: f64,

    /// With --diff, ... and by at least PCT of its share.
    #[arg(long, value_name = "PCT", default_value = "20%", value_parser = parse_percent, allow_hyphen_values = true, help_heading = "Output")]
    pub min_increase: f64,

    /// svg, or folded: collapsed stacks, one line each, with their nanoseconds
    /// (with --diff, the base's then this run's, every difference, untested).
    #[arg(long, value_name = "FORMAT", default_value = "svg", help_heading = "Output")]
    pub format: FlameFormat,

    /// The SVG's title.
    #[arg(long, value_name = "TEXT", help_heading = "Output")]
    pub title: Option<String>,

    /// Write to FILE instead of stdout ('-': stdout).
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Threads decoding chunks (0: one per CPU).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub threads: usize,

    #[command(flatten)]
    pub memory: MemoryArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlameFormat {
    Svg,
    Folded,
}

#[derive(Clone, Debug, Args)]
pub struct ExportArgs {
    /// Trace files, directories (every trace inside, recursively) or quoted
    /// glob patterns ('traces/*.bin'), exported in parallel.
    #[arg(required = true, value_name = "TRACE")]
    pub inputs: Vec<PathBuf>,

    /// The tables' format.
    #[arg(long, value_name = "FORMAT", default_value = "parquet")]
    pub format: ExportFormat,

    /// The directory the tables are written in: created if missing, refused
    /// if it holds anything (unless --overwrite).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,

    /// Replace the tables (slices/, events/, samples/, tasks/, traces/) of a
    /// directory that holds some; nothing else in it is touched, and a
    /// table's directory holding anything an export does not write (a
    /// project's own `tasks/`) is refused, not removed.
    #[arg(long)]
    pub overwrite: bool,

    /// Threads, each exporting one trace at a time (0: one per CPU).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub threads: usize,

    /// No summary line on stderr.
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub memory: MemoryArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Apache Parquet, zstd pages, dictionary-encoded strings, Hive partitions.
    Parquet,
}

const EXPORT_EXAMPLES: &str = "\
Examples:
  aiocop-analyze export --format parquet -o tables/ 'traces/*.bin'
      Every trace of a run; then, in DuckDB:
      SELECT route, count(*) FROM read_parquet('tables/slices/**/*.parquet', hive_partitioning = true) GROUP BY ALL;
  aiocop-analyze export -o tables/ --overwrite traces/
      The same directory again, its tables replaced.

Exit codes: 0 every trace was exported; 2 an input is unusable (its files are removed, the others' kept),
the output directory is not empty without --overwrite, or a usage error.";

const EXPORT_SEMANTICS: &str = "\
What the export holds (docs/parquet-export.md has every column):
  DIR/slices/   one row per slice: trace_id, slice_index (the slice's key), pid, thread, start
                (UTC, ns), start_offset_ns (since the trace's start), duration_ns, what ran, task,
                route (the context value `route`), context, exceeded, score, event and sample counts.
  DIR/events/   one row per blocking event: its slice's key, event, weight, args, offset_ns, time,
                stack_id, entry_point (the report's entry-point key), frames and identities
                (module:qualname), innermost first.
  DIR/samples/  one row per CPU sample: its slice's key, its stack as events have it, weight_ns,
                share and native (the report's split of the slice's time).
  DIR/traces/   one row per trace: the header's facts, the footer's counts, what was read.
  Each table is partitioned label=<label>/host=<host>/ (Hive style: read them with
  hive_partitioning); a trace's files are <pid>-<start_unix_ns>.parquet, then, past 262,144
  slices, <pid>-<start_unix_ns>.part00001.parquet and on (read them all: tables/slices/**/*.parquet),
  each with aiocop.schema_version and aiocop.table in its key-value metadata. A damaged chunk is skipped with one warning; the rows
  of the readable ones are written.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InfoFormat {
    #[value(alias = "table")]
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

fn parse_group_by(text: &str) -> Result<GroupBy, String> {
    text.parse()
}

/// A percentage, `20%` or `20`, as a fraction (0.2).
fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix('%').unwrap_or(text);
    match number.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value / 100.0),
        _ => Err(format!("'{text}' is not a percentage of at least 0 (like 20%)")),
    }
}

/// A probability strictly between 0 and 1, `0.99` or `99%`.
fn parse_confidence(text: &str) -> Result<f64, String> {
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    };
    match value {
        Ok(value) if value > 0.0 && value < 1.0 => Ok(value),
        _ => Err(format!("'{text}' is not a confidence between 0 and 1 (like 0.99 or 99%)")),
    }
}

/// The smallest `--max-memory`: less cannot read a trace's header.
const MIN_MAX_MEMORY: u64 = 1 << 20;

/// A size in bytes: `1073741824`, `512M`, `1GiB`, `1.5G` (K, M, G, T are
/// powers of 1024, with or without a trailing `B` or `iB`), at least 1 MiB.
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a size of at least 1M (like 512M or 2GiB)");
    let lower = text.trim().to_ascii_lowercase();
    let number = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, scale) = match number.char_indices().last() {
        Some((at, unit @ ('k' | 'm' | 'g' | 't'))) => {
            let power = "kmgt".find(unit).expect("one of kmgt") as i32 + 1;
            (&number[..at], 1024f64.powi(power))
        }
        _ => (number, 1.0),
    };
    let value = digits.trim().parse::<f64>().map_err(|_| bad())? * scale;
    if !(value.is_finite() && value >= MIN_MAX_MEMORY as f64) {
        return Err(bad());
    }
    Ok(value.min(u64::MAX as f64) as u64)
}

/// A finite, non-negative number.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("'{text}' is not a number of at least 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_take_units_of_1024() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("2097152"), Ok(2 << 20));
        assert_eq!(parse_size("64KB"), Err("'64KB' is not a size of at least 1M (like 512M or 2GiB)".to_owned()));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("nanM").is_err());
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("aiocop-analyze").chain(args.iter().copied()))
    }

    #[test]
    fn report_is_the_default_command() {
        let cli = parse(&["t.bin", "--by", "app-frame", "--top", "3"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.report.inputs, [PathBuf::from("t.bin")]);
        assert_eq!((cli.report.filters.by, cli.report.top), (GroupBy::AppFrame, Some(3)));
        let cli = parse(&["report", "t.bin", "u.bin", "--by", "context:endpoint"]).unwrap();
        let Some(Command::Report(args)) = cli.command else { panic!("not report") };
        assert_eq!(args.inputs.len(), 2);
        assert_eq!(args.filters.by, GroupBy::Context("endpoint".to_owned()));
        let cli = parse(&["info", "t.bin", "--format", "json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Info(InfoArgs { format: InfoFormat::Json, .. }))));
    }

    #[test]
    fn diff_takes_two_sides_and_a_gate() {
        let cli =
            parse(&["diff", "a.bin", "b/", "--base", "a2.bin", "--fail-on", "new-high", "--fail-on", "any"]).unwrap();
        let Some(Command::Diff(args)) = cli.command else { panic!("not diff") };
        assert_eq!((args.base, args.new), (PathBuf::from("a.bin"), PathBuf::from("b/")));
        assert_eq!(args.more_base, [PathBuf::from("a2.bin")]);
        assert_eq!(args.fail_on, [FailOn::NewHigh, FailOn::Any]);
        assert_eq!((args.min_increase, args.min_count, args.rescore, args.all), (0.2, 5, ScoreWith::New, false));
        assert_eq!(
            (args.confidence, args.min_slices_p95, args.skip_first_s, args.gate_one_time),
            (0.99, 50, 0.0, false)
        );
        let percent = |text: &str| {
            parse(&["diff", "a", "b", "--min-increase", text]).map(|c| match c.command {
                Some(Command::Diff(args)) => args.min_increase,
                _ => panic!("not diff"),
            })
        };
        assert_eq!(percent("50%").unwrap(), 0.5);
        assert_eq!(percent("5").unwrap(), 0.05);
        assert!(percent("-1%").is_err() && percent("much").is_err() && percent("-5%").is_err());
        let confidence = |text: &str| parse(&["diff", "a", "b", "--confidence", text]).map(|_| ());
        assert!(confidence("0.95").is_ok() && confidence("99.9%").is_ok());
        for bad in ["1.5", "1", "0", "-0.5", "nan", "high"] {
            assert_eq!(confidence(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        assert!(parse(&["diff", "a", "b", "--skip-first-s", "-1"]).is_err());
        assert!(parse(&["diff", "a", "b", "--skip-first-s", "2.5"]).is_ok());
        assert_eq!(parse(&["diff", "a.bin"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn defaults() {
        let args = parse(&["t.bin"]).unwrap().report;
        assert_eq!(args.filters.by, GroupBy::EntryPoint);
        assert_eq!(
            (args.sort, args.output.format, args.output.color),
            (SortColumn::Score, ReportFormat::Table, ColorChoice::Auto)
        );
        assert_eq!(
            (args.top, args.min_severity, args.filters.exceeded_only, args.output.threads),
            (None, None, false, 0)
        );
        assert_eq!((args.output.wide, args.output.quiet), (false, false));
        let args = parse(&["t.bin", "--wide", "-q", "--format", "html"]).unwrap().report;
        assert_eq!((args.output.wide, args.output.quiet, args.output.format), (true, true, ReportFormat::Html));
        assert!(parse(&["info", "t.bin", "--format", "html"]).is_err());
    }

    #[test]
    fn timeline_and_flamegraph_take_the_report_filters() {
        let cli =
            parse(&["timeline", "t.bin", "-o", "t.json.gz", "--min-ms", "1.5", "--since", "2", "--tracks", "task"])
                .unwrap();
        let Some(Command::Timeline(args)) = cli.command else { panic!("not timeline") };
        assert_eq!((args.min_ms, args.filters.since, args.tracks), (1.5, Some(2.0), Tracks::Task));
        assert_eq!(args.output, Some(PathBuf::from("t.json.gz")));
        let cli =
            parse(&["flamegraph", "new.bin", "--diff", "base.bin", "--format", "folded", "--ignore", "*/x/*"]).unwrap();
        let Some(Command::Flamegraph(args)) = cli.command else { panic!("not flamegraph") };
        assert_eq!((args.diff, args.format), (vec![PathBuf::from("base.bin")], FlameFormat::Folded));
        assert_eq!(args.filters.ignore, ["*/x/*"]);
        for bad in [&["timeline", "t.bin", "--min-ms", "-1"][..], &["timeline", "t.bin", "--tracks", "loop"]] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        // --by and what only groups rows are not theirs: hidden from their help.
        let help = Cli::command().find_subcommand_mut("flamegraph").unwrap().render_long_help().to_string();
        assert!(!help.contains("--by ") && !help.contains("--exceeded-only") && help.contains("--ignore"), "{help}");
        assert!(help.contains("what ran"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["t.bin", "--by", "file"][..],
            &["t.bin", "--since", "-1"],
            &["t.bin", "--threshold-ms", "nan"],
            &["t.bin", "--sort", "bogus"],
            &["t.bin", "--min-severity", "critical"],
            &["t.bin", "--format", "xml"],
            &[],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
        assert_eq!(parse(&["--version"]).unwrap_err().exit_code(), 0);
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
    }
}
