//! When each callback became ready to run, and which task was running
//! when it was scheduled: a slice's ready-wait (the loop lag it met) and a
//! task's creation and parent (format 1.4, `TaskTiming`).
//!
//! What makes a callback ready, on stock asyncio (CPython 3.11 to 3.15
//! alike, `Lib/asyncio/base_events.py`):
//! - `call_soon` (a task's steps and wake-ups, futures' done callbacks: C
//!   tasks and futures call the loop's `call_soon` by name, so an instance
//!   attribute is what they call): ready when scheduled. While recording,
//!   a loop's `call_soon` is a stand-in (`crate::call_soon`) that stamps the
//!   handle it returns.
//! - timers (`call_later`, `call_at`, `asyncio.sleep`): ready when due, at
//!   `TimerHandle._when`, on `loop.time()`, which is `time.monotonic()`:
//!   CLOCK_MONOTONIC, the clock `crate::clock` counts on.
//! - I/O callbacks (`_process_events` adds them without `call_soon`) and
//!   `call_soon_threadsafe`: ready at the latest when the iteration's poll
//!   ended (`crate::iterations` tells it).
//!
//! On other loops (uvloop) every `call_soon`, `call_later`, `call_at` and
//! `call_soon_threadsafe` already goes through `monitor::schedule_patch`,
//! which passes the ready time along with the callback while recording.
//!
//! A task's first step is scheduled by `call_soon` from `Task.__init__`: its
//! stamp is the task's creation, and the task running then its parent.
//!
//! A callback scheduled by a callback that is not a task's step (a timer's
//! `futures._set_result_unless_cancelled`, which `asyncio.sleep` schedules;
//! a protocol's `data_received` setting a future) was ready when that
//! callback was: a task woken by a late timer met the timer's lateness, not
//! only its own wait behind the wake-up. So `call_soon` from such a slice
//! stamps the slice's own ready time.

use crate::clock;
use pyo3::ffi;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::OnceLock;

pub use aiocop_trace::records::{READY_POLL, READY_SCHEDULED, READY_TIMER, READY_UNKNOWN};

/// When a slice's callback became ready, and why.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ready {
    /// On `clock::now_ns`'s scale; 0 if unknown.
    pub ready_ns: u64,
    /// One of the `READY_*` constants.
    pub since: u8,
    /// The address of the task that was running when it was scheduled (0:
    /// none, or not known).
    pub parent: usize,
}

impl Ready {
    pub const UNKNOWN: Ready = Ready { ready_ns: 0, since: READY_UNKNOWN, parent: 0 };
}

/// When a `call_soon` handle was scheduled, and by which task.
#[derive(Clone, Copy)]
struct Stamp {
    scheduled_ns: u64,
    parent: usize,
}

/// Stamps kept at most per thread (a thread whose loop's polls are not
/// seen drops those of cancelled handles only as later ones run); past
/// this many, all are forgotten.
const MAX_STAMPS: usize = 1 << 16;

/// Handles looked past, at most, for the one about to run: stamped before
/// it and skipped by the loop (cancelled). Past this many, a handle's
/// stamp is not found, and its ready time is its iteration's poll.
const MAX_SKIPPED: usize = 64;

/// The stamps of `call_soon` handles not yet run, by address, in the order
/// they were stamped, which is the order their loop runs them in
/// (`_run_once` takes its ready queue first in, first out): the handle
/// about to run is at the front, found without hashing.
///
/// The `due` at the front were stamped before the loop's last poll ended:
/// the iteration going on runs them, or skips them if they were cancelled.
/// At the next poll those still here were skipped, and are dropped: a
/// cancelled handle's stamp lives one iteration.
struct Stamps {
    queue: VecDeque<(usize, Stamp)>,
    due: usize,
}

impl Stamps {
    fn push(&mut self, handle: usize, stamp: Stamp) {
        if self.queue.len() >= MAX_STAMPS {
            self.queue.clear();
            self.due = 0;
        }
        self.queue.push_back((handle, stamp));
    }

    /// The stamp of `handle`, about to run; the stamps before it (of
    /// handles the loop skipped) are dropped. Looks among the due ones
    /// if the thread's loop polls (`polled`), else among all.
    fn take(&mut self, handle: usize, polled: bool) -> Option<Stamp> {
        let searched = if polled { self.due } else { self.queue.len() };
        let at = self.queue.iter().take(searched.min(MAX_SKIPPED + 1)).position(|(h, _)| *h == handle)?;
        if at > 0 {
            self.queue.drain(..at); // a drain costs tens of instructions even when empty
        }
        self.due = self.due.saturating_sub(at + 1);
        self.queue.pop_front().map(|(_, stamp)| stamp)
    }

