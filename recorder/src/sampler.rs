//! The CPU sampler: a watchdog thread that, while a monitored callback has
//! run longer than an arming delay, samples the stack of the thread running
//! it, so `cpu_blocking` events say where the time went.
//!
//! The thread is a Python `threading.Thread` named `aiocop-cpu-sampler`
//! (as in aiocop 1.2.1: listed by `threading.enumerate()`, faulthandler and
//! py-spy), started by the Python side; its body is [`run`], which releases
//! the GIL for good and runs natively.
//!
//! While recording, the same thread also takes recording's own samples:
//! every slice that runs at least `after_ns` gets a stack about every
//! `interval_ns`, so that a trace says where the loop's time went in slices
//! too short to be slow (the monitor's samples keep aiocop 1.2.1's arming
//! rules). Taking the GIL to sample would wait for the loop thread to give
//! it up, which it does only every `sys.getswitchinterval()` (5 ms): too
//! late for a 3 ms slice. So:
//! - For the main thread, the watchdog asks the interpreter to run
//!   [`take_pending_sample`] there, with `Py_AddPendingCall` (no GIL or
//!   thread state needed): it runs at the loop thread's next eval-breaker
//!   check, inside the busy code, which then walks its own stack. On 3.13
//!   that is all it takes. On 3.11 and 3.12 a pending call queued from
//!   another thread does not set the main thread's eval breaker (it is
//!   computed for the calling thread), so the watchdog then sets it
//!   ([`eval_breaker`]).
//! - For loops off the main thread, and where [`eval_breaker`] is not
//!   usable, the watchdog takes the GIL. On 3.11 it lowers the switch
//!   interval to [`SAMPLING_SWITCH_INTERVAL_US`] for the time it waits: the
//!   loop thread is asked to drop the GIL after that much, not 5 ms. On 3.12
//!   (whose `_PyEval_SetSwitchInterval` needs a thread state) and 3.13
//!   (which does not export it) it waits the program's switch interval:
//!   those long slices get fewer samples (see the README for what each way
//!   gives), and each costs the loop thread a GIL hand-off.
//!
//! Each thread that runs monitored callbacks gets a slot; the hot path only
//! stores two atomics into it on entry and one on exit, plus a load to see
//! whether samples were taken. The watchdog sleeps without the GIL and takes
//! it only to capture a stack of a slice that is already old.

use crate::{
    clock, config, eval_breaker,
    frame_reader::{self, RemoteFrame},
    stacks::{self, RemoteResolution, StackId},
};
use aiocop_trace::records::SampleTime;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const MAX_SLOTS: usize = 64;
/// The watchdog never sleeps less than this, whatever the configuration.
const MIN_SLEEP_NS: u64 = 1_000_000;
/// Idle wake-ups are at most this far apart.
const MAX_IDLE_NS: u64 = 50_000_000;

