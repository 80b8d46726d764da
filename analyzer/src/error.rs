//! What stops a run, as one line that names the file or the option at fault.
//!
//! Every variant is exit code 2 (an unusable input, or a usage error clap
//! did not catch) except a closed stdout, which ends the run quietly with 0.

use aiocop_trace::ReadError;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The trace crate's messages name the file and say what is wrong.
    #[error("{0}")]
    Read(#[from] ReadError),

    #[error("'{path}': no such file or directory")]
    Missing { path: String },

    #[error("'{path}': no aiocop trace in this directory")]
    NoTraceInDirectory { path: String },

    #[error("'{pattern}': no file matches this pattern")]
    NoMatch { pattern: String },

    /// `what` names where the pattern was given: an option, or "trace
    /// pattern" for an input.
    #[error("{what} '{pattern}': not a valid pattern: {problem}")]
    BadPattern { what: &'static str, pattern: String, problem: String },

    #[error("{error}; no chunk of it could be read (it has {chunks})")]
    NothingReadable { error: ReadError, chunks: usize },

    /// A damaged frame header before the first chunk: nothing to report.
    #[error("{damage}; no chunk of it comes before the damage")]
    DamagedBeforeAnyChunk { damage: String },

    #[error("no trace has a label matching '{pattern}' (labels: {labels})")]
    NoLabelMatch { pattern: String, labels: String },

    #[error("{0}")]
    Usage(String),

    #[error("cannot write '{path}': {source}")]
    Output {
        path: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot start {threads} threads: {problem}")]
    Threads { threads: usize, problem: String },

    /// stdout was closed (`aiocop-analyze t.bin | head`): not an error.
    #[error("stdout is closed")]
    BrokenPipe,
}

impl AnalyzeError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AnalyzeError::BrokenPipe => crate::EXIT_OK,
            _ => crate::EXIT_UNUSABLE,
        }
    }
}
