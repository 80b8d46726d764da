//! The aiocop model shared by the recorder (the `aiocop._native` Python
//! extension) and the analyzer: which audit events count as blocking and how
//! much each weighs, how weights add up to a severity, how frames are shown,
//! and the interner that gives repeated values small ids.
//!
//! This crate has no Python and no I/O in it, so everything here is plain
//! data and pure functions that both sides can share without drifting.

pub mod events;
pub mod frame;
pub mod intern;
pub mod severity;

pub use events::{BlockingEvent, EventSource, BLOCKING_EVENTS};
pub use intern::Interner;
pub use severity::{level_from_score, SeverityLevel};
