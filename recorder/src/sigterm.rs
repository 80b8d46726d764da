//! Writing the trace out when SIGTERM's default action would kill the
//! process, then dying of it as before (recording mode only).
//!
//! Servers stop their workers with SIGTERM, and a multiprocessing pool
//! terminates its workers with it. A Python-level handler would run only
//! when the main thread next checks for signals, and a main thread blocked
//! in a C wait (a pool worker on its queue's lock, entered just after the
//! signal arrived) never does: the worker would outlive `terminate()`. So
//! the handler is native: it only writes a byte to a pipe (async-signal
//! safe); a thread of aiocop's reading the pipe stops the recording (the
//! writer writes what is buffered and the footer, given at most 2 s) and
//! then raises SIGTERM again with its default action. The main thread's state does not matter.
//!
//! Installed only where SIGTERM has its default action; a program that
//! sets its own handler later replaces it, as it would have replaced the
//! default.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

/// The pipe's ends, -1 when there is none.
static READ_FD: AtomicI32 = AtomicI32::new(-1);
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: c_int) {
    let fd = WRITE_FD.load(SeqCst);
    let byte = signal as u8;
    // SAFETY: write, signal and raise are async-signal-safe.
    unsafe {
        if fd < 0 || libc::write(fd, (&byte as *const u8).cast(), 1) != 1 {
            // No waiter (between a fork and its restart): die as before.
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// Installs the handler if SIGTERM has its default action; returns whether it did.
pub fn install() -> bool {
    if INSTALLED.load(SeqCst) {
        return true;
    }
    // SAFETY: sigaction on zeroed structs, reading then setting SIGTERM's action.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut current) != 0 || current.sa_sigaction != libc::SIG_DFL
        {
            return false;
        }
        if !start_waiter() {
            return false;
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut()) != 0 {
            return false;
        }
    }
    INSTALLED.store(true, SeqCst);
    true
}

/// A pipe and the thread that waits on it.
fn start_waiter() -> bool {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: pipe2 fills the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return false;
    }
    let [read_fd, write_fd] = fds;
    READ_FD.store(read_fd, SeqCst);
    WRITE_FD.store(write_fd, SeqCst);
    std::thread::Builder::new().name("aiocop-sigterm".into()).spawn(move || wait_then_stop(read_fd)).is_ok()
}

fn wait_then_stop(read_fd: c_int) {
    crate::signals::block_in_this_thread();
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a local.
        let read = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
        if read == 1 {
            break;
        }
        if read == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return; // the pipe was closed (a forked child's copy)
        }
    }
    // Waits for the writer at most `recording::session::STOP_WAIT`: a writer stuck
    // on a FIFO nobody reads must not keep SIGTERM from ending the process.
    crate::recording::stop_without_the_gil();
    // SAFETY: restores the default action and raises the signal again.
    unsafe {
        libc::signal(c_int::from(byte), libc::SIG_DFL);
        libc::kill(libc::getpid(), c_int::from(byte));
    }
}

/// In a forked child: the waiter thread is the parent's, and the pipe is
/// shared with it; give the child a pipe and a waiter of its own.
pub fn after_fork_in_child() {
    if !INSTALLED.load(SeqCst) {
        return;
    }
    let (read_fd, write_fd) = (READ_FD.swap(-1, SeqCst), WRITE_FD.swap(-1, SeqCst));
    // SAFETY: the child's copies of the parent's pipe, used by nothing here.
    unsafe {
        libc::close(read_fd);
        libc::close(write_fd);
    }
    start_waiter();
}
