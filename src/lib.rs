//! The aiocop model shared by the recorder (the `aiocop._native` Python
//! extension) and the analyzer: which audit events count as blocking and how
//! much each weighs, how weights add up to a severity, how frames are shown,
//! the interner that gives repeated values small ids, and the trace file:
//! its records, its byte layout, its writer and its reader.
//!
//! This crate has no Python in it, so that both sides share one definition
//! of everything they must agree on and cannot drift. Its only I/O is the
//! trace writer (to any `io::Write`) and reader (of a file or a buffer).

pub mod budget;
pub mod chunk_decoder;
pub mod chunk_encoder;
pub mod error;
pub mod events;
pub mod format;
pub mod frame;
pub mod intern;
pub mod reader;
pub mod records;
pub mod severity;
pub mod weights;
pub mod writer;

pub use budget::{MemoryBudget, DEFAULT_MEMORY_LIMIT};
pub use chunk_decoder::{PureSlice, SliceVisitor};
pub use error::{ReadError, WriteError};
pub use events::{BlockingEvent, EventSource, BLOCKING_EVENTS};
pub use intern::Interner;
pub use reader::{Dictionary, TraceFile};
pub use severity::{level_from_score, SeverityLevel};
pub use weights::{apportion, sample_weights, samples_native, waited_in_native_code};
pub use writer::TraceWriter;

#[cfg(test)]
mod test_chunks;
#[cfg(test)]
mod trace_tests;
