//! The monotonic nanosecond clock shared by slice timing and the sampler.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// CLOCK_MONOTONIC at the first call of `now_ns` (0: not yet called).
static ORIGIN_NS: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds since the first call, on CLOCK_MONOTONIC (`time.monotonic()`,
/// `loop.time()`); never 0, so 0 can mean "no slice".
///
/// Read with `clock_gettime` and plain integer arithmetic: through
/// `Instant::now().elapsed()` a read cost about 90 instructions more
/// (a second normalised `Timespec`, a checked subtraction, 128-bit
/// nanoseconds; callgrind), and the loop's hot path reads it several times
/// a step (a slice's start and end, each poll's, each `call_soon` stamp).
#[inline]
pub fn now_ns() -> u64 {
    let now_ns = read_clock(libc::CLOCK_MONOTONIC).unwrap_or(0);
    let origin_ns = match ORIGIN_NS.load(Relaxed) {
        0 => ORIGIN_NS.compare_exchange(0, now_ns, Relaxed, Relaxed).map_or_else(|first| first, |_| now_ns),
        origin_ns => origin_ns,
    };
    now_ns.saturating_sub(origin_ns) + 1
}

/// A thread's CPU-time clock, readable from any thread
/// ([`thread_cpu_ns`]): what tells a thread that ran (C code holding the
/// GIL) from one that waited (for a CPU, or for I/O without the GIL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuClock(libc::clockid_t);

impl CpuClock {
    /// The calling thread's clock; `None` where the system gives none.
    pub fn of_this_thread() -> Option<CpuClock> {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self() is the calling thread, alive; `clock` is a valid out pointer.
        let status = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        (status == 0).then_some(CpuClock(clock))
    }

    /// The raw id, to keep in an atomic ([`CpuClock::from_raw`]).
    pub fn raw(self) -> i32 {
        self.0
    }

    /// A clock kept with [`CpuClock::raw`]; 0 (the wall clock, never a
    /// thread's CPU clock) means none.
    pub fn from_raw(raw: i32) -> Option<CpuClock> {
        (raw != 0).then_some(CpuClock(raw))
    }

    /// The CPU time its thread has used, in nanoseconds; `None` once the
    /// thread has ended.
    pub fn now_ns(self) -> Option<u64> {
        read_clock(self.0)
    }
}

/// The CPU time the calling thread has used, in nanoseconds.
pub fn this_thread_cpu_ns() -> Option<u64> {
    read_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn read_clock(clock: libc::clockid_t) -> Option<u64> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid out pointer; a bad or stale clock id returns an error, not a fault.
    let status = unsafe { libc::clock_gettime(clock, &mut now) };
    (status == 0).then(|| now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}
