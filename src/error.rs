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
    /// The header frame, first after the file header.
    Header,
    /// The chunk with this index, counted from 0.
    Chunk(usize),
    /// The footer frame, last.
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
    /// The file cannot be opened or read.
    #[error("cannot read '{path}': {source}")]
    Io {
        /// The file, as named to the reader.
        path: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },

    /// The file has no bytes at all.
    #[error("'{path}' is empty, not an aiocop trace")]
    Empty {
        /// The file, as named to the reader.
        path: String,
    },

    #[error("'{path}' does not look like an aiocop trace (bad magic{})", looks_like_suffix(.looks_like))]
    /// The file does not start with the trace magic.
    NotATrace {
        /// The file, as named to the reader.
        path: String,
        /// What its first bytes suggest it is instead (`"a PNG image"`), if anything.
        looks_like: Option<&'static str>,
    },

    /// The file ends before its header frame is whole: there is nothing to read.
    #[error("'{path}' ends inside {part} ({len} bytes): it is not a complete aiocop trace")]
    TruncatedHeader {
        /// The file, as named to the reader.
        path: String,
        /// Which part of the header it ends in.
        part: &'static str,
        /// The file's length in bytes.
        len: u64,
    },

    #[error(
        "'{path}' is trace format {major}.{minor}, newer than this build of aiocop reads (format {}.x): upgrade aiocop to read it",
        FORMAT_MAJOR
    )]
    /// The file's format major version is newer than this build reads.
    TooNew {
        /// The file, as named to the reader.
        path: String,
        /// The file's format major version.
        major: u16,
        /// The file's format minor version.
        minor: u16,
    },

    #[error(
        "'{path}' is trace format {major}.{minor}, older than this build of aiocop reads (format {}.x): read it with the aiocop that wrote it",
        FORMAT_MAJOR
    )]
    /// The file's format major version is older than this build reads.
    TooOld {
        /// The file, as named to the reader.
        path: String,
        /// The file's format major version.
        major: u16,
        /// The file's format minor version.
        minor: u16,
    },

    #[error("'{path}': {frame} is corrupt: its checksum is {got:#010x}, the frame header says {expected:#010x}")]
    /// A frame's payload does not match its checksum.
    ChecksumMismatch {
        /// The file, as named to the reader.
        path: String,
        /// The frame in question.
        frame: FrameRef,
        /// The CRC-32 the frame header declares.
        expected: u32,
        /// The CRC-32 of the payload as read.
        got: u32,
    },

    #[error("'{path}' is corrupt: the frame at byte {offset} declares a {field} of {len} bytes, more than the {max} allowed")]
    /// A frame header declares a length past the format's limit.
    AbsurdLength {
        /// The file, as named to the reader.
        path: String,
        /// Where the frame header starts, in bytes from the start of the file.
        offset: u64,
        /// Which length it is.
        field: &'static str,
        /// The length declared, in bytes.
        len: u64,
        /// The most the format allows, in bytes.
        max: u64,
    },

    #[error("'{path}' is corrupt: {problem} at byte {offset}")]
    /// A frame header cannot be read as one.
    BadFrame {
        /// The file, as named to the reader.
        path: String,
        /// Where the frame header starts, in bytes from the start of the file.
        offset: u64,
        /// What is wrong with it.
        problem: String,
    },

    #[error("'{path}': {frame} is compressed with codec {codec}, which this build of aiocop cannot read")]
    /// A frame is compressed with a codec this build does not know.
    UnknownCodec {
        /// The file, as named to the reader.
        path: String,
        /// The frame in question.
        frame: FrameRef,
        /// The codec byte of its header.
        codec: u8,
    },

    #[error("'{path}': {frame} cannot be decompressed: {problem}")]
    /// A frame's payload does not decompress.
    Decompress {
        /// The file, as named to the reader.
        path: String,
        /// The frame in question.
        frame: FrameRef,
        /// What the decompressor said.
        problem: String,
    },

    #[error("'{path}': {frame} cannot be decoded: {problem}")]
    /// A frame's decompressed payload does not decode.
    Decode {
        /// The file, as named to the reader.
        path: String,
        /// The frame in question.
        frame: FrameRef,
        /// What the decoder said.
        problem: String,
    },

    /// The read's memory budget cannot hold what `frame` needs.
    #[error("'{path}': {frame} {problem}: raise --max-memory to read it")]
    OverMemoryLimit {
        /// The file, as named to the reader.
        path: String,
        /// The frame in question.
        frame: FrameRef,
        /// What it needed, against what was in use and the limit.
        problem: crate::budget::OverBudget,
    },

    /// The path names a FIFO, a device or another special file, not a regular file.
    #[error("'{path}' is not a regular file but {kind}: a trace is read from a file (save a stream to one first)")]
    NotARegularFile {
        /// The file, as named to the reader.
        path: String,
        /// What it is instead, in words.
        kind: &'static str,
    },

    /// A chunk was asked for past the last one.
    #[error("'{path}' has {count} chunks: there is no chunk {index}")]
    NoSuchChunk {
        /// The file, as named to the reader.
        path: String,
        /// The chunk asked for, counted from 0.
        index: usize,
        /// How many chunks the file has.
        count: usize,
    },
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
    /// Writing to the output failed.
    #[error("write failed: {0}")]
    Io(#[from] io::Error),

    #[error("cannot encode {what}: {source}")]
    /// A payload cannot be encoded.
    Encode {
        /// What was being written (`"a chunk"`, `"the trace header"`).
        what: &'static str,
        /// What bincode said.
        #[source]
        source: bincode::error::EncodeError,
    },

    #[error("zstd cannot compress {what}: {source}")]
    /// A payload cannot be compressed.
    Compress {
        /// What was being written (`"a chunk"`, `"the trace header"`).
        what: &'static str,
        /// What zstd said.
        #[source]
        source: io::Error,
    },

    #[error("{what} encodes to {len} bytes, more than the {max} a frame may hold, and cannot be split")]
    /// A payload is larger than a frame may hold.
    TooLarge {
        /// What was being written (`"a chunk"`, `"the trace header"`).
        what: &'static str,
        /// Its encoded length, in bytes.
        len: u64,
        /// The most a frame may hold, in bytes.
        max: u64,
    },

    /// An earlier write failed: the writer writes nothing more.
    #[error("an earlier write failed, so nothing more is written: the trace is readable up to its last whole chunk")]
    Poisoned,
}
