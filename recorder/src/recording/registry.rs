//! The string and task registry: the names the hot path refers to by id.
//!
//! Place in the flow (record -> trace file): between describing a slice and
//! buffering it. Describing a slice (`what_ran`, `describe`) turns what ran
//! and the arguments of its blocking events into shared string ids here and
//! announces task names by token; the writer thread (`writer`) reads the
//! strings and the announcements back and defines them in the file.
//!
//! Task names: a slice carries its task's token, not its name. The first
//! time a task runs in a recording, `what_ran` announces its name with the
//! token; the writer defines the name in the file at the task's first slice
//! and forgets it when `what_ran` forgets the task (dead, or past its
//! bound). So neither side keeps a table of every name a server ever made.
//!
//! Announcements are taken by the writer after it has taken the slices of
//! a flush: a task is announced before its first slice is buffered, and
//! forgotten after its last, so a flush's announcements always cover its
//! slices and a forgotten name is never needed again.

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// The token of no task: the slice ran a plain callback.
pub const NO_TASK: u32 = u32::MAX;

/// Strings the hot path refers to by id (what ran, task names, argument
/// summaries): it assigns the ids, the writer defines them in the file. A
/// repeated string costs a hash look-up and no allocation, and is never
/// freed by another thread than the one that allocated it.
#[derive(Default)]
pub(super) struct SharedStrings {
    ids: FxHashMap<Box<str>, u32>,
    values: Vec<Arc<str>>,
}

static SHARED_STRINGS: Mutex<Option<SharedStrings>> = Mutex::new(None);

/// Distinct strings kept at most (argument summaries of programs that open
/// a new path every time); later ones are all recorded as `OVERFLOW_TEXT`.
const MAX_SHARED_STRINGS: usize = 500_000;
const OVERFLOW_TEXT: &str = "<more distinct values than aiocop keeps>";

/// The shared string id of `text`, assigned at its first use.
pub fn shared_string_id(text: &str) -> u32 {
    let Ok(mut guard) = SHARED_STRINGS.lock() else { return 0 };
    let shared = guard.get_or_insert_with(SharedStrings::default);
    if let Some(&id) = shared.ids.get(text) {
        return id;
    }
    let text = if shared.values.len() >= MAX_SHARED_STRINGS { OVERFLOW_TEXT } else { text };
    if let Some(&id) = shared.ids.get(text) {
        return id;
    }
    let id = shared.values.len() as u32;
    shared.values.push(Arc::from(text));
    shared.ids.insert(text.into(), id);
    id
}

/// The shared strings from `first` on, for the writer.
pub(super) fn shared_strings_since(first: usize) -> Vec<Arc<str>> {
    SHARED_STRINGS
        .lock()
        .ok()
        .and_then(|guard| guard.as_ref().map(|shared| shared.values.get(first..).unwrap_or_default().to_vec()))
        .unwrap_or_default()
}

/// What the writer has not heard yet about the tasks slices name.
#[derive(Default)]
pub(super) struct TaskChanges {
    /// Tasks named since the writer last looked, by token; each is
    /// announced before its first slice is buffered, to each recording once.
    pub announced: Vec<(u32, Arc<str>)>,
    /// Tokens of tasks the recorder forgot (dead, or past its bound): the
    /// writer may forget their names once the slices it holds are written.
    pub forgotten: Vec<u32>,
}

static TASK_CHANGES: Mutex<TaskChanges> = Mutex::new(TaskChanges { announced: Vec::new(), forgotten: Vec::new() });

/// Announced task names a flush keeps at most (a writer stalled while a
/// program makes tasks); past it, their slices are recorded without a name.
const MAX_ANNOUNCED_PER_FLUSH: usize = 1 << 20;

/// Tells the writer the name of the task with `token`, before its first
/// slice of the current recording.
pub fn announce_task(token: u32, name: Arc<str>) {
    if let Ok(mut changes) = TASK_CHANGES.lock() {
        if changes.announced.len() < MAX_ANNOUNCED_PER_FLUSH {
            changes.announced.push((token, name));
        }
    }
}

/// Tells the writer that no slice will name these tasks any more.
pub fn forget_tasks(tokens: impl Iterator<Item = u32>) {
    if let Ok(mut changes) = TASK_CHANGES.lock() {
        if changes.forgotten.len() < MAX_ANNOUNCED_PER_FLUSH {
            changes.forgotten.extend(tokens);
        }
    }
}

/// What was announced and forgotten since the writer last asked.
pub(super) fn take_task_changes() -> TaskChanges {
    TASK_CHANGES.lock().map(|mut changes| std::mem::take(&mut *changes)).unwrap_or_default()
}

/// Counts recordings started in this process (0: none yet): a task
/// announced to an earlier one is announced again.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current recording's generation (see `announce_task`).
pub fn generation() -> u64 {
    GENERATION.load(Relaxed)
}

/// A new recording starts: announcements of earlier ones are dropped, and
/// names announced from here on are this recording's.
pub(super) fn start_generation() {
    if let Ok(mut changes) = TASK_CHANGES.lock() {
        *changes = TaskChanges::default();
    }
    GENERATION.fetch_add(1, Relaxed);
}

/// The registry's locks, held across a fork (see `fork`).
pub(super) type HeldForFork = (MutexGuard<'static, Option<SharedStrings>>, MutexGuard<'static, TaskChanges>);

pub(super) fn hold_for_fork() -> HeldForFork {
    let strings = SHARED_STRINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let tasks = TASK_CHANGES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    (strings, tasks)
}
