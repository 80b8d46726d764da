//! The recording session: starting a recording (file, buffer, writer
//! thread), stopping it, and giving up on a writer that cannot finish.
//!
//! Place in the flow (record -> trace file): it switches the flow on and
//! off. `start` opens the trace file, empties the buffer, starts a new
//! registry generation and the writer thread, then sets the active flag;
//! `stop` clears the flag, asks the writer to write what is buffered and
//! the footer, and waits for it at most `STOP_WAIT`.

use super::writer::{self, Output, WriterOutcome, WriterProgress};
use super::{buffer, registry, settings, settings::Settings};
use crate::config;
use pyo3::prelude::*;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub(super) struct RunningRecorder {
    pub settings: Settings,
    /// The file being written (`<path>.<pid>` if moved aside).
    pub path: String,
    /// Why, if so: said once, through the logger, once started.
    pub moved_aside: Option<String>,
    /// What the writer thread reports when it ends.
    pub done: mpsc::Receiver<WriterOutcome>,
    progress: Arc<WriterProgress>,
}

/// How long stopping (at exit, on SIGTERM) waits for the writer to write
/// what is buffered and the footer; past it, a writer that cannot make
/// progress (a FIFO whose reader stopped reading, a hung file system) is
/// given up on, and what it did not write is counted and logged once.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

pub(super) static RECORDER: Mutex<Option<RunningRecorder>> = Mutex::new(None);

/// Starts recording to `settings.path_template` (with `{pid}` expanded).
/// Fails, recording nothing, if the file cannot be created or written.
pub fn start(settings: Settings) -> Result<String, String> {
    let mut recorder = RECORDER.lock().map_err(|_| "aiocop recorder state is poisoned".to_owned())?;
    if recorder.is_some() {
        return Err("aiocop is already recording; call stop_recording() first".to_owned());
    }
    let mut running = spawn_writer(settings)?;
    let path = running.path.clone();
    let moved_aside = running.moved_aside.take();
    *recorder = Some(running);
    drop(recorder); // a logging handler may ask for the recording's path
    if let Some(notice) = moved_aside {
        writer::log_warning(&notice);
    }
    Ok(path)
}

/// Opens the trace file and starts its writer thread, then the recording.
pub(super) fn spawn_writer(settings: Settings) -> Result<RunningRecorder, String> {
    let output = Output::open(&settings)?;
    let (path, moved_aside) = (output.path.clone(), output.moved_aside.clone());
    buffer::start(settings.max_buffered_slices.max(1));
    // After the buffer is emptied: names announced from here on are this recording's.
    registry::start_generation();
    settings::set_records_context(settings.record_context);
    crate::redact::start(&settings.redaction);
    let spawned = writer::spawn(output, settings.flush_interval)?;
    settings::set_active(true);
    Ok(RunningRecorder { settings, path, moved_aside, done: spawned.done, progress: spawned.progress })
}

/// Stops recording: the writer writes what is buffered and the footer.
/// Returns what was written, or None if not recording.
pub fn stop(py: Python<'_>) -> Option<(String, WriterOutcome)> {
    // The writer may need the GIL to log an error: wait without holding it.
    let stopped = py.detach(stop_without_the_gil);
    if let Some(message) = stopped.as_ref().filter(|(_, outcome)| outcome.gave_up).and_then(|(_, o)| o.error.as_ref()) {
        config::log_warning(py, message);
    }
    stopped
}

/// Held for the whole of a stop, so that a second stopper (the SIGTERM
/// waiter, while the program's exit handler stops) returns only once the
/// file is written: it may then end the process.
pub(super) static STOPPING: Mutex<()> = Mutex::new(());

/// [`stop`], from a thread that does not hold the GIL.
pub fn stop_without_the_gil() -> Option<(String, WriterOutcome)> {
    let _stopping = STOPPING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let running = RECORDER.lock().ok()?.take()?;
    settings::set_active(false);
    buffer::request_stop();
    let outcome = match running.done.recv_timeout(STOP_WAIT) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => give_up_on_writer(&running),
        Err(mpsc::RecvTimeoutError::Disconnected) => WriterOutcome::default(),
    };
    Some((outcome.path.clone().unwrap_or(running.path), outcome))
}

/// The writer did not finish within [`STOP_WAIT`]: leave it blocked (the
/// process may now exit), and count what it has not written.
fn give_up_on_writer(running: &RunningRecorder) -> WriterOutcome {
    let progress = &running.progress;
    let buffered = buffer::abandon(|| progress.abandoned.store(true, Relaxed));
    let not_written = buffered + progress.in_flight.load(Relaxed);
    let path = &running.path;
    let wait_s = STOP_WAIT.as_secs();
    WriterOutcome {
        slices: progress.slices.load(Relaxed),
        events: progress.events.load(Relaxed),
        dropped_slices: progress.dropped_slices.load(Relaxed) + not_written,
        error: Some(format!(
            "aiocop: writing '{path}' did not finish within {wait_s} s (a reader that stopped reading, or a stalled \
             disk); gave up: {not_written} slices not written, the trace is cut short"
        )),
        path: Some(path.clone()),
        gave_up: true,
        ..WriterOutcome::default()
    }
}

/// The file the current recording writes, if any.
pub fn current_path() -> Option<String> {
    RECORDER.lock().ok()?.as_ref().map(|r| r.path.clone())
}
