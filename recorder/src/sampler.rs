//! The CPU sampler: a watchdog thread that, while a monitored callback has
//! run longer than an arming delay, samples the stack of the thread running
//! it, so `cpu_blocking` events say where the time went.
//!
//! The thread is a Python `threading.Thread` named `aiocop-cpu-sampler`
//! (as in aiocop 1.2.1: listed by `threading.enumerate()`, faulthandler and
//! py-spy), started by the Python side; its body is [`run`], which releases
//! the GIL for good and runs natively.
//!
//! Each thread that runs monitored callbacks gets a slot; the hot path only
//! stores two atomics into it on entry and one on exit, plus a load to see
//! whether samples were taken. The watchdog sleeps without the GIL and takes
//! it only to capture a stack of a slice that is already old.

use crate::{
    clock, config,
    stacks::{self, StackId},
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::Cell;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Mutex;
use std::time::Duration;

const MAX_SLOTS: usize = 64;
/// The watchdog never sleeps less than this, whatever the configuration.
const MIN_SLEEP_NS: u64 = 1_000_000;
/// Idle wake-ups are at most this far apart.
const MAX_IDLE_NS: u64 = 50_000_000;

struct Slot {
    thread_ident: AtomicU64,
    /// Start of the running slice (its id), 0 when none runs.
    slice_start_ns: AtomicU64,
    /// The slice the samples belong to, 0 when there are none.
    sampled_slice: AtomicU64,
    samples: Mutex<Vec<StackId>>,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    thread_ident: AtomicU64::new(0),
    slice_start_ns: AtomicU64::new(0),
    sampled_slice: AtomicU64::new(0),
    samples: Mutex::new(Vec::new()),
};
static SLOTS: [Slot; MAX_SLOTS] = [EMPTY_SLOT; MAX_SLOTS];
static SLOTS_USED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

pub struct Settings {
    pub interval_ns: u64,
    pub arm_after_ns: Option<u64>,
    pub idle_interval_ns: Option<u64>,
    pub max_samples_per_slice: usize,
    pub trace_depth: usize,
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    interval_ns: 10_000_000,
    arm_after_ns: None,
    idle_interval_ns: None,
    max_samples_per_slice: 32,
    trace_depth: 20,
});
/// Sampling was started (the settings are in force).
static RUNNING: AtomicBool = AtomicBool::new(false);
/// A watchdog thread runs [`run`]'s loop.
static LOOP_RUNNING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

fn my_slot() -> Option<&'static Slot> {
    let index = MY_SLOT.get().or_else(|| {
        let index = SLOTS_USED.fetch_add(1, Relaxed);
        // Past MAX_SLOTS threads, later ones go unsampled (never wrong, only silent).
        (index < MAX_SLOTS).then(|| {
            SLOTS[index].thread_ident.store(current_thread_ident(), Relaxed);
            MY_SLOT.set(Some(index));
            index
        })
    })?;
    Some(&SLOTS[index])
}

fn current_thread_ident() -> u64 {
    // SAFETY: plain query of the OS thread id, as threading.get_ident().
    unsafe { pyo3::ffi::PyThread_get_thread_ident() as u64 }
}

/// Publishes the slice starting at `start_ns` to the watchdog.
pub fn slice_started(start_ns: u64) {
    if let Some(slot) = my_slot() {
        slot.slice_start_ns.store(start_ns, Release);
    }
}

/// Withdraws the slice and returns the samples taken during it.
pub fn slice_finished(start_ns: u64) -> Vec<StackId> {
    let Some(slot) = my_slot() else { return Vec::new() };
    slot.slice_start_ns.store(0, Release);
    if slot.sampled_slice.load(Acquire) != start_ns {
        return Vec::new();
    }
    let Ok(mut samples) = slot.samples.try_lock() else { return Vec::new() };
    slot.sampled_slice.store(0, Relaxed);
    std::mem::take(&mut *samples)
}

pub fn is_started() -> bool {
    RUNNING.load(Relaxed)
}