    /// The loop polled: what was due and did not run was skipped, and
    /// what was stamped since is due.
    fn poll_ended(&mut self) {
        if self.due > 0 {
            self.queue.drain(..self.due);
        }
        self.due = self.queue.len();
    }
}

struct ThreadReady {
    /// `call_soon` handles not yet run.
    stamps: Stamps,
    /// When the loop's last poll on this thread ended (0: no poll seen).
    last_poll_end_ns: u64,
    /// The task whose step is running on this thread (0: none).
    running_task: usize,
    /// When the callback running on this thread (not a task's step) became
    /// ready (0: a task's step, or unknown): what it schedules was ready then.
    running_ready_ns: u64,
    /// Recorded slices running on this thread (loops may nest).
    slices_running: u32,
}

thread_local! {
    static THREAD: RefCell<ThreadReady> = const {
        RefCell::new(ThreadReady {
            stamps: Stamps { queue: VecDeque::new(), due: 0 },
            last_poll_end_ns: 0,
            running_task: 0,
            running_ready_ns: 0,
            slices_running: 0,
        })
    };
}

/// Notes that the loop of this thread ended a poll at `end_ns`.
#[inline]
pub fn poll_ended(end_ns: u64) {
    THREAD.with(|state| {
        if let Ok(mut state) = state.try_borrow_mut() {
            state.last_poll_end_ns = end_ns;
            state.stamps.poll_ended();
        }
    });
}

/// What runs on this thread: the task whose step it is (0: none), or when
/// the callback that is not a step became ready (0: unknown).
#[derive(Clone, Copy, Debug, Default)]
pub struct Running {
    task: usize,
    ready_ns: u64,
}

/// Notes the slice that starts on this thread; returns what ran before, to
/// be put back with `leave` when it ends (loops may nest).
#[inline]
pub fn enter(task: usize, ready: &Ready) -> Running {
    let running = Running { task, ready_ns: if task == 0 { ready.ready_ns } else { 0 } };
    THREAD.with(|state| {
        state.try_borrow_mut().map_or(Running::default(), |mut state| {
            let outer = Running { task: state.running_task, ready_ns: state.running_ready_ns };
            (state.running_task, state.running_ready_ns) = (running.task, running.ready_ns);
            state.slices_running += 1;
            outer
        })
    })
}

/// Puts back what `enter` returned.
#[inline]
pub fn leave(outer: Running) {
    THREAD.with(|state| {
        if let Ok(mut state) = state.try_borrow_mut() {
            (state.running_task, state.running_ready_ns) = (outer.task, outer.ready_ns);
            state.slices_running = state.slices_running.saturating_sub(1);
        }
    });
}

/// The task whose step runs on this thread (0: none), and whether a
/// recorded slice runs on it at all.
pub fn running_task() -> (usize, bool) {
    THREAD.with(|state| state.try_borrow().map_or((0, false), |state| (state.running_task, state.slices_running > 0)))
}

/// What a callback scheduled now is stamped with: when it became ready
/// (now, or when the callback scheduling it did) and the running task.
fn stamp_now() -> Stamp {
    let now_ns = clock::now_ns();
    THREAD.with(|state| {
        state.try_borrow().map_or(Stamp { scheduled_ns: now_ns, parent: 0 }, |state| state.stamp_at(now_ns))
    })
}

impl ThreadReady {
    /// What a callback this thread schedules at `now_ns` is stamped with.
    fn stamp_at(&self, now_ns: u64) -> Stamp {
        Stamp {
            scheduled_ns: if self.running_ready_ns != 0 { self.running_ready_ns.min(now_ns) } else { now_ns },
            parent: self.running_task,
        }
    }
}

/// Stamps a handle `call_soon` just returned (see `crate::call_soon`).
pub fn stamp(handle: *mut ffi::PyObject) {
    let now_ns = clock::now_ns();
    THREAD.with(|state| {
        if let Ok(mut state) = state.try_borrow_mut() {
            let stamp = state.stamp_at(now_ns);
            state.stamps.push(handle as usize, stamp);
        }
    });
}

