//! The file a recording writes to.
//!
//! - Checked at start, so that a path that cannot be written fails loudly
//!   there, but created only when the writer first has something to write:
//!   a process that never runs a monitored loop (a server's supervisor,
//!   multiprocessing's resource tracker) leaves no file behind.
//! - Locked (`flock`) while written, and truncated only once locked: two
//!   processes given the same path never write over each other; the second
//!   records to `<path>.<pid>` instead.
//! - A path that is not a regular file (a FIFO, a device) is opened at start,
//!   as any writer would: there is no file to leave behind.
//!
//! Its descriptor is known to the fork handler, which closes it in the
//! child: an inherited copy would keep the parent's lock alive after the
//! parent is gone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// Where a recording goes, as checked at start.
pub enum Destination {
    /// A regular file, created (or truncated) when first written.
    Deferred,
    /// A FIFO or a device, opened at start.
    Opened(File),
}

/// Checks that `path` can be written, leaving nothing behind: an existing
/// regular file is opened without truncating it; a missing one is created
/// and removed again.
pub fn prepare(path: &str) -> io::Result<Destination> {
    match fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => Ok(Destination::Opened(OpenOptions::new().write(true).open(path)?)),
        Ok(_) => {
            OpenOptions::new().write(true).open(path)?;
            Ok(Destination::Deferred)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            File::create_new(path)?;
            fs::remove_file(path)?;
            Ok(Destination::Deferred)
        }
        Err(error) => Err(error),
    }
}

/// A file created for a recording, and the path it has.
pub struct Created {
    pub file: File,
    pub path: String,
    /// `path` is `<the path asked for>.<pid>`: another process holds that one.
    pub moved_aside: bool,
}

/// Creates (or truncates) `path` for a new recording, holding its lock; if
/// another live process holds it, creates `<path>.<pid>` instead.
pub fn create_locked(path: &str) -> io::Result<Created> {
    if let Some(file) = open_locked(path)? {
        return Ok(Created { file, path: path.to_owned(), moved_aside: false });
    }
    let aside = format!("{path}.{}", std::process::id());
    match open_locked(&aside)? {
        Some(file) => Ok(Created { file, path: aside, moved_aside: true }),
        None => Err(io::Error::new(io::ErrorKind::WouldBlock, format!("'{path}' and '{aside}' are locked by others"))),
    }
}

/// Opens `path` without truncating it, then locks it: `None` if another
/// process holds the lock. Truncated only once locked, so a live
/// recording is never cut. Where the file system cannot lock, the file is
/// written unlocked.
fn open_locked(path: &str) -> io::Result<Option<File>> {
    let file = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    match file.try_lock() {
        Ok(()) | Err(fs::TryLockError::Error(_)) => {
            file.set_len(0)?;
            Ok(Some(file))
        }
        Err(fs::TryLockError::WouldBlock) => Ok(None),
    }
}

/// The descriptor of the file being written, -1 for none.
static CURRENT_FD: AtomicI32 = AtomicI32::new(-1);

/// Held while a file is created and its descriptor published, and across a
/// fork, so that a child never misses a descriptor it inherited.
static CREATING: Mutex<()> = Mutex::new(());

/// Runs `create` under the creation lock and publishes the file's
/// descriptor for the fork handler.
pub fn create_published(create: impl FnOnce() -> io::Result<Created>) -> io::Result<Created> {
    let _creating = CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let created = create()?;
    CURRENT_FD.store(created.file.as_raw_fd(), Relaxed);
    Ok(created)
}

/// Publishes a file opened at start.
pub fn publish(file: &File) {
    CURRENT_FD.store(file.as_raw_fd(), Relaxed);
}

/// The file is about to be closed by its writer.
pub fn unpublish() {
    let _creating = CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    CURRENT_FD.store(-1, Relaxed);
}

/// Before fork: no file is being created while the process is copied.
pub fn hold_for_fork() -> MutexGuard<'static, ()> {
    CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// In a forked child: closes the copy of the parent's trace file, which
/// no thread of the child writes, so that its lock lives only as long as
/// the parent.
pub fn close_inherited() {
    let fd = CURRENT_FD.swap(-1, Relaxed);
    if fd >= 0 {
        // SAFETY: the descriptor was the parent's trace file, inherited by
        // fork; nothing in the child owns it (the writer thread that did
        // does not exist here), so it is closed exactly once.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> String {
        let dir = std::env::temp_dir().join(format!("aiocop-trace-file-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("trace.bin").to_string_lossy().into_owned()
    }

    #[test]
    fn preparing_a_new_path_leaves_no_file() {
        let path = temp_path("new");
        assert!(matches!(prepare(&path).unwrap(), Destination::Deferred));
        assert!(!std::path::Path::new(&path).exists());
    }

    #[test]
    fn preparing_an_existing_file_keeps_its_bytes() {
        let path = temp_path("existing");
        fs::write(&path, b"earlier").unwrap();
        assert!(matches!(prepare(&path).unwrap(), Destination::Deferred));
        assert_eq!(fs::read(&path).unwrap(), b"earlier");
    }

    #[test]
    fn a_path_in_a_missing_directory_fails_at_prepare() {
        let path = temp_path("missing").replace("trace.bin", "no/such/dir/trace.bin");
        assert_eq!(prepare(&path).err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn a_locked_path_is_neither_truncated_nor_shared() {
        let path = temp_path("locked");
        let first = create_locked(&path).unwrap();
        assert!(!first.moved_aside);
        fs::write(&path, b"first recording").unwrap();
        let second = create_locked(&path).unwrap();
        assert!(second.moved_aside);
        assert_eq!(second.path, format!("{path}.{}", std::process::id()));
        assert_eq!(fs::read(&path).unwrap(), b"first recording", "the live recording was not cut");
        drop(first);
        let third = create_locked(&path).unwrap();
        assert!(!third.moved_aside, "a file no live process holds is reused");
        assert_eq!(fs::read(&path).unwrap(), b"");
    }
}