/// Puts these settings in force; returns false if sampling was started
/// already. The caller then starts a thread running [`run`].
pub fn start(settings: Settings) -> bool {
    if RUNNING.swap(true, Relaxed) {
        return false;
    }
    if let Ok(mut current) = SETTINGS.lock() {
        *current = settings;
    }
    STOP.store(false, Relaxed);
    true
}

/// The watchdog thread's body: samples until [`stop`], without the GIL.
/// Returns at once if another thread runs it already.
pub fn run(py: Python<'_>) {
    if !RUNNING.load(Relaxed) || LOOP_RUNNING.swap(true, Relaxed) {
        return;
    }
    py.detach(watchdog_loop);
    LOOP_RUNNING.store(false, Relaxed);
}

/// Threads do not survive fork: drop the parent's slices, which do not
/// exist here; the Python side starts a new watchdog thread.
pub fn after_fork_in_child() {
    for slot in &SLOTS {
        slot.slice_start_ns.store(0, Relaxed);
        slot.sampled_slice.store(0, Relaxed);
        slot.thread_ident.store(0, Relaxed);
    }
    SLOTS_USED.store(0, Relaxed);
    MY_SLOT.set(None);
    LOOP_RUNNING.store(false, Relaxed);
}

/// Asks the watchdog to stop before the interpreter finalizes, so it never
/// tries to take the GIL of a dying interpreter.
pub fn stop() {
    STOP.store(true, Relaxed);
}

/// (arm_after_ns, idle_ns): derived from the live slow-task threshold unless
/// set, so the order of the setup calls never matters.
fn effective_timing(settings: &Settings) -> (u64, u64) {
    let arm = settings.arm_after_ns.unwrap_or_else(|| (config::threshold_ns() / 2).max(1_000_000));
    let idle = settings.idle_interval_ns.unwrap_or_else(|| arm.max(settings.interval_ns).min(MAX_IDLE_NS));
    (arm, idle)
}

fn watchdog_loop() {
    let mut sleep_ns = MAX_IDLE_NS;
    while !STOP.load(Relaxed) {
        std::thread::sleep(Duration::from_nanos(sleep_ns.max(MIN_SLEEP_NS)));
        let (interval_ns, arm_ns, idle_ns, max_samples, depth) = match SETTINGS.lock() {
            Ok(s) => {
                let (arm, idle) = effective_timing(&s);
                (s.interval_ns, arm, idle, s.max_samples_per_slice, s.trace_depth)
            }
            Err(_) => return,
        };
        let now = clock::now_ns();
        let used = SLOTS_USED.load(Relaxed).min(MAX_SLOTS);
        let mut any_running = false;
        for slot in &SLOTS[..used] {
            let start = slot.slice_start_ns.load(Acquire);
            if start == 0 {
                continue;
            }
            any_running = true;
            if now.saturating_sub(start) >= arm_ns && !STOP.load(Relaxed) {
                sample(slot, start, max_samples, depth);
            }
        }
        sleep_ns = if any_running { interval_ns } else { idle_ns };
    }
}

fn sample(slot: &Slot, start: u64, max_samples: usize, depth: usize) {
    // SAFETY: only called while the interpreter is initialized and not
    // finalizing: stop() is called from atexit, before finalization.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return;
    }
    Python::attach(|py| {
        let stack =
            thread_frame(py, slot.thread_ident.load(Relaxed)).and_then(|frame| stacks::capture_from(py, &frame, depth));
        // The slice may have ended while we waited for the GIL: its frames
        // would then belong to whatever runs now.
        let (Some(stack), true) = (stack, slot.slice_start_ns.load(Acquire) == start) else { return };
        let Ok(mut samples) = slot.samples.try_lock() else { return };
        if slot.sampled_slice.load(Relaxed) != start {
            samples.clear();
        }
        if samples.len() < max_samples {
            samples.push(stack);
        }
        slot.sampled_slice.store(start, Release);
    });
}

fn thread_frame(py: Python<'_>, ident: u64) -> Option<Bound<'_, PyAny>> {
    let frames = py.import("sys").ok()?.call_method0("_current_frames").ok()?;
    let frames = frames.cast::<PyDict>().ok()?;
    frames.get_item(ident).ok().flatten()
}
