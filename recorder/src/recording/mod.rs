//! Recording: every monitored slice, with its blocking events, into a trace
//! file (format and writer: the `aiocop-trace` crate).
//!
//! The flow, one way: the monitor times a slice and, while `is_active`,
//! hands it here as a value, already described (`crate::describe`: ids and
//! numbers, named through `registry`); `buffer` keeps it until the writer
//! thread (`writer`) turns a flush's worth into a compressed chunk of the
//! trace file. `settings` holds the switch and
//! what the recording was started with, `session` starts and stops it, and
//! `fork` carries it across `fork()`. Nothing here calls back into the
//! monitor, `describe` or `what_ran`; `what_ran` feeds `registry` one way.
//!
//! Locks: the buffer lock, the registry's and the stack registry's are held
//! for short, bounded work only, and never while waiting for the GIL.

mod buffer;
mod fork;
pub mod registry;
mod session;
mod settings;
mod writer;

pub use buffer::{
    record_poll, record_slice, DescribedEvent, DescribedSlice, EagerStart, EndedEagerly, RouteIds, SliceDetail,
    TaskCreation,
};
pub use fork::{after_fork_in_child, after_fork_in_parent, before_fork};
pub use registry::shared_string_id;
pub use session::{current_path, start, stop, stop_without_the_gil};
pub use settings::{is_active, records_context, Settings};
