//! aiocop's own threads (the recorder's writer, the CPU watchdog) never
//! take the process's asynchronous signals.
//!
//! A signal sent to the process goes to any thread that does not block it.
//! Where the program (or aiocop, in recording mode) has a Python-level
//! handler, the thread that takes the signal only notes it: the main thread
//! runs the handler at its next check, and a main thread blocked in a wait
//! that only a signal to itself would interrupt (a multiprocessing worker
//! waiting on its queue's lock) never does. So SIGTERM from a pool's
//! terminate() would leave the worker running.

/// Blocks the asynchronous signals in the calling thread; the synchronous
/// ones (faults) stay deliverable.
pub fn block_in_this_thread() {
    // SAFETY: plain libc calls on a local signal set; pthread_sigmask only
    // changes the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for synchronous in
            [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP, libc::SIGABRT, libc::SIGSYS]
        {
            libc::sigdelset(&mut set, synchronous);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
