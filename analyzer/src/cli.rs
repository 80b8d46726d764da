//! The command line: clap derive structs whose doc comments are the help.
//! They are turned into library options in one place, [`crate::run`].

use crate::export::ReportFormat;
use crate::group::GroupBy;
use crate::report::{MinSeverity, SortColumn};
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
(1 is reserved for a failing gate.)";

const REPORT_SEMANTICS: &str = "\
How a report is made:
  A slice is one run of a callback or task step on the event loop. A slice
  appears in a group when one of its blocking events has the group's key;
  its score there is the sum of those events' weights, taken from the
  trace's own event table, and it counts once however many events it has
  there. The level of a score is high from 50, medium from 10, low below.
  A group's worst level is the highest over its slices; its elapsed times
  (total, p50, p95, p99, max) are those of its slices.

  Keys (--by):
    entry-point    the innermost frame of the event's stack, path:line:function
    app-frame      the innermost frame in your own code: not the standard
                   library (lib/pythonX.Y, <frozen ...>), not site-packages or
                   dist-packages; with --app-root, the innermost frame under
                   one of the roots. The entry point if there is none.
    event          the event's name (open, time.sleep, socket.getaddrinfo)
    task           what the slice ran: the coroutine's qualname for a task
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

  Sort columns (--sort; numbers rank high first, keys alphabetically, ties
  go to the higher score, then the longer total time, then the key):
    key, slices, events, score (severity_score), level (severity_level),
    exceeded (over), total (total_ms), p50, p95, p99, max (p50_ms ... max_ms)";

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

    /// Describe trace files: header, counts, time span, sizes, whether cut short.
    #[command(after_help = "Examples:\n  aiocop-analyze info trace.bin\n  aiocop-analyze info traces/ --format json")]
    Info(InfoArgs),
}

#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// Trace files, directories (every trace inside, recursively) or quoted
    /// glob patterns ('traces/*.bin'), read in parallel and merged.
    #[arg(required = true, value_name = "TRACE")]
    pub inputs: Vec<PathBuf>,

    /// What a row stands for: entry-point, app-frame, event, task, stack or
    /// context:KEY.
    #[arg(long, value_name = "KEY", default_value = "entry-point", value_parser = parse_group_by, help_heading = "Grouping")]
    pub by: GroupBy,

    /// For --by app-frame: your code is under PATH (repeatable), as recorded
    /// (matched on whole path components).
    #[arg(long = "app-root", value_name = "PATH", help_heading = "Grouping")]
    pub app_roots: Vec<String>,

    /// Only groups whose worst level is at least LEVEL.
    #[arg(long, value_name = "LEVEL", help_heading = "Filters")]
    pub min_severity: Option<MinSeverity>,

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
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, help_heading = "Filters")]
    pub since: Option<f64>,

    /// Only slices starting less than SECONDS after their trace's start.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, help_heading = "Filters")]
    pub until: Option<f64>,

    /// Re-evaluate which slices are over the threshold at MS milliseconds
    /// (default: each trace's own threshold).
    #[arg(long, value_name = "MS", value_parser = parse_seconds, help_heading = "Filters")]
    pub threshold_ms: Option<f64>,

    /// Show the first N rows of each table (0: all) [default: 20 in a table
    /// or markdown, all in json or csv].
    #[arg(long, value_name = "N", help_heading = "Output")]
    pub top: Option<usize>,

    /// The column rows are ranked by (see --help for aliases and ties).
    #[arg(long, value_name = "COLUMN", default_value = "score", hide_possible_values = false, help_heading = "Output")]
    pub sort: SortColumn,

    /// A table for people, json to script against, csv, or markdown for a pull request.
    #[arg(long, value_name = "FORMAT", default_value = "table", help_heading = "Output")]
    pub format: ReportFormat,

    /// Write to FILE instead of stdout ('-': stdout).
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Colour: auto is on when stdout is a terminal, NO_COLOR is unset and TERM is not dumb.
    #[arg(long, value_name = "WHEN", default_value = "auto", help_heading = "Output")]
    pub color: ColorChoice,

    /// Threads decoding chunks (0: one per CPU).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
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
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("aiocop-analyze").chain(args.iter().copied()))
    }

    #[test]
    fn report_is_the_default_command() {
        let cli = parse(&["t.bin", "--by", "app-frame", "--top", "3"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.report.inputs, [PathBuf::from("t.bin")]);
        assert_eq!((cli.report.by, cli.report.top), (GroupBy::AppFrame, Some(3)));
        let cli = parse(&["report", "t.bin", "u.bin", "--by", "context:endpoint"]).unwrap();
        let Some(Command::Report(args)) = cli.command else { panic!("not report") };
        assert_eq!(args.inputs.len(), 2);
        assert_eq!(args.by, GroupBy::Context("endpoint".to_owned()));
        let cli = parse(&["info", "t.bin", "--format", "json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Info(InfoArgs { format: InfoFormat::Json, .. }))));
    }

    #[test]
    fn defaults() {
        let args = parse(&["t.bin"]).unwrap().report;
        assert_eq!(args.by, GroupBy::EntryPoint);
        assert_eq!((args.sort, args.format, args.color), (SortColumn::Score, ReportFormat::Table, ColorChoice::Auto));
        assert_eq!((args.top, args.min_severity, args.exceeded_only, args.threads), (None, None, false, 0));
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
