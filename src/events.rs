//! The table of audit events aiocop treats as blocking, with their weights.
//!
//! This is the single source of truth: the recorder's audit hook filters on
//! it, the Python package exposes it (`get_blocking_events_dict`), and traces
//! carry a copy so that they can be re-scored offline. The names and weights
//! are those of aiocop 1.2.1.

use crate::severity::{
    WEIGHT_HEAVY as HEAVY, WEIGHT_LIGHT as LIGHT, WEIGHT_MODERATE as MODERATE, WEIGHT_TRIVIAL as TRIVIAL,
};

/// Who raises the audit event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// CPython raises it itself.
    Native,
    /// CPython raises nothing; aiocop wraps the function named by the event
    /// (`patch_audit_functions`) so that calling it raises the event.
    Patched,
    /// Patched on Pythons before 3.13, which added a native `time.sleep` event.
    PatchedBeforePy313,
}

/// One audited event: its name, the weight it adds to a slice's score, and
/// who raises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockingEvent {
    /// The audit event's name (`"open"`, `"socket.connect"`).
    pub name: &'static str,
    /// What it adds to a slice's score (see [`crate::severity`]).
    pub weight: i64,
    /// Who raises it: the interpreter, or aiocop's patches.
    pub source: EventSource,
}

const fn native(name: &'static str, weight: i64) -> BlockingEvent {
    BlockingEvent { name, weight, source: EventSource::Native }
}

const fn patched(name: &'static str, weight: i64) -> BlockingEvent {
    BlockingEvent { name, weight, source: EventSource::Patched }
}

/// Every event aiocop watches. Order is that of aiocop 1.2.1's dictionary:
/// native events first, then patched ones.
pub const BLOCKING_EVENTS: &[BlockingEvent] = &[
    // Sleep: native from 3.13 on, patched before (see PatchedBeforePy313).
    BlockingEvent { name: "time.sleep", weight: HEAVY, source: EventSource::PatchedBeforePy313 },
    // Name resolution
    native("socket.getaddrinfo", HEAVY),
    native("socket.getnameinfo", HEAVY),
    native("socket.gethostbyname", HEAVY),
    native("socket.gethostbyaddr", HEAVY),
    // File system: opening and creating
    native("open", MODERATE),
    native("tempfile.mkdtemp", MODERATE),
    native("tempfile.mkstemp", MODERATE),
    // File system: scanning and traversal
    native("os.listdir", MODERATE),
    native("os.scandir", MODERATE),
    native("os.walk", HEAVY),
    native("os.fwalk", HEAVY),
    native("glob.glob", HEAVY),
    native("pathlib.Path.glob", HEAVY),
    native("pathlib.Path.rglob", HEAVY),
    // File system: mutation
    native("os.mkdir", MODERATE),
    native("os.rmdir", MODERATE),
    native("os.remove", MODERATE),
    native("os.rename", MODERATE),
    native("os.replace", MODERATE),
    native("os.link", MODERATE),
    native("os.symlink", MODERATE),
    native("os.truncate", MODERATE),
    native("shutil.copyfile", MODERATE),
    native("shutil.copymode", MODERATE),
    native("shutil.copystat", MODERATE),
    native("shutil.move", MODERATE),
    // File system: heavy recursion
    native("shutil.copytree", HEAVY),
    native("shutil.rmtree", HEAVY),
    // File system: locking
    native("fcntl.flock", LIGHT),
    native("fcntl.lockf", LIGHT),
    // High-level network libraries
    native("http.client.connect", HEAVY),
    native("urllib.Request", HEAVY),
    native("ftplib.connect", HEAVY),
    native("smtplib.connect", HEAVY),
    native("poplib.connect", HEAVY),
    native("imaplib.open", HEAVY),
    native("nntplib.connect", HEAVY),
    // System and subprocess
    native("os.system", HEAVY),
    native("os.spawn", HEAVY),
    native("os.posix_spawn", HEAVY),
    native("os.exec", HEAVY),
    native("os.fork", HEAVY),
    native("subprocess.Popen", HEAVY),
    native("os.kill", LIGHT),
    // Database
    native("sqlite3.connect", MODERATE),
    // Miscellaneous
    native("builtins.input", HEAVY),
    native("import", HEAVY),
    native("syslog.syslog", LIGHT),
    native("syslog.openlog", LIGHT),
    // Patched: path and metadata
    patched("os.getcwd", TRIVIAL),
    patched("os.path.abspath", TRIVIAL),
    patched("os.path.islink", TRIVIAL),
    patched("os.path.ismount", LIGHT),
    patched("os.readlink", LIGHT),
    patched("os.access", LIGHT),
    patched("os.stat", LIGHT),
    patched("os.statvfs", LIGHT),
    patched("os.path.samestat", LIGHT),
    patched("os.path.sameopenfile", LIGHT),
    // Patched: data transfer
    patched("os.sendfile", MODERATE),
    // Patched: socket connection
    patched("socket.socket.connect", HEAVY),
    patched("socket.socket.connect_ex", HEAVY),
    patched("socket.socket.accept", HEAVY),
    patched("socket.socket.bind", TRIVIAL),
    // Patched: socket data transfer
    patched("socket.socket.send", MODERATE),
    patched("socket.socket.sendto", MODERATE),
    patched("socket.socket.sendmsg", MODERATE),
    patched("socket.socket.sendall", MODERATE),
    patched("socket.socket.recv", MODERATE),
    patched("socket.socket.recv_into", MODERATE),
    patched("socket.socket.recvfrom", MODERATE),
    patched("socket.socket.recvfrom_into", MODERATE),
    patched("socket.socket.recvmsg", MODERATE),
    // Patched: SSL data transfer
    patched("ssl.SSLSocket.write", MODERATE),
    patched("ssl.SSLSocket.send", MODERATE),
    patched("ssl.SSLSocket.read", MODERATE),
    patched("ssl.SSLSocket.recv", MODERATE),
];

