//! `aiocop-analyze`: ranked reports of where an asyncio program blocked its
//! event loop, read from aiocop traces (the `aiocop-trace` crate).
//!
//! All of the program is here, so that it can be tested through its parts;
//! the `aiocop-analyze` binary (`src/main.rs`) only calls [`main_with_args`].
//! The Python wheel ships that binary as an executable beside the
//! `aiocop._native` extension, which does not link this crate.
//!
//! How a report is made (the `--help` says the same to users):
//!
//! - A *slice* is one run of a callback or task step. A slice *appears in* a
//!   group when one of its blocking events (not dropped by `--ignore`) has
//!   the group's key; its score there is the sum of those events' weights,
//!   from the trace header's `event_table` (so traces are re-scored offline
//!   with the weights they were recorded with), and it counts once however
//!   many events it has there. A score's level is high from 50, medium from
//!   10, low below (`aiocop_trace::severity`); a group's worst level is the
//!   highest over its slices. Its elapsed times are its slices'.
//! - Keys (`--by`): see [`keys::GroupBy`]; `app-frame` rules are in
//!   [`paths::is_library_path`] and [`paths::is_app_path`].
//! - CPU-blocking slices (over the threshold, no blocking event at all) have
//!   no severity, so rather than sink to the bottom of a severity ranking
//!   they get a ranking of their own, by total elapsed time, keyed by their
//!   most frequent CPU sample at the same `--by`.
//! - `--label`, `--since`/`--until`, `--threshold-ms` and `--ignore` change
//!   what is read, and the totals with it; `--exceeded-only`,
//!   `--min-severity` and `--top` only choose rows.
//!
//! - The report opens with where the loop's time went ([`loop_time`]): every
//!   slice's time attributed to groups of the same keys, adding up to the
//!   busy time; and with its stalls ([`stalls`]): runs of back-to-back
//!   slices of a loop at least the threshold long. Keys inside a lazy
//!   import are the importer's ([`resolve`]).
//! - `diff` compares two sides group by group, per 1,000 slices, matching
//!   rows by identity ([`identity`]) and deciding their status with the
//!   tests of [`stats`]: see [`diff`].
//!
//! - `timeline` writes every slice, blocking event, sample and stall as
//!   Chrome trace event JSON, streaming ([`timeline`]); `flamegraph` draws
//!   the loop's busy time by stack, attributed as the Loop time table
//!   attributes it, with `inferno` ([`flamegraph`]).
//! - `allowlist` prints a `[tool.aiocop]` allow-list allowing every blocking
//!   event the traces saw, by the identity of its innermost app frame
//!   ([`allowlist`]).
//!
//! The flow, module by module (the recorder writes a trace file; then
//! read -> aggregate -> resolve -> report/diff/views). Each module uses only
//! those of its own stage or before (`.ci/check_structure.py` fails on an
//! import circle):
//!
//! - command line: [`cli`] (clap) becomes library options in [`app`] alone,
//!   which runs each command; [`input`] expands the inputs, [`error`] says
//!   what went wrong.
//! - read: [`read`] reads the files of one side, streaming and in parallel,
//!   into a [`read::Side`].
//! - aggregate: [`aggregate`] folds each file's chunks by ids, slices keyed
//!   by [`signature`], with the loop's time ([`loop_time`]), the stalls
//!   ([`stalls`]) and elapsed times ([`durations`]).
//! - resolve: [`resolve`] turns signatures into groups keyed by text: the
//!   `--by` key ([`keys`]) of a stack's facts ([`group`]), frame identities
//!   ([`identity`]) and the rules about paths ([`paths`]).
//! - report/diff/views: [`report`] ranks, [`diff`] compares two sides (with
//!   [`stats`]); [`timeline`], [`flamegraph`], [`info`] and [`allowlist`] are other views;
//!   [`export`] writes reports and diffs in each format, in [`units`].
//!
//! Exit codes: [`EXIT_OK`] (0), [`EXIT_UNUSABLE`] (2: an unusable input, a
//! usage error, an output that cannot be written), [`EXIT_GATE_FAILED`] (1:
//! `diff --fail-on` found what it fails on). A closed stdout ends the run
//! with 0.

pub mod aggregate;
pub mod allowlist;
pub mod app;
pub mod cli;
pub mod diff;
pub mod durations;
pub mod error;
pub mod export;
pub mod flamegraph;
pub mod group;
pub mod identity;
pub mod info;
pub mod input;
pub mod keys;
pub mod loop_time;
pub mod paths;
pub mod read;
pub mod report;
pub mod resolve;
pub mod route_diff;
pub mod routes;
pub mod signature;
pub mod stalls;
pub mod stats;
pub mod tables;
pub mod task_diff;
pub mod tasks;
pub mod timeline;
pub mod units;

pub use cli::Cli;
pub use error::AnalyzeError;

use clap::Parser;
use std::ffi::OsString;
use std::io::Write;

pub const EXIT_OK: i32 = 0;
/// `diff --fail-on` found what it fails on.
pub const EXIT_GATE_FAILED: i32 = 1;
pub const EXIT_UNUSABLE: i32 = 2;

/// Runs the command line `args` (the program name first), writing to stdout
/// and stderr, and returns the exit code.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout (exit 0), usage errors to stderr
            // (exit 2) as one line, as every other error: a CI log shows it whole.
            let code = error.exit_code();
            if let Some(line) = usage_error_line(&error) {
                let _ = writeln!(std::io::stderr().lock(), "aiocop-analyze: {line}");
                return code;
            }
            if let Err(e) = error.print() {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return EXIT_UNUSABLE;
                }
            }
            return code;
        }
    };
    match app::run(cli) {
        Ok(app::Outcome::Done) => EXIT_OK,
        Ok(app::Outcome::GateFailed) => EXIT_GATE_FAILED,
        Err(AnalyzeError::BrokenPipe) => EXIT_OK,
        Err(error) => {
            let _ = writeln!(std::io::stderr().lock(), "aiocop-analyze: {error}");
            error.exit_code()
        }
    }
}

/// The one line a usage error is shown as (clap's first line, without its
/// `error: `); `None` for help and version, which are shown whole.
fn usage_error_line(error: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    // The first paragraph: `... were not provided:` lists the arguments on the lines after it.
    let text = error.render().to_string();
    let paragraph: Vec<&str> =
        text.lines().map(str::trim).skip_while(|l| l.is_empty()).take_while(|l| !l.is_empty()).collect();
    let line = paragraph.join(" ");
    Some(line.strip_prefix("error: ").unwrap_or(&line).to_owned())
}
