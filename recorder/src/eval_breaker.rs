//! On 3.11 and 3.12: making the main thread run a pending call now, not at
//! its next GIL switch.
//!
//! There, `Py_AddPendingCall` from a thread other than the main one queues
//! the call and recomputes the interpreter's `eval_breaker` flag as the
//! calling thread sees it: without the call, which only the main thread may
//! run. The main thread then runs it only once something else sets the
//! flag, typically a GIL drop request, up to `sys.getswitchinterval()`
//! (5 ms) later. CPython's own C signal handler sets that flag to 1 from
//! whatever thread it runs on, on Windows (`SIGNAL_PENDING_SIGNALS(interp,
//! force=1)`); the main thread, once it looked, recomputes it (3.11: when it
//! runs its pending calls, 3.12: after every look). We store 1 into the main
//! interpreter's `ceval.eval_breaker` the same way, right after queueing.
//!
//! The field's offset comes from CPython's internal headers at build time
//! (`csrc/eval_breaker.c`, built by `build.rs` where the headers are). It is
//! written only after [`check_on_main_thread`] saw the field behave as the
//! eval breaker on the running interpreter: 1 once the main thread queued a
//! pending call, 0 again when that call runs. Until then, or if it did not,
//! samples take the GIL (see `sampler.rs`).
//!
//! What it costs the program: while the main thread waits with the GIL
//! released (a blocking call) and the flag is set, on 3.11 other threads
//! running Python look at their (empty) pending work at each eval-breaker
//! check until the main thread runs again.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering::Relaxed};

const UNCHECKED: u8 = 0;
const CHECKING: u8 = 1;
const USABLE: u8 = 2;
const UNUSABLE: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNCHECKED);
/// The address of the main interpreter's `ceval.eval_breaker`.
static FLAG_ADDRESS: AtomicUsize = AtomicUsize::new(0);

#[cfg(aiocop_eval_breaker)]
mod built {
    extern "C" {
        fn aiocop_eval_breaker_offset() -> usize;
        fn aiocop_eval_breaker_size() -> usize;
        fn aiocop_eval_breaker_built_for() -> std::ffi::c_ulong;
    }

    /// The flag's offset in `PyInterpreterState`, if built for this
    /// interpreter's minor version with a flag of an `int`'s size.
    pub fn offset(running: (u8, u8)) -> Option<usize> {
        // SAFETY: constant functions of the C file built with the crate.
        let (offset, size, hex) =
            unsafe { (aiocop_eval_breaker_offset(), aiocop_eval_breaker_size(), aiocop_eval_breaker_built_for()) };
        let built_for = (((hex >> 24) & 0xff) as u8, ((hex >> 16) & 0xff) as u8);
        (built_for == running && size == std::mem::size_of::<i32>()).then_some(offset)
    }
}

#[cfg(not(aiocop_eval_breaker))]
mod built {
    pub fn offset(_running: (u8, u8)) -> Option<usize> {
        None
    }
}

/// Whether [`signal_main_thread`] makes the main thread run its pending calls.
pub fn usable() -> bool {
    STATE.load(Relaxed) == USABLE
}

/// Checks, once per process, that the flag is where the headers said:
/// queues a pending call from the main thread (which sets the flag) and
/// looks again when it runs (which clears it). Call on the main thread.
pub fn check_on_main_thread(py: Python<'_>) {
    if STATE.compare_exchange(UNCHECKED, CHECKING, Relaxed, Relaxed).is_err() {
        return;
    }
    let version = py.version_info();
    let flag = built::offset((version.major, version.minor)).map(|offset| {
        // SAFETY: the main interpreter lives as long as the process.
        let interpreter = unsafe { pyo3::ffi::PyInterpreterState_Main() };
        interpreter as usize + offset
    });
    let Some(flag) = flag else { return STATE.store(UNUSABLE, Relaxed) };
    FLAG_ADDRESS.store(flag, Relaxed);
    // SAFETY: Py_AddPendingCall needs nothing; the callback takes no argument.
    let queued = unsafe { pyo3::ffi::Py_AddPendingCall(Some(flag_cleared_when_run), std::ptr::null_mut()) };
    if queued != 0 || read(flag) != 1 {
        STATE.store(UNUSABLE, Relaxed);
    }
}

/// The check's pending call: the flag must read 0 now that calls run.
extern "C" fn flag_cleared_when_run(_: *mut std::ffi::c_void) -> std::ffi::c_int {
    if STATE.load(Relaxed) == CHECKING {
        let cleared = read(FLAG_ADDRESS.load(Relaxed)) == 0;
        STATE.store(if cleared { USABLE } else { UNUSABLE }, Relaxed);
    }
    0
}

fn read(address: usize) -> i32 {
    // SAFETY: `address` is the eval breaker field of the main interpreter,
    // an aligned `_Py_atomic_int` that CPython reads and writes atomically.
    unsafe { AtomicI32::from_ptr(address as *mut i32) }.load(Relaxed)
}

/// Asks the main thread to look at its pending calls at its next
/// eval-breaker check. Callable from any thread, without the GIL. Returns
/// `false` if the flag was found cleared, `true` if it was set or is not
/// ours to read (3.13 and later: a per-thread flag that no other thread
/// clears). Between two calls for one queued call, a cleared flag means a
/// thread that took the GIL recomputed it without the main thread's calls:
/// the main thread may have run Python since without seeing the request.
pub fn signal_main_thread() -> bool {
    if !usable() {
        return true;
    }
    // SAFETY: as in `read`; the check proved the field is the flag.
    unsafe { AtomicI32::from_ptr(FLAG_ADDRESS.load(Relaxed) as *mut i32) }.swap(1, Relaxed) != 0
}