/// When a stock asyncio handle about to run became ready. Only called while
/// recording; reads no attribute but a timer's `_when`.
pub fn ready_of_handle(py: Python<'_>, handle: &Bound<'_, PyAny>) -> Ready {
    let address = handle.as_ptr() as usize;
    let found = THREAD.with(|state| {
        let mut state = state.try_borrow_mut().ok()?;
        let polled = state.last_poll_end_ns != 0;
        match state.stamps.take(address, polled) {
            Some(stamp) => Some(Ready { ready_ns: stamp.scheduled_ns, since: READY_SCHEDULED, parent: stamp.parent }),
            None => Some(Ready { ready_ns: state.last_poll_end_ns, since: READY_POLL, parent: 0 }),
        }
    });
    let ready = found.unwrap_or(Ready::UNKNOWN);
    if ready.since == READY_SCHEDULED {
        return ready;
    }
    if let Some(due_ns) = timer_due_ns(py, handle) {
        return Ready { ready_ns: due_ns, since: READY_TIMER, parent: 0 };
    }
    if ready.ready_ns == 0 {
        return Ready::UNKNOWN; // no poll seen on this thread: not a watched loop
    }
    ready
}

/// `TimerHandle._when` of a timer handle, on `clock::now_ns`'s scale.
fn timer_due_ns(py: Python<'_>, handle: &Bound<'_, PyAny>) -> Option<u64> {
    let timer_type = timer_handle_type(py)?;
    // SAFETY: a type check of a live object against a live type.
    if unsafe { ffi::PyObject_TypeCheck(handle.as_ptr(), timer_type.cast()) } == 0 {
        return None;
    }
    let when_seconds: f64 = handle.getattr(pyo3::intern!(py, "_when")).ok()?.extract().ok()?;
    Some(monotonic_seconds_to_clock_ns(when_seconds))
}

/// `asyncio.events.TimerHandle`, looked up once.
fn timer_handle_type(py: Python<'_>) -> Option<*mut ffi::PyObject> {
    // A PyOnceLock: an import may release the GIL (see stacks::first_traceable).
    static TYPE: pyo3::sync::PyOnceLock<Option<usize>> = pyo3::sync::PyOnceLock::new();
    let found = TYPE.get_or_init(py, || {
        let events = py.import("asyncio.events").ok()?;
        let timer = events.getattr("TimerHandle").ok()?;
        // The class lives as long as the module, which is never unloaded.
        Some(timer.into_ptr() as usize)
    });
    found.map(|address| address as *mut ffi::PyObject)
}

/// A time on CLOCK_MONOTONIC in seconds (`time.monotonic()`,
/// `loop.time()`) on `clock::now_ns`'s scale (0 if before its origin).
pub fn monotonic_seconds_to_clock_ns(seconds: f64) -> u64 {
    let raw_ns = (seconds * 1e9) as i128;
    (raw_ns - i128::from(clock_offset_ns())).max(0) as u64
}

/// CLOCK_MONOTONIC minus `clock::now_ns`, measured once (both count on the
/// same clock, CLOCK_MONOTONIC).
fn clock_offset_ns() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let ours = clock::now_ns();
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let raw = now.tv_sec * 1_000_000_000 + now.tv_nsec;
        raw - ours as i64
    })
}

/// When a timer a patched loop (uvloop) schedules is due, as the loop
/// counts it: passed to the scheduled callback in place of a number, and
/// set from the handle the loop returns (`TimerHandle.when()`). uvloop
/// rounds the delay to milliseconds and adds it to libuv's loop time, a
/// millisecond clock that may lag the precise one by a clock tick, so now
/// + delay is up to a few milliseconds later than when its timer fires (its
/// wait was undercounted, often to 0), and a delay under half a millisecond
/// is no timer at all but a `call_soon`.
#[pyclass(module = "aiocop._native", frozen)]
pub struct TimerDue {
    ready_ns: AtomicU64,
    since: AtomicU8,
    /// When it was scheduled: its ready time if the loop made no timer.
    scheduled_ns: u64,
    parent: usize,
}

impl TimerDue {
    /// Due as estimated before the loop made the handle.
    pub fn estimated(ready: Ready) -> TimerDue {
        TimerDue {
            ready_ns: AtomicU64::new(ready.ready_ns),
            since: AtomicU8::new(ready.since),
            scheduled_ns: clock::now_ns(),
            parent: ready.parent,
        }
    }

