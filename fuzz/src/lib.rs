//! What the fuzz targets share: the analyzer's whole pipeline run on one
//! trace, through its command line, as a user would run it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A directory of this process's own for the traces and outputs.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("aiocop-fuzz-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

/// How to group, chosen by the input so that every key gets its turn.
const GROUPINGS: &[&str] = &["entry-point", "function", "app-frame", "event", "task", "stack", "context:user"];

/// Runs every view of the analyzer on `trace` (as a file) and on its first
/// half (a trace cut short, the other side of a diff): the report in every
/// format and CSV table, `info`, `diff` in every format with every gate,
/// `timeline` and `flamegraph` (alone and as a diff). None may panic; each
/// exits 0, 1 (a gate failed) or 2 (unusable input); a JSON output parses.
pub fn run_pipeline(trace: &[u8]) {
    run_views(trace, true);
}

/// A quicker [`run_pipeline`]: each view once, in JSON or folded text,
/// for targets that spend their time building the trace.
pub fn run_each_view(trace: &[u8]) {
    run_views(trace, false);
}

fn run_views(trace: &[u8], every_format: bool) {
    let dir = scratch_dir();
    let (whole, half) = (dir.join("whole.bin"), dir.join("half.bin"));
    fs::write(&whole, trace).expect("write the trace");
    fs::write(&half, &trace[..trace.len() / 2]).expect("write the half trace");
    let by = GROUPINGS[trace.len() % GROUPINGS.len()];
    let out = dir.join("out");
    let (whole, half, out) = (whole.to_str().unwrap(), half.to_str().unwrap(), out.to_str().unwrap());
    let common = ["-j", "2", "-o", out];

    if !every_format {
        run(&["report", whole, "--by", by, "--format", "json"], &common, true);
        run(&["info", whole, "--format", "json"], &common, true);
        run(&["diff", half, whole, "--by", by, "--format", "json", "--fail-on", "any"], &common, true);
        run(&["timeline", whole], &common, true);
        run(&["flamegraph", whole, "--diff", half, "--format", "folded"], &common, false);
        return;
    }
    for format in ["table", "json", "csv", "markdown", "html"] {
        run(&["report", whole, "--by", by, "--format", format], &common, format == "json");
    }
    for table in ["loop-time", "stalls"] {
        run(&["report", whole, "--format", "csv", "--csv-table", table, "--threshold-ms", "0.5"], &common, false);
    }
    run(&["info", whole, "--format", "json"], &common, true);
    run(&["info", whole, half], &common, false);
    for format in ["table", "json", "markdown", "html"] {
        run(&["diff", half, whole, "--by", by, "--format", format, "--fail-on", "any", "--all"], &common, format == "json");
    }
    run(&["timeline", whole, "--tracks", "task"], &common, true);
    run(&["timeline", whole, half, "--min-ms", "0.001"], &common, true);
    run(&["flamegraph", whole], &common, false);
    run(&["flamegraph", whole, "--diff", half, "--format", "folded"], &common, false);
}

fn run(args: &[&str], common: &[&str], json_out: bool) {
    let argv = std::iter::once("aiocop-analyze").chain(args.iter().copied()).chain(common.iter().copied());
    let code = aiocop_analyze::main_with_args(argv);
    assert!(matches!(code, 0..=2), "{args:?} exited {code}");
    if json_out && code == 0 {
        let text = fs::read(common[common.len() - 1]).expect("the output");
        serde_json::from_slice::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{args:?} wrote JSON that does not parse: {e}"));
    }
}