/// The index of `name` in [`BLOCKING_EVENTS`], if aiocop watches it.
///
/// Called for every audit event the interpreter raises, most of which are
/// not ours (`object.__getattr__`, `compile`, `exec`, ...), so it must be
/// cheap. A linear scan over 80 names of which most differ in length or
/// first byte is a handful of nanoseconds and allocates nothing.
pub fn event_index(name: &[u8]) -> Option<u16> {
    BLOCKING_EVENTS.iter().position(|event| event.name.as_bytes() == name).map(|index| index as u16)
}

/// Whether aiocop must patch the function named `event` to make it audited
/// on this Python version.
pub fn needs_patching(event: &BlockingEvent, python: (u8, u8)) -> bool {
    match event.source {
        EventSource::Native => false,
        EventSource::Patched => true,
        EventSource::PatchedBeforePy313 => python < (3, 13),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(name: &str) -> Option<i64> {
        event_index(name.as_bytes()).map(|i| BLOCKING_EVENTS[i as usize].weight)
    }

    #[test]
    fn weights_match_aiocop_1_2_1() {
        assert_eq!(weight("open"), Some(10));
        assert_eq!(weight("time.sleep"), Some(50));
        assert_eq!(weight("socket.socket.connect"), Some(50));
        assert_eq!(weight("socket.getaddrinfo"), Some(50));
        assert_eq!(weight("subprocess.Popen"), Some(50));
        assert_eq!(weight("os.stat"), Some(1));
        assert_eq!(weight("os.getcwd"), Some(0));
        assert_eq!(weight("sqlite3.connect"), Some(10));
        assert_eq!(weight("import"), Some(50));
        assert_eq!(BLOCKING_EVENTS.len(), 78);
    }

    #[test]
    fn events_that_are_not_blocking_are_rejected() {
        assert_eq!(event_index(b"object.__getattr__"), None);
        assert_eq!(event_index(b"compile"), None);
        assert_eq!(event_index(b""), None);
        assert_eq!(event_index(b"open "), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = BLOCKING_EVENTS.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BLOCKING_EVENTS.len());
    }

    #[test]
    fn time_sleep_is_patched_only_before_3_13() {
        let sleep = BLOCKING_EVENTS[event_index(b"time.sleep").unwrap() as usize];
        assert!(needs_patching(&sleep, (3, 11)));
        assert!(!needs_patching(&sleep, (3, 13)));
        let open = BLOCKING_EVENTS[event_index(b"open").unwrap() as usize];
        assert!(!needs_patching(&open, (3, 11)));
    }
}