    /// Takes the due time from the handle the loop returned: its `when()`
    /// (on `loop.time()`, CLOCK_MONOTONIC for uvloop and asyncio alike); a
    /// handle without one is not a timer (uvloop's `call_later` of a delay
    /// that rounds to 0 ms is a `call_soon`): ready when scheduled.
    pub fn learn_from(&self, handle: &Bound<'_, PyAny>) {
        let py = handle.py();
        let Ok(when) = handle.getattr(pyo3::intern!(py, "when")) else {
            self.ready_ns.store(self.scheduled_ns, Relaxed);
            self.since.store(READY_SCHEDULED, Relaxed);
            return;
        };
        match when.call0().and_then(|seconds| seconds.extract::<f64>()) {
            Ok(seconds) => self.ready_ns.store(monotonic_seconds_to_clock_ns(seconds), Relaxed),
            Err(error) => drop(error), // kept: the estimate
        }
    }

    pub fn ready(&self) -> Ready {
        Ready { ready_ns: self.ready_ns.load(Relaxed), since: self.since.load(Relaxed), parent: self.parent }
    }
}

/// When a callback a patched loop (uvloop) schedules now will be ready:
/// now for `call_soon`, after the delay (`call_later`'s first argument),
/// or at the time (`call_at`'s, on `loop.time()`), with the running task;
/// a timer's is then taken from its handle (`TimerDue`).
pub fn ready_when_scheduled(rule: ReadyRule, first_argument: Option<&Bound<'_, PyAny>>) -> Ready {
    let Stamp { scheduled_ns, parent } = stamp_now();
    let now_ns = clock::now_ns();
    let seconds = || first_argument.and_then(|value| value.extract::<f64>().ok());
    let (ready_ns, since) = match rule {
        ReadyRule::Now => (scheduled_ns, READY_SCHEDULED),
        ReadyRule::AfterDelay => match seconds() {
            Some(delay) => (now_ns.saturating_add((delay.max(0.0) * 1e9) as u64), READY_TIMER),
            None => return Ready::UNKNOWN,
        },
        ReadyRule::At => match seconds() {
            Some(when) => (monotonic_seconds_to_clock_ns(when), READY_TIMER),
            None => return Ready::UNKNOWN,
        },
    };
    Ready { ready_ns, since, parent }
}

/// How a patched scheduling method's callback becomes ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyRule {
    /// `call_soon`, `call_soon_threadsafe`.
    Now,
    /// `call_later(delay, ...)`.
    AfterDelay,
    /// `call_at(when, ...)`.
    At,
}

#[cfg(test)]
mod tests {
    use super::{Stamp, Stamps};
    use std::collections::VecDeque;

    fn stamp(scheduled_ns: u64) -> Stamp {
        Stamp { scheduled_ns, parent: 0 }
    }

    #[test]
    fn a_handle_about_to_run_is_found_at_the_front_and_the_skipped_ones_before_it_are_dropped() {
        let mut stamps = Stamps { queue: VecDeque::new(), due: 0 };
        for handle in [10, 11, 12] {
            stamps.push(handle, stamp(handle as u64));
        }
        stamps.poll_ended();
        // 10 was cancelled: the loop skips it and runs 11.
        assert_eq!(stamps.take(11, true).map(|s| s.scheduled_ns), Some(11));
        assert_eq!(stamps.queue.len(), 1);
        // A handle that was not stamped (an I/O callback) is not found.
        assert!(stamps.take(99, true).is_none());
        assert_eq!(stamps.take(12, true).map(|s| s.scheduled_ns), Some(12));
        assert!(stamps.queue.is_empty());
    }

    #[test]
    fn a_cancelled_handles_stamp_is_dropped_at_the_poll_after_its_iteration() {
        let mut stamps = Stamps { queue: VecDeque::new(), due: 0 };
        stamps.push(10, stamp(1)); // then cancelled: never runs
        stamps.poll_ended(); // due in this iteration, skipped by the loop
        stamps.push(20, stamp(2)); // scheduled in this iteration
        stamps.poll_ended();
        assert_eq!(stamps.queue.len(), 1, "10's stamp is gone");
        // A handle made later at 10's address is not read as 10.
        assert!(stamps.take(10, true).is_none());
        assert_eq!(stamps.take(20, true).map(|s| s.scheduled_ns), Some(2));
    }

    #[test]
    fn a_handle_stamped_in_this_iteration_is_not_due_until_the_next_poll() {
        let mut stamps = Stamps { queue: VecDeque::new(), due: 0 };
        stamps.push(10, stamp(1));
        assert!(stamps.take(10, true).is_none(), "not due: the loop runs it after its next poll");
        // A thread whose loop's polls are not seen looks among all.
        assert_eq!(stamps.take(10, false).map(|s| s.scheduled_ns), Some(1));
    }
}
