//! What can go wrong reading or writing a trace.
//!
//! Every message is one line that names the file and says what is wrong with
//! it in words a user can act on ("does not look like an aiocop trace",
//! "newer than this build reads: upgrade aiocop"), never a bare decoder
//! error. A file cut short by a crash is not an error (see
//! [`TraceFile::cut_short`](crate::reader::TraceFile::cut_short)).

use crate::format::FORMAT_MAJOR;
use std::fmt;
use std::io;

/// Which frame of a file a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameRef {
    Header,
    Chunk(usize),
    Footer,
}

impl fmt::Display for FrameRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameRef::Header => f.write_str("the header frame"),
            FrameRef::Chunk(index) => write!(f, "chunk {index}"),
            FrameRef::Footer => f.write_str("the footer"),
        }
    }
}

/// Why a trace cannot be opened, or one of its frames cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },

    #[error("'{path}' is empty, not an aiocop trace")]
    Empty { path: String },

    #[error("'{path}' does not look like an aiocop trace (bad magic{})", looks_like_suffix(.looks_like))]
    NotATrace { path: String, looks_like: Option<&'static str> },

    /// The file ends before its header frame is whole: there is nothing to read.
    #[error("'{path}' ends inside {part} ({len} bytes): it is not a complete aiocop trace")]
    TruncatedHeader { path: String, part: &'static str, len: u64 },

    #[error(
        "'{path}' is trace format {major}.{minor}, newer than this build of aiocop reads (format {}.x): upgrade aiocop to read it",
        FORMAT_MAJOR
    )]
    TooNew { path: String, major: u16, minor: u16 },

    #[error(
        "'{path}' is trace format {major}.{minor}, older than this build of aiocop reads (format {}.x): read it with the aiocop that wrote it",
        FORMAT_MAJOR
    )]
    TooOld { path: String, major: u16, minor: u16 },

    #[error("'{path}': {frame} is corrupt: its checksum is {got:#010x}, the frame header says {expected:#010x}")]
    ChecksumMismatch { path: String, frame: FrameRef, expected: u32, got: u32 },

    #[error("'{path}' is corrupt: the frame at byte {offset} declares a {field} of {len} bytes, more than the {max} allowed")]
    AbsurdLength { path: String, offset: u64, field: &'static str, len: u64, max: u64 },

    #[error("'{path}' is corrupt: {problem} at byte {offset}")]
    BadFrame { path: String, offset: u64, problem: String },

    #[error("'{path}': {frame} is compressed with codec {codec}, which this build of aiocop cannot read")]
    UnknownCodec { path: String, frame: FrameRef, codec: u8 },

    #[error("'{path}': {frame} cannot be decompressed: {problem}")]
    Decompress { path: String, frame: FrameRef, problem: String },

    #[error("'{path}': {frame} cannot be decoded: {problem}")]
    Decode { path: String, frame: FrameRef, problem: String },

    /// The read's memory budget cannot hold what `frame` needs.
    #[error("'{path}': {frame} {problem}: raise --max-memory to read it")]
    OverMemoryLimit { path: String, frame: FrameRef, problem: crate::budget::OverBudget },

    #[error("'{path}' is not a regular file but {kind}: a trace is read from a file (save a stream to one first)")]
    NotARegularFile { path: String, kind: &'static str },

    #[error("'{path}' has {count} chunks: there is no chunk {index}")]
    NoSuchChunk { path: String, index: usize, count: usize },
}

fn looks_like_suffix(looks_like: &Option<&'static str>) -> String {
    looks_like.map(|what| format!("; it looks like {what}")).unwrap_or_default()
}

impl ReadError {
    /// Whether the read's memory budget refused it: the whole read is over,
    /// not only this chunk.
    pub fn is_over_memory_limit(&self) -> bool {
        matches!(self, ReadError::OverMemoryLimit { .. })
    }

    /// The file the error is about.
    pub fn path(&self) -> &str {
        match self {
            ReadError::Io { path, .. }
            | ReadError::Empty { path }
            | ReadError::NotATrace { path, .. }
            | ReadError::TruncatedHeader { path, .. }
            | ReadError::TooNew { path, .. }
            | ReadError::TooOld { path, .. }
            | ReadError::ChecksumMismatch { path, .. }
            | ReadError::AbsurdLength { path, .. }
            | ReadError::BadFrame { path, .. }
            | ReadError::UnknownCodec { path, .. }
            | ReadError::Decompress { path, .. }
            | ReadError::Decode { path, .. }
            | ReadError::OverMemoryLimit { path, .. }
            | ReadError::NotARegularFile { path, .. }
            | ReadError::NoSuchChunk { path, .. } => path,
        }
    }
}

/// Why a trace could not be written. The writer's `W` has no name, so these
/// messages name none: the caller adds the path (`cannot record to '{path}': {error}`).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("write failed: {0}")]
    Io(#[from] io::Error),

    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: bincode::error::EncodeError,
    },

    #[error("zstd cannot compress {what}: {source}")]
    Compress {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("{what} encodes to {len} bytes, more than the {max} a frame may hold, and cannot be split")]
    TooLarge { what: &'static str, len: u64, max: u64 },

    #[error("an earlier write failed, so nothing more is written: the trace is readable up to its last whole chunk")]
    Poisoned,
}