struct Slot {
    thread_ident: AtomicU64,
    /// The thread's `PyThreadState`, for reading its frames from the
    /// watchdog (`frame_reader`); 0 when not known.
    thread_state: AtomicUsize,
    /// Start of the running slice (its id), 0 when none runs.
    slice_start_ns: AtomicU64,
    /// The slice the samples belong to, 0 when there are none.
    sampled_slice: AtomicU64,
    samples: Mutex<Vec<StackId>>,
    /// Recording's samples: when the next one is due for the running
    /// slice (0: none), ...
    recording_due_ns: AtomicU64,
    /// ... and the slice the samples taken belong to, and the samples.
    recording_slice: AtomicU64,
    recording_samples: Mutex<Vec<TimedSample>>,
    /// Samples the loop thread takes of itself (pending calls): the slice a
    /// call was queued for (0: none queued), and when, ...
    pending_for: AtomicU64,
    pending_since_ns: AtomicU64,
    /// ... and the loop thread's CPU time then (0: unknown), ...
    pending_since_cpu_ns: AtomicU64,
    /// How many of recording's samples the thread took by a pending call:
    /// each was an eval-breaker check (see `sample_with_the_gil`).
    pending_samples_taken: AtomicU64,
    /// The CPU time over the wait of the last of them (see
    /// `sample_with_the_gil`).
    last_pending_ran_ns: AtomicU64,
    /// ... and the slices it should take a monitor's and a recording's
    /// sample of (0: none).
    monitor_wanted: AtomicU64,
    recording_wanted: AtomicU64,
    /// Checking frame reads: the slice whose pending call should compare
    /// its stack with the stack read last (0: none), and that stack.
    validate_for: AtomicU64,
    validate_stack: AtomicU64,
    /// Code objects read from the thread's frames that the stack registry
    /// does not know: (address, first line), for its next pending call to
    /// learn (`stacks::learn_codes`).
    codes_to_learn: Mutex<Vec<(usize, i32)>>,
    /// The thread's CPU clock ([`clock::CpuClock::raw`]; 0: none), which
    /// the watchdog reads to learn whether the thread ran while a sample
    /// waited.
    cpu_clock: AtomicI32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    thread_ident: AtomicU64::new(0),
    thread_state: AtomicUsize::new(0),
    slice_start_ns: AtomicU64::new(0),
    sampled_slice: AtomicU64::new(0),
    samples: Mutex::new(Vec::new()),
    recording_due_ns: AtomicU64::new(0),
    recording_slice: AtomicU64::new(0),
    recording_samples: Mutex::new(Vec::new()),
    pending_for: AtomicU64::new(0),
    pending_since_ns: AtomicU64::new(0),
    pending_since_cpu_ns: AtomicU64::new(0),
    pending_samples_taken: AtomicU64::new(0),
    last_pending_ran_ns: AtomicU64::new(0),
    monitor_wanted: AtomicU64::new(0),
    recording_wanted: AtomicU64::new(0),
    validate_for: AtomicU64::new(0),
    validate_stack: AtomicU64::new(0),
    codes_to_learn: Mutex::new(Vec::new()),
    cpu_clock: AtomicI32::new(0),
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
/// Recording's sampling: a slice this old gets samples (0: off), this often.
static RECORDING_AFTER_NS: AtomicU64 = AtomicU64::new(0);
static RECORDING_INTERVAL_NS: AtomicU64 = AtomicU64::new(1_000_000);
/// Recording's samples keep at most this many per slice (a 10 s stall at
/// 1 ms): past it, a slice's samples stand for more time each.
const MAX_RECORDING_SAMPLES: usize = 10_000;
/// The main thread's ident: its slices are sampled through pending calls.
static MAIN_THREAD_IDENT: AtomicU64 = AtomicU64::new(0);
/// A watchdog thread runs [`run`]'s loop.
static LOOP_RUNNING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

fn my_slot() -> Option<&'static Slot> {
    let index = MY_SLOT.get().or_else(|| {
        let index = SLOTS_USED.fetch_add(1, Relaxed);
        // Past MAX_SLOTS threads, later ones go unsampled (never wrong, only silent).
        (index < MAX_SLOTS).then(|| {
            SLOTS[index].thread_ident.store(current_thread_ident(), Relaxed);
            // SAFETY: slots are taken by threads running monitored
            // callbacks, which hold the GIL: their thread state is current.
            SLOTS[index].thread_state.store(unsafe { pyo3::ffi::PyThreadState_Get() } as usize, Relaxed);
            let cpu_clock = clock::CpuClock::of_this_thread().map_or(0, clock::CpuClock::raw);
            SLOTS[index].cpu_clock.store(cpu_clock, Relaxed);
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
        let after_ns = RECORDING_AFTER_NS.load(Relaxed);
        if after_ns != 0 {
            slot.recording_due_ns.store(start_ns + after_ns, Relaxed);
        }
        slot.slice_start_ns.store(start_ns, Release);
    }
}

/// One of recording's samples: its stack, when the watchdog asked for it
/// and when it was taken (the clock of [`clock::now_ns`]), and how much CPU
/// time the loop thread used from the request reaching it to the sample
/// (`None`: unknown). For a stack read by the watchdog, "asked" is when the
/// thread was first seen at the instruction it is at (so a sample of a long
/// C call is marked native, as a pending call would have waited that long),
/// and its CPU time counts from then too.
struct TimedSample {
    stack: SampleStack,
    asked_ns: u64,
    taken_ns: u64,
    ran_ns: Option<u64>,
}

enum SampleStack {
    Interned(StackId),
    /// Read by the watchdog, with an instruction whose line the loop
    /// thread resolves when the slice ends (it holds the GIL there).
    Read(Box<[RemoteFrame]>),
}

/// The samples taken during a slice: the monitor's (for `cpu_blocking`
/// events, 1.2.1's rules) and recording's, with recording's times (one per
/// sample), which weigh each by the time it stands for
/// (`aiocop_trace::sample_weights`).
#[derive(Default)]
pub struct SliceSamples {
    pub monitor: Vec<StackId>,
    pub recording: Vec<StackId>,
    pub recording_times: Vec<SampleTime>,
    /// The loop thread's CPU time over each recording sample's wait (empty
    /// when any is unknown), which says whether it waited in C code
    /// (`aiocop_trace::waited_in_native_code`).
    pub recording_cpu: Vec<u64>,
}

/// Withdraws the slice and returns the samples taken during it. Called by
/// the thread that ran the slice, holding the GIL (`py`).
pub fn slice_finished(py: Python<'_>, start_ns: u64) -> SliceSamples {
    let Some(slot) = my_slot() else { return SliceSamples::default() };
    slot.slice_start_ns.store(0, Release);
    slot.recording_due_ns.store(0, Relaxed);
    let recording = take_samples(&slot.recording_slice, &slot.recording_samples, start_ns);
    let mut samples = SliceSamples {
        monitor: take_samples(&slot.sampled_slice, &slot.samples, start_ns),
        recording: Vec::with_capacity(recording.len()),
        recording_times: Vec::with_capacity(recording.len()),
        recording_cpu: Vec::with_capacity(recording.len()),
    };
    // CPU times are kept for all of the slice's samples or none.
    let mut every_cpu_time_known = true;
    for sample in recording {
        let stack = match sample.stack {
            SampleStack::Interned(stack) => Some(stack),
            SampleStack::Read(frames) => {
                let stack = stacks::intern_remote(py, &frames, config::trace_depth());
                if stack.is_none() {
                    FRAMES_READ_DROPPED.fetch_add(1, Relaxed);
                }
                stack
            }
        };
        if let Some(stack) = stack {
            samples.recording.push(stack);
            samples.recording_times.push(SampleTime {
                taken_offset_ns: sample.taken_ns.saturating_sub(start_ns),
                waited_ns: sample.taken_ns.saturating_sub(sample.asked_ns),
            });
            every_cpu_time_known &= sample.ran_ns.is_some();
            samples.recording_cpu.push(sample.ran_ns.unwrap_or(0));
        }
    }
    if !every_cpu_time_known {
        samples.recording_cpu.clear();
    }
    samples
}

/// The samples in `samples` if they belong to the slice of `start_ns`.
#[inline]
fn take_samples<T>(owner: &AtomicU64, samples: &Mutex<Vec<T>>, start_ns: u64) -> Vec<T> {
    if owner.load(Acquire) != start_ns {
        return Vec::new();
    }
    let Ok(mut samples) = samples.try_lock() else { return Vec::new() };
    owner.store(0, Relaxed);
    std::mem::take(&mut *samples)
}

/// Turns recording's sampling on (`after_ns` > 0) or off (0). The Python
/// side then starts a watchdog thread if [`watchdog_thread_needed`].
pub fn set_recording_sampling(py: Python<'_>, after_ns: u64, interval_ns: u64) {
    if MAIN_THREAD_IDENT.load(Relaxed) == 0 {
        let ident = py
            .import("threading")
            .and_then(|threading| threading.call_method0("main_thread")?.getattr("ident")?.extract::<u64>());
        MAIN_THREAD_IDENT.store(ident.unwrap_or(0), Relaxed);
    }
    let version = py.version_info();
    PENDING_CALLS_REACH_THE_MAIN_THREAD
        .store(pending_calls_reach_the_main_thread_by_themselves((version.major, version.minor)), Relaxed);
    if after_ns != 0 && current_thread_ident() == MAIN_THREAD_IDENT.load(Relaxed) {
        eval_breaker::check_on_main_thread(py);
    }
    SWITCH_INTERVAL_SETTABLE_WITHOUT_THE_GIL.store((version.major, version.minor) == (3, 11), Relaxed);
    if after_ns != 0 && FRAME_READING.load(Relaxed) != FRAMES_OFF {
        if let Err(why) = frame_reader::init((version.major, version.minor)) {
            log_frame_reading_off_once(py, why);
        }
    }
    RECORDING_INTERVAL_NS.store(interval_ns.max(MIN_SLEEP_NS), Relaxed);
    RECORDING_AFTER_NS.store(after_ns, Relaxed);
}

/// The newest Python whose pending calls were seen to reach the main thread
/// (tests/test_python_versions.py); `aiocop.core.python_support` says the
/// same version, and logs that newer ones sample with the GIL.
const NEWEST_TESTED: (u8, u8) = (3, 15);

/// Whether a pending call queued from another thread runs on the main thread
/// at its next eval-breaker check, with nothing else to do: from 3.13 on
/// (`_PyEval_AddPendingCall` signals the main thread's eval breaker). On a
/// version newer than the tested ones the GIL way is taken: it cannot miss.
fn pending_calls_reach_the_main_thread_by_themselves(version: (u8, u8)) -> bool {
    ((3, 13)..=NEWEST_TESTED).contains(&version)
}

/// Whether the watchdog reads the loop thread's frames itself
/// (`frame_reader`) for recording's samples: off, on, or on and checked
/// against a pending call's stack of the same slice (counted in
/// [`frame_read_counts`]).
pub const FRAMES_OFF: u8 = 0;
pub const FRAMES_READ: u8 = 1;
pub const FRAMES_VALIDATE: u8 = 2;
static FRAME_READING: AtomicU8 = AtomicU8::new(FRAMES_OFF);

/// Sets how recording's samples are taken (one of the FRAMES_ values);
/// where frames cannot be read here, says why once and keeps pending calls.
pub fn set_frame_reading(py: Python<'_>, mode: u8) {
    FRAME_READING.store(mode, Relaxed);
    if mode != FRAMES_OFF {
        let version = py.version_info();
        if let Err(why) = frame_reader::init((version.major, version.minor)) {
            log_frame_reading_off_once(py, why);
        }
    }
}

fn log_frame_reading_off_once(py: Python<'_>, why: &str) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Relaxed) {
        config::log_warning(py, &format!("samples are taken by pending calls: frames cannot be read here ({why})"));
    }
}

/// Frame reads since the process started: samples taken by reading, reads
/// that fell back to another way, samples read and then dropped (a code
/// object never learnt, or not the one read), and (when checking) pending
/// calls whose stack agreed and disagreed with the read one.
static FRAMES_READ_OK: AtomicU64 = AtomicU64::new(0);
static FRAMES_READ_FELL_BACK: AtomicU64 = AtomicU64::new(0);
static FRAMES_READ_DROPPED: AtomicU64 = AtomicU64::new(0);
static FRAMES_AGREED: AtomicU64 = AtomicU64::new(0);
static FRAMES_SELF_EXACT: AtomicU64 = AtomicU64::new(0);
static FRAMES_SELF_INEXACT: AtomicU64 = AtomicU64::new(0);
static FRAMES_DISAGREED: AtomicU64 = AtomicU64::new(0);

/// The counts of frame reads, by name (see the statics above).
pub fn frame_read_counts() -> [(&'static str, u64); 7] {
    [
        ("read", FRAMES_READ_OK.load(Relaxed)),
        ("fell_back", FRAMES_READ_FELL_BACK.load(Relaxed)),
        ("dropped", FRAMES_READ_DROPPED.load(Relaxed)),
        ("agreed", FRAMES_AGREED.load(Relaxed)),
        ("disagreed", FRAMES_DISAGREED.load(Relaxed)),
        ("self_exact", FRAMES_SELF_EXACT.load(Relaxed)),
        ("self_inexact", FRAMES_SELF_INEXACT.load(Relaxed)),
    ]
}

/// How recording's samples were asked for, since the process started:
/// pending calls queued, pending calls that ran while their slice still
/// did (and so took a sample), and samples taken with the GIL.
static PENDING_QUEUED: AtomicU64 = AtomicU64::new(0);
static PENDING_SAMPLED: AtomicU64 = AtomicU64::new(0);
static GIL_SAMPLED: AtomicU64 = AtomicU64::new(0);

/// (pending calls queued, samples they took, samples taken with the GIL).
pub fn recording_sample_counts() -> (u64, u64, u64) {
    (PENDING_QUEUED.load(Relaxed), PENDING_SAMPLED.load(Relaxed), GIL_SAMPLED.load(Relaxed))
}

/// How recording takes samples of slices on the main thread here (for the
/// README's table, and tests); valid once recording's sampling was set.
pub fn main_thread_sampling_method() -> &'static str {
    if !pending_calls_reach_the_main_thread() {
        if switch_interval_functions().is_some() {
            "GIL, switch interval lowered"
        } else {
            "GIL"
        }
    } else if PENDING_CALLS_REACH_THE_MAIN_THREAD.load(Relaxed) {
        "pending call"
    } else {
        "pending call, eval breaker set"
    }
}

/// Whether a pending call queued from the watchdog runs on the main thread
/// at its next eval-breaker check: by itself on 3.13, with the eval breaker
/// set on 3.11 and 3.12 once [`eval_breaker`] is usable.
fn pending_calls_reach_the_main_thread() -> bool {
    PENDING_CALLS_REACH_THE_MAIN_THREAD.load(Relaxed) || eval_breaker::usable()
}

/// The recording's sampling in force: (after_ns, interval_ns), after 0 when off.
pub fn recording_sampling() -> (u64, u64) {
    (RECORDING_AFTER_NS.load(Relaxed), RECORDING_INTERVAL_NS.load(Relaxed))
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

/// Whether a watchdog thread should run: the monitor's sampling was
/// started, or recording samples.
fn watchdog_wanted() -> bool {
    RUNNING.load(Relaxed) || RECORDING_AFTER_NS.load(Relaxed) != 0
}

/// A watchdog thread should run and none does (yet).
pub fn watchdog_thread_needed() -> bool {
    watchdog_wanted() && !LOOP_RUNNING.load(Relaxed)
}

/// Replaces the settings in force (aiocop 1.2.1's module globals assigned).
pub fn replace_settings(settings: Settings) {
    if let Ok(mut current) = SETTINGS.lock() {
        *current = settings;
    }
}

/// Marks sampling started or not, as assigning 1.2.1's `_sampler_started`
/// does: stopped, the watchdog takes no more monitor samples, and
/// `start_cpu_sampling()` may start it again.
pub fn set_started(started: bool) {
    RUNNING.store(started, Relaxed);
}

/// The watchdog thread's body: samples until [`stop`], without the GIL.
/// Returns at once if another thread runs it already.
pub fn run(py: Python<'_>) {
    if !watchdog_wanted() || LOOP_RUNNING.swap(true, Relaxed) {
        return;
    }
    crate::signals::block_in_this_thread();
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
        slot.thread_state.store(0, Relaxed);
        slot.validate_for.store(0, Relaxed);
        slot.recording_due_ns.store(0, Relaxed);
        slot.recording_slice.store(0, Relaxed);
        slot.pending_for.store(0, Relaxed);
        slot.cpu_clock.store(0, Relaxed);
        slot.monitor_wanted.store(0, Relaxed);
        slot.recording_wanted.store(0, Relaxed);
    }
    SLOTS_USED.store(0, Relaxed);
    MY_SLOT.set(None);
    frame_reader::reset_pid();
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

/// When the monitor's next sample of a slot's slice is due: `arm` after the
/// slice started, then every `interval` (the watchdog's own bookkeeping, so
/// that waking more often for recording's samples does not take more).
#[derive(Clone, Copy, Default)]
struct MonitorDue {
    slice: u64,
    due_ns: u64,
}

impl MonitorDue {
    fn take_if_due(&mut self, start: u64, now: u64, arm_ns: u64, interval_ns: u64) -> bool {
        if self.slice != start {
            *self = MonitorDue { slice: start, due_ns: start + arm_ns };
        }
        let due = now >= self.due_ns;
        if due {
            self.due_ns = now + interval_ns;
        }
        due
    }
}

/// Whether recording's next sample of the slot's running slice is due; if
/// so, the one after is due an interval from now.
fn take_recording_due(slot: &Slot, now: u64, interval_ns: u64) -> bool {
    let due = slot.recording_due_ns.load(Relaxed);
    let is_due = due != 0 && now >= due;
    if is_due {
        slot.recording_due_ns.store(now + interval_ns, Relaxed);
    }
    is_due
}

/// The samples the watchdog wants of a running slice at one wake-up.
#[derive(Clone, Copy)]
struct Wanted {
    monitor: bool,
    recording: bool,
}

fn watchdog_loop() {
    // Look soon after starting: a slice may be running already.
    let mut sleep_ns = MIN_SLEEP_NS;
    let mut monitor_due = [MonitorDue::default(); MAX_SLOTS];
    let mut positions = [Position::default(); MAX_SLOTS];
    while !STOP.load(Relaxed) {
        std::thread::sleep(Duration::from_nanos(sleep_ns));
        let monitor_sampling = RUNNING.load(Relaxed);
        let (interval_ns, arm_ns, idle_ns, max_samples, depth) = match SETTINGS.lock() {
            Ok(s) => {
                let (arm, idle) = effective_timing(&s);
                (s.interval_ns, arm, idle, s.max_samples_per_slice, s.trace_depth)
            }
            Err(_) => return,
        };
        let (recording_after_ns, recording_interval_ns) = recording_sampling();
        let now = clock::now_ns();
        let used = SLOTS_USED.load(Relaxed).min(MAX_SLOTS);
        let mut any_running = false;
        for (index, slot) in SLOTS[..used].iter().enumerate() {
            let start = slot.slice_start_ns.load(Acquire);
            if start == 0 || STOP.load(Relaxed) {
                continue;
            }
            any_running = true;
            let wanted = Wanted {
                monitor: monitor_sampling && monitor_due[index].take_if_due(start, now, arm_ns, interval_ns),
                recording: recording_after_ns != 0 && take_recording_due(slot, now, recording_interval_ns),
            };
            if wanted.monitor || wanted.recording {
                sample_now(index, slot, start, wanted, (max_samples, depth), &mut positions[index]);
            }
        }
        sleep_ns = next_sleep_ns(any_running, monitor_sampling, (interval_ns, idle_ns), recording_after_ns);
        if let Some(due) = next_recording_due_ns(used) {
            // Wake when the next slice turns old enough, not up to an
            // interval later: a 3 ms slice would be over by then.
            sleep_ns = sleep_ns.min(due.saturating_sub(clock::now_ns()).max(MIN_RECORDING_SLEEP_NS));
        }
    }
}

/// The watchdog sleeps at least this long between recording's samples.
const MIN_RECORDING_SLEEP_NS: u64 = 200_000;

/// When recording's next sample is due, over every running slice.
fn next_recording_due_ns(used: usize) -> Option<u64> {
    SLOTS[..used].iter().map(|slot| slot.recording_due_ns.load(Relaxed)).filter(|&due| due != 0).min()
}

/// How long the watchdog sleeps: the monitor's interval (or idle interval),
/// and while recording samples, often enough to find a slice soon after it
/// turns `after_ns` old.
fn next_sleep_ns(any_running: bool, monitor_sampling: bool, monitor: (u64, u64), recording_after_ns: u64) -> u64 {
    let (interval_ns, idle_ns) = monitor;
    let monitor_sleep = match (monitor_sampling, any_running) {
        (false, _) => MAX_IDLE_NS,
        (true, true) => interval_ns,
        (true, false) => idle_ns,
    }
    .max(MIN_SLEEP_NS);
    if recording_after_ns == 0 {
        return monitor_sleep;
    }
    let recording_sleep = if any_running { RECORDING_INTERVAL_NS.load(Relaxed) } else { recording_after_ns / 2 };
    monitor_sleep.min(recording_sleep.max(MIN_RECORDING_SLEEP_NS))
}

/// How long the watchdog lets a loop thread keep the GIL when it wants a
/// sample, on 3.11 and 3.12.
const SAMPLING_SWITCH_INTERVAL_US: std::ffi::c_ulong = 100;

type SetSwitchInterval = unsafe extern "C" fn(std::ffi::c_ulong);
type GetSwitchInterval = unsafe extern "C" fn() -> std::ffi::c_ulong;

/// CPython 3.11's `_PyEval_SetSwitchInterval` and `_PyEval_GetSwitchInterval`
/// (3.12's need a thread state, 3.13 does not export them), looked up at
/// run time so that the same code loads everywhere.
fn switch_interval_functions() -> Option<(SetSwitchInterval, GetSwitchInterval)> {
    static FUNCTIONS: OnceLock<Option<(SetSwitchInterval, GetSwitchInterval)>> = OnceLock::new();
    if !SWITCH_INTERVAL_SETTABLE_WITHOUT_THE_GIL.load(Relaxed) {
        return None;
    }
    *FUNCTIONS.get_or_init(|| {
        // SAFETY: dlsym on the process's own symbols; a found symbol has the
        // signature of its declaration in CPython's cpython/ceval.h.
        unsafe {
            let set = libc::dlsym(libc::RTLD_DEFAULT, c"_PyEval_SetSwitchInterval".as_ptr());
            let get = libc::dlsym(libc::RTLD_DEFAULT, c"_PyEval_GetSwitchInterval".as_ptr());
            (!set.is_null() && !get.is_null()).then(|| {
                (
                    std::mem::transmute::<*mut c_void, SetSwitchInterval>(set),
                    std::mem::transmute::<*mut c_void, GetSwitchInterval>(get),
                )
            })
        }
    })
}

/// Whether a pending call queued from the watchdog reaches the main thread
/// at once (3.13's per-thread eval breaker).
static PENDING_CALLS_REACH_THE_MAIN_THREAD: AtomicBool = AtomicBool::new(false);
/// Whether the switch interval can be set from a thread without a thread
/// state (3.11: one GIL for the runtime).
static SWITCH_INTERVAL_SETTABLE_WITHOUT_THE_GIL: AtomicBool = AtomicBool::new(false);

/// Takes the samples wanted of the slice of `start` in `slot`: on the main
/// thread, where pending calls reach it, by asking it to sample itself; else
/// by taking the GIL. `monitor` is the monitor's (max samples, depth).
fn sample_now(
    index: usize,
    slot: &Slot,
    start: u64,
    mut wanted: Wanted,
    monitor: (usize, usize),
    position: &mut Position,
) {
    let main_thread = slot.thread_ident.load(Relaxed) == MAIN_THREAD_IDENT.load(Relaxed);
    let by_pending_call = main_thread && pending_calls_reach_the_main_thread();
    let reading = FRAME_READING.load(Relaxed);
    // A pending call is queued also to compare its stack with the one read
    // (checking), or to learn the codes of a stack read (without taking the
    // GIL when it is late: the watchdog keeps reading meanwhile).
    let mut queue_anyway = false;
    if wanted.recording && reading != FRAMES_OFF {
        match read_sample(slot, start, position, reading == FRAMES_VALIDATE) {
            Read::Taken => {
                wanted.recording = false;
                queue_anyway = reading == FRAMES_VALIDATE;
            }
            Read::CodesToLearn if by_pending_call => {
                slot.recording_wanted.store(start, Relaxed);
                wanted.recording = false;
                queue_anyway = true;
            }
            Read::CodesToLearn | Read::Failed => {}
        }
    }
    if !wanted.monitor && !wanted.recording && !queue_anyway {
        return;
    }
    if by_pending_call {
        return ask_the_loop_thread(index, slot, start, wanted);
    }
    if wanted.monitor {
        sample(slot, start, monitor.0, monitor.1);
    }
    if wanted.recording {
        sample_with_the_gil(slot, start);
    }
}

/// Where a slot's thread was seen at the watchdog's last read of its
/// frames (current frame, instruction pointer), and since when.
#[derive(Clone, Copy, Default)]
struct Position {
    slice: u64,
    at: (u64, u64),
    since_ns: u64,
    /// The thread's CPU time then (`None`: unknown).
    since_cpu_ns: Option<u64>,
}

/// What reading a slot's thread's frames gave.
#[derive(PartialEq, Eq)]
enum Read {
    /// A sample was taken.
    Taken,
    /// A sample was taken whose stack holds code objects the stack
    /// registry does not know yet: the loop thread must learn them (a
    /// sample of its own) for it to count (see `stacks::intern_remote`).
    CodesToLearn,
    /// Nothing could be read: take the sample another way.
    Failed,
}

/// Takes one of recording's samples of the slice of `start` by reading the
/// slot's thread's frames.
#[inline(never)] // its own entry in callgrind (bench/sampling_cost.py)
fn read_sample(slot: &Slot, start: u64, position: &mut Position, validate: bool) -> Read {
    let (Some(layout), thread_state) = (frame_reader::layout(), slot.thread_state.load(Relaxed)) else {
        return Read::Failed;
    };
    if thread_state == 0 {
        return Read::Failed;
    }
    let depth = config::trace_depth();
    let now = clock::now_ns();
    let now_cpu_ns = loop_thread_cpu_ns(slot);
    let read = layout.read_stack(thread_state as u64, depth + stacks::OWN_FRAME_MARGIN);
    let taken_ns = clock::now_ns();
    // The slice may have ended while we read: the frames would belong to
    // whatever runs now.
    let Ok(mut read) = read.map_err(|_| ()).and_then(|read| {
        (slot.slice_start_ns.load(Acquire) == start && !read.frames.is_empty()).then_some(read).ok_or(())
    }) else {
        FRAMES_READ_FELL_BACK.fetch_add(1, Relaxed);
        return Read::Failed;
    };
    let (stack, outcome) = match stacks::resolve_remote(&read.frames, depth) {
        RemoteResolution::Stack(stack) => (SampleStack::Interned(stack), Read::Taken),
        RemoteResolution::NeedsLines => (SampleStack::Read(read.frames.into_boxed_slice()), Read::Taken),
        RemoteResolution::UnknownCode => {
            // Keep each code's first line, to check the code learnt later
            // at that address is the one read.
            for frame in &mut read.frames {
                match layout.read_first_line(frame.code) {
                    Ok(line) => frame.first_line = Some(line),
                    Err(_) => {
                        FRAMES_READ_FELL_BACK.fetch_add(1, Relaxed);
                        return Read::Failed;
                    }
                }
            }
            if let Ok(mut to_learn) = slot.codes_to_learn.try_lock() {
                to_learn.clear();
                to_learn.extend(read.frames.iter().filter_map(|f| Some((f.code, f.first_line?))));
            }
            (SampleStack::Read(read.frames.into_boxed_slice()), Read::CodesToLearn)
        }
    };
    if let (true, SampleStack::Interned(stack)) = (validate, &stack) {
        slot.validate_stack.store((*stack).into(), Relaxed);
        slot.validate_for.store(start, Release);
    }
    if position.slice != start || position.at != read.position {
        *position = Position { slice: start, at: read.position, since_ns: now, since_cpu_ns: now_cpu_ns };
    }
    FRAMES_READ_OK.fetch_add(1, Relaxed);
    // As a pending call's, the CPU time the thread ran while seen at one
    // instruction tells C code that held it there from a thread that waited.
    let ran_ns = position.since_cpu_ns.zip(now_cpu_ns).map(|(since, now)| now.saturating_sub(since));
    push_recording_sample(slot, start, TimedSample { stack, asked_ns: position.since_ns, taken_ns, ran_ns });
    outcome
}

/// Queues [`take_pending_sample`] for the slice of `start`, which takes
/// the samples wanted when the loop thread runs it.
fn ask_the_loop_thread(index: usize, slot: &Slot, start: u64, wanted: Wanted) {
    if wanted.monitor {
        slot.monitor_wanted.store(start, Relaxed);
    }
    if wanted.recording {
        slot.recording_wanted.store(start, Relaxed);
    }
    // One pending call per slice at a time: the interpreter's queue is
    // short (32). A call queued for an earlier slice runs, finds its slice
    // over and does nothing.
    let now = clock::now_ns();
    if slot.pending_for.load(Acquire) == start {
        // Not serviced yet: the eval breaker can be missed (on 3.11 and
        // 3.12, a thread taking the GIL recomputes it without the main
        // thread's calls), so it is set again. Taking the GIL makes the loop
        // thread drop and take it again, and so run the call.
        signal_pending_sample(slot);
        let late = now.saturating_sub(slot.pending_since_ns.load(Relaxed)) > 2 * RECORDING_INTERVAL_NS.load(Relaxed);
        if wanted.recording && late {
            sample_with_the_gil(slot, start);
            // Taking the GIL recomputed the flag as this thread sees it.
            signal_pending_sample(slot);
        }
        return;
    }
    slot.pending_since_ns.store(now, Relaxed);
    slot.pending_since_cpu_ns.store(loop_thread_cpu_ns(slot).unwrap_or(0), Relaxed);
    slot.pending_for.store(start, Release);
    // SAFETY: Py_AddPendingCall needs neither the GIL nor a thread state;
    // the argument is a slot index, valid for the life of the process.
    let queued = unsafe { pyo3::ffi::Py_AddPendingCall(Some(take_pending_sample), index as *mut c_void) };
    if queued != 0 {
        slot.pending_for.store(0, Relaxed);
    } else {
        PENDING_QUEUED.fetch_add(1, Relaxed);
        eval_breaker::signal_main_thread();
    }
}

/// Sets the main thread's eval breaker again for a pending call not run
/// yet. If the flag had been cleared, the loop thread may have run Python
/// since without seeing the request: its CPU time counts from now, so that
/// only a wait it ran through with the request in sight (C code holding
/// the GIL) looks native (`aiocop_trace::waited_in_native_code`).
fn signal_pending_sample(slot: &Slot) {
    if !eval_breaker::signal_main_thread() {
        slot.pending_since_cpu_ns.store(loop_thread_cpu_ns(slot).unwrap_or(0), Relaxed);
    }
}

/// Runs on the main thread, holding the GIL, at its next eval-breaker check:
/// takes the samples wanted of its own stack, if the slice the call was
/// queued for still runs. Never raises.
extern "C" fn take_pending_sample(index: *mut c_void) -> c_int {
    let Some(slot) = SLOTS.get(index as usize) else { return 0 };
    let queued_for = slot.pending_for.swap(0, Acquire);
    // Stored before `pending_for` was (Release): read after it.
    let asked_ns = slot.pending_since_ns.load(Relaxed);
    let asked_cpu_ns = slot.pending_since_cpu_ns.load(Relaxed);
    let running = slot.slice_start_ns.load(Acquire);
    if queued_for == 0 || running != queued_for {
        return 0;
    }
    // SAFETY: pending calls run on the main thread with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let to_learn = slot.codes_to_learn.try_lock().map(|mut codes| std::mem::take(&mut *codes)).unwrap_or_default();
    if !to_learn.is_empty() {
        stacks::learn_codes(py, None, &to_learn);
    }
    let recording_depth = config::trace_depth();
    let recording_stack = if slot.recording_wanted.swap(0, Relaxed) == running {
        // Read first: walking the stack is the sampler's time, not the wait's.
        let ran_ns =
            clock::this_thread_cpu_ns().filter(|_| asked_cpu_ns != 0).map(|cpu_ns| cpu_ns.saturating_sub(asked_cpu_ns));
        let stack = stacks::capture_current(py, recording_depth);
        if let Some(stack) = stack {
            PENDING_SAMPLED.fetch_add(1, Relaxed);
            slot.last_pending_ran_ns.store(ran_ns.unwrap_or(0), Relaxed);
            slot.pending_samples_taken.fetch_add(1, Release);
            let sample =
                TimedSample { stack: SampleStack::Interned(stack), asked_ns, taken_ns: clock::now_ns(), ran_ns };
            push_recording_sample(slot, running, sample);
        }
        stack
    } else {
        None
    };
    if slot.validate_for.swap(0, Acquire) == running {
        validate(py, slot, recording_stack, recording_depth);
    }
    if slot.monitor_wanted.swap(0, Relaxed) == running {
        let Ok((max_samples, depth)) = SETTINGS.lock().map(|s| (s.max_samples_per_slice, s.trace_depth)) else {
            return 0;
        };
        // The same walk serves both when they keep as many frames (the default).
        let stack = recording_stack.filter(|_| depth == recording_depth).or_else(|| stacks::capture_current(py, depth));
        if let Some(stack) = stack {
            push_sample(&slot.sampled_slice, &slot.samples, running, stack, max_samples);
        }
    }
    0
}

/// Checking frame reads, on the loop thread at a pending call: does its own
/// stack equal the one the watchdog read earlier in the slice (it may have
/// moved on since), and does reading its own frames now, as the watchdog
/// does, give exactly its stack (nothing moves while it looks)?
fn validate(py: Python<'_>, slot: &Slot, own: Option<StackId>, depth: usize) {
    let Some(own) = own.or_else(|| stacks::capture_current(py, depth)) else { return };
    let agreed = u64::from(own) == slot.validate_stack.load(Relaxed);
    (if agreed { &FRAMES_AGREED } else { &FRAMES_DISAGREED }).fetch_add(1, Relaxed);
    let (Some(layout), thread_state) = (frame_reader::layout(), slot.thread_state.load(Relaxed)) else { return };
    let read = layout.read_stack(thread_state as u64, depth + stacks::OWN_FRAME_MARGIN);
    let exact = read.ok().and_then(|read| stacks::intern_remote(py, &read.frames, depth)) == Some(own);
    (if exact { &FRAMES_SELF_EXACT } else { &FRAMES_SELF_INEXACT }).fetch_add(1, Relaxed);
}

/// Samples a slice by taking the GIL, asking for it after
/// [`SAMPLING_SWITCH_INTERVAL_US`] where the interpreter lets us set the
/// switch interval (3.11, 3.12), else after the program's own (5 ms).
fn sample_with_the_gil(slot: &Slot, start: u64) {
    // SAFETY: only reads the interpreter's state; stop() is called from
    // atexit, before finalization.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return;
    }
    let asked_ns = clock::now_ns();
    let asked_cpu_ns = loop_thread_cpu_ns(slot);
    let pending_samples_before = slot.pending_samples_taken.load(Relaxed);
    let switch_interval = switch_interval_functions();
    // SAFETY: plain reads and writes of the interpreter's switch interval,
    // which need no GIL; the program's value is put back once we hold it.
    let program_interval = switch_interval.map(|(set, get)| unsafe {
        let program_interval = get();
        set(SAMPLING_SWITCH_INTERVAL_US.min(program_interval));
        program_interval
    });
    Python::attach(|py| {
        if let (Some((set, _)), Some(interval)) = (switch_interval, program_interval) {
            // SAFETY: as above.
            unsafe { set(interval) };
        }
        // The slice may have ended while we waited for the GIL: then hand
        // it back at once, so that the loop's next callback is not held up
        // by a sample it would throw away.
        if slot.slice_start_ns.load(Acquire) != start {
            return;
        }
        let taken_ns = clock::now_ns();
        // The loop thread is asked to drop the GIL only a switch interval
        // after we asked for it: what it ran before that was no wait. If it
        // took a pending call's sample meanwhile, it reached an eval-breaker
        // check while we waited, and dropped the GIL at that check or soon
        // after: that sample's wait is this one's (on a loaded CPU this
        // thread may wake to ask for the GIL only after the loop thread's
        // time slice, 3-4 ms of Python, which is no wait in C code).
        let checked_meanwhile = slot.pending_samples_taken.load(Acquire) != pending_samples_before;
        let lowered_us = program_interval.map(|interval| SAMPLING_SWITCH_INTERVAL_US.min(interval));
        let ran_ns = asked_cpu_ns.zip(loop_thread_cpu_ns(slot)).map(|(asked, now)| {
            if checked_meanwhile {
                slot.last_pending_ran_ns.load(Relaxed)
            } else {
                now.saturating_sub(asked).saturating_sub(switch_interval_ns(py, lowered_us))
            }
        });
        let frame = thread_frame(py, slot.thread_ident.load(Relaxed));
        let to_learn = slot.codes_to_learn.try_lock().map(|mut codes| std::mem::take(&mut *codes)).unwrap_or_default();
        if !to_learn.is_empty() {
            stacks::learn_codes(py, frame.as_ref(), &to_learn);
        }
        let stack = frame.and_then(|frame| stacks::capture_from(py, &frame, config::trace_depth()));
        if let (Some(stack), true) = (stack, slot.slice_start_ns.load(Acquire) == start) {
            GIL_SAMPLED.fetch_add(1, Relaxed);
            push_recording_sample(
                slot,
                start,
                TimedSample { stack: SampleStack::Interned(stack), asked_ns, taken_ns, ran_ns },
            );
        }
    });
}

/// The CPU time the slot's thread has used, if its clock can be read.
fn loop_thread_cpu_ns(slot: &Slot) -> Option<u64> {
    clock::CpuClock::from_raw(slot.cpu_clock.load(Relaxed)).and_then(clock::CpuClock::now_ns)
}

/// The switch interval a GIL request waited before asking the holder to
/// drop it: the lowered one (3.11), else the program's.
fn switch_interval_ns(py: Python<'_>, lowered_us: Option<std::ffi::c_ulong>) -> u64 {
    if let Some(us) = lowered_us {
        // `c_ulong` is 32 bits wide on some targets.
        #[allow(clippy::unnecessary_cast)]
        return us as u64 * 1_000;
    }
    let seconds = py.import("sys").and_then(|sys| sys.call_method0("getswitchinterval")?.extract::<f64>());
    seconds.map_or(0, |seconds| (seconds * 1e9) as u64)
}

fn push_recording_sample(slot: &Slot, start: u64, sample: TimedSample) {
    push_sample(&slot.recording_slice, &slot.recording_samples, start, sample, MAX_RECORDING_SAMPLES);
}

/// Adds a sample of the slice of `start` to `samples`, which `owner` says
/// are of that slice (those of an earlier one, never taken, are dropped).
fn push_sample<T>(owner: &AtomicU64, samples: &Mutex<Vec<T>>, start: u64, sample: T, max: usize) {
    let Ok(mut samples) = samples.try_lock() else { return };
    if owner.load(Relaxed) != start {
        samples.clear();
    }
    if samples.len() < max {
        samples.push(sample);
    }
    owner.store(start, Release);
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
        push_sample(&slot.sampled_slice, &slot.samples, start, stack, max_samples);
    });
}

fn thread_frame(py: Python<'_>, ident: u64) -> Option<Bound<'_, PyAny>> {
    let frames = py.import("sys").ok()?.call_method0("_current_frames").ok()?;
    let frames = frames.cast::<PyDict>().ok()?;
    frames.get_item(ident).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_calls_are_trusted_alone_from_3_13_to_the_newest_tested_version_only() {
        assert!(!pending_calls_reach_the_main_thread_by_themselves((3, 12)));
        assert!(pending_calls_reach_the_main_thread_by_themselves((3, 13)));
        assert!(pending_calls_reach_the_main_thread_by_themselves((3, 15)));
        assert!(!pending_calls_reach_the_main_thread_by_themselves((3, 16)));
    }
}
