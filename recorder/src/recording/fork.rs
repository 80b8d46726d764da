//! Fork handling: the recording's locks across `fork()`, and a child's
//! recording of its own.
//!
//! Place in the flow (record -> trace file): beside it. Before a fork, the
//! locks the writer thread could be holding (stop, file creation, stack
//! registry, buffer, string and task registry) are taken, and released
//! after it on both sides, so the child never inherits one locked by a
//! thread that does not exist there. A child of a recording process drops
//! the parent's buffered slices and records to a fresh file of its own.

use super::buffer::{self, Buffer};
use super::registry::{self, TaskChanges};
use super::session::{self, RECORDER, STOPPING};
use super::{settings, writer};
use crate::{stacks, trace_file};
use std::cell::RefCell;
use std::sync::MutexGuard;

type HeldLocks = (MutexGuard<'static, ()>, MutexGuard<'static, ()>, MutexGuard<'static, Buffer>, registry::HeldForFork);

thread_local! {
    static HELD_FOR_FORK: RefCell<Option<HeldLocks>> = const { RefCell::new(None) };
}

/// Before fork: take the locks the writer thread could be holding, so the
/// child gets them unlocked and consistent.
pub fn before_fork() {
    let stopping = STOPPING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let creating = trace_file::hold_for_fork();
    stacks::hold_for_fork();
    let buffer = buffer::hold_for_fork();
    let registry = registry::hold_for_fork();
    HELD_FOR_FORK.with(|held| *held.borrow_mut() = Some((stopping, creating, buffer, registry)));
}

/// In the parent, after fork: release the locks.
pub fn after_fork_in_parent() {
    HELD_FOR_FORK.with(|held| held.borrow_mut().take());
    stacks::release_after_fork();
}

/// In the child: release the locks; if the parent was recording, the child
/// records to a fresh file of its own (its pid in `{pid}`), dropping the
/// parent's buffered slices, which belong to the parent's file.
pub fn after_fork_in_child() -> Option<String> {
    HELD_FOR_FORK.with(|held| {
        if let Some((_, _, mut buffer, (_, mut tasks))) = held.borrow_mut().take() {
            *buffer = Buffer::default();
            *tasks = TaskChanges::default();
        }
    });
    trace_file::close_inherited();
    stacks::release_after_fork();
    let mut recorder = RECORDER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let parent = recorder.take()?;
    // The parent's writer thread does not exist here: forget the channel
    // it reports on (its state may be mid-update) rather than drop it.
    std::mem::forget(parent.done);
    let mut settings = parent.settings;
    settings.process.parent_pid = std::os::unix::process::parent_id();
    let role = if settings.process.role == "forkserver" { "forkserver child" } else { "fork child" };
    settings.process.role = role.to_owned();
    if !settings.path_template.contains("{pid}") {
        // Never write over the parent's file.
        settings.path_template.push_str(".{pid}");
    }
    settings::set_active(false);
    match session::spawn_writer(settings) {
        Ok(mut running) => {
            let path = running.path.clone();
            let moved_aside = running.moved_aside.take();
            *recorder = Some(running);
            drop(recorder);
            if let Some(notice) = moved_aside {
                writer::log_warning(&notice);
            }
            Some(path)
        }
        Err(message) => Some(format!("error: {message}")),
    }
}
