//! The file a recording writes to, and the rules that keep a recording
//! from harming anything else on the machine.
//!
//! - Created at start, new (`O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`),
//!   with the recording's file mode (0600 unless widened), and locked
//!   (`flock`) until the recording ends: two processes given the same path
//!   never write over each other, whatever the timing; the second records
//!   to `<path>.<pid>` instead.
//! - An existing path is replaced only when it is a regular file of the
//!   recording user that no live recording holds and that is an aiocop
//!   trace (or empty): it is locked, unlinked, and a new file created in
//!   its place. A user's own file given by mistake (`-o notes.txt`, a
//!   script) is never removed: the recording goes to `<path>.<pid>`. Nothing is ever truncated or
//!   written through a path that could have been swapped, so a symlink (or
//!   another user's file) planted at the path is never followed: the
//!   recording goes to `<path>.<pid>`, under the same rules, or fails with
//!   a message naming both paths.
//! - A file that got no slice is removed when the recording ends: a process
//!   that never runs a monitored loop (a server's supervisor,
//!   multiprocessing's resource tracker) leaves no file behind.
//! - A FIFO or a character device (`/dev/null`) is written as it is, never
//!   created or removed. It is opened non-blocking, so that opening never
//!   waits: a FIFO that no process reads is refused at once.
//!
//! Its descriptor is known to the fork handler, which closes it in the
//! child: an inherited copy would keep the parent's lock alive after the
//! parent is gone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use aiocop_trace::format::MAGIC;

/// The mode of a trace file unless the user widens it: traces hold
/// command lines, paths and host names.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// A file opened for a recording, and the path it has.
pub struct Created {
    pub file: File,
    pub path: String,
    /// `path` is `<the path asked for>.<pid>`; the reason the path asked
    /// for was not used.
    pub moved_aside: Option<&'static str>,
    /// A regular file this recording created (removed if it stays empty),
    /// not a FIFO or a device.
    pub created: bool,
}

/// Opens `path` for a new recording (see the module doc); if the path is
/// held by another recording or is not ours to replace, `<path>.<pid>`.
pub fn create_locked(path: &str, mode: u32) -> io::Result<Created> {
    let reason = match claim(path, mode)? {
        Claim::Opened(file, created) => return Ok(Created { file, path: path.to_owned(), moved_aside: None, created }),
        Claim::Refused(reason) => reason,
    };
    let aside = format!("{path}.{}", std::process::id());
    match claim(&aside, mode)? {
        Claim::Opened(file, created) => Ok(Created { file, path: aside, moved_aside: Some(reason), created }),
        Claim::Refused(aside_reason) => {
            Err(io::Error::other(format!("'{path}' {reason}, and '{aside}' {aside_reason}; not recording")))
        }
    }
}

enum Claim {
    /// The file, and whether this recording created it.
    Opened(File, bool),
    /// Why the path is not this recording's to use (another may be).
    Refused(&'static str),
}

/// Times a path may change under `claim` (another process replacing the
/// same file) before it gives up on it.
const CLAIM_ATTEMPTS: usize = 5;

fn claim(path: &str, mode: u32) -> io::Result<Claim> {
    for _ in 0..CLAIM_ATTEMPTS {
        let metadata = match fs::symlink_metadata(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => match create_new(path, mode) {
                Ok(Some(file)) => return Ok(Claim::Opened(file, true)),
                Ok(None) => return Ok(Claim::Refused("is being recorded by another process")),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            },
            Err(error) => return Err(error),
            Ok(metadata) => metadata,
        };
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            return Ok(Claim::Refused("is a symbolic link"));
        }
        if file_type.is_fifo() || file_type.is_char_device() {
            return open_stream(path).map(|file| Claim::Opened(file, false));
        }
        if !file_type.is_file() {
            return Err(io::Error::other("is not a regular file, a FIFO or a device"));
        }
        // SAFETY: geteuid cannot fail.
        if metadata.uid() != unsafe { libc::geteuid() } {
            return Ok(Claim::Refused("belongs to another user"));
        }
        match remove_unheld(path)? {
            Removal::Removed | Removal::Changed => continue,
            Removal::Held => return Ok(Claim::Refused("is being recorded by another process")),
            Removal::NotATrace => return Ok(Claim::Refused("is not an aiocop trace")),
        }
    }
    Ok(Claim::Refused("keeps being replaced by other processes"))
}

/// A new file at `path` with exactly `mode` (whatever the umask), locked;
/// `None` if another process locked it first (it is then theirs).
fn create_new(path: &str, mode: u32) -> io::Result<Option<File>> {
    // create_new is O_CREAT | O_EXCL, which never follows a symlink; std
    // adds O_CLOEXEC.
    let file = OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    if !lock(&file) {
        return Ok(None);
    }
    // Another process may have replaced it before the lock was taken.
    Ok(is_at(&file, path).then_some(file))
}

enum Removal {
    Removed,
    /// Another recording holds it.
    Held,
    /// The path changed while looking at it: look again.
    Changed,
    /// It holds something other than a trace: not a recording's to remove.
    NotATrace,
}

/// Removes the regular file at `path` if it is a trace (or empty) that no
/// live recording holds; never writes to it. The lock is held across the unlink, so that two
/// processes replacing the same file never remove each other's new one.
fn remove_unheld(path: &str) -> io::Result<Removal> {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
        Ok(file) => file,
        Err(error) if matches!(error.kind(), io::ErrorKind::NotFound) => return Ok(Removal::Changed),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => return Ok(Removal::Changed),
        Err(error) => return Err(error),
    };
    // SAFETY: geteuid cannot fail.
    let ours = file.metadata().is_ok_and(|m| m.is_file() && m.uid() == unsafe { libc::geteuid() });
    if !ours {
        return Ok(Removal::Changed);
    }
    if !lock(&file) {
        return Ok(Removal::Held);
    }
    if !is_at(&file, path) {
        return Ok(Removal::Changed);
    }
    if !holds_a_trace_or_nothing(&file)? {
        return Ok(Removal::NotATrace);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(Removal::Removed),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Removal::Changed),
        Err(error) => Err(error),
    }
}

/// Whether `file` is empty or starts as a trace does (a recording cut
/// short may hold fewer bytes than the magic): the only files a new
/// recording may replace.
fn holds_a_trace_or_nothing(mut file: &File) -> io::Result<bool> {
    let mut head = [0u8; MAGIC.len()];
    let mut read = 0;
    while read < head.len() {
        match io::Read::read(&mut file, &mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(head[..read] == MAGIC[..read])
}

/// Takes the file's lock: false if another process holds it. Where the
/// file system cannot lock, the file is used unlocked.
fn lock(file: &File) -> bool {
    !matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
}

/// Whether `path` (not followed) is the file `file` is open on.
fn is_at(file: &File, path: &str) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

/// Opens a FIFO or a device for writing without waiting for a reader; its
/// writes do not block either until [`make_blocking`].
fn open_stream(path: &str) -> io::Result<File> {
    let file = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
        |error| match error.raw_os_error() {
            Some(libc::ENXIO) => io::Error::other("is a FIFO that no process is reading"),
            _ => error,
        },
    )?;
    // The path may have been swapped for a regular file since it was looked
    // at: never write into a file this recording did not create.
    let file_type = file.metadata()?.file_type();
    if !(file_type.is_fifo() || file_type.is_char_device()) {
        return Err(io::Error::other("changed while being opened"));
    }
    Ok(file)
}

/// Makes writes to a FIFO or device opened by [`create_locked`] wait
/// again: the writer thread's writes, never the program's.
pub fn make_blocking(file: &File) -> io::Result<()> {
    // SAFETY: fcntl on an open descriptor; reads, then sets, its status flags.
    let cleared = unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        flags >= 0 && libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if cleared {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes a file this recording created and wrote nothing to, if the path
/// still names it; call before closing it, while its lock is held.
pub fn remove_unused(file: &File, path: &str) {
    if is_at(file, path) {
        let _ = fs::remove_file(path);
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

/// The file open on `fd` is about to be closed by its writer. A writer
/// given up on at exit may close its file after a new recording published
/// its own: that one stays published.
pub fn unpublish(fd: i32) {
    let _creating = CREATING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = CURRENT_FD.compare_exchange(fd, -1, Relaxed, Relaxed);
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
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn temp_path(tag: &str) -> String {
        let dir = std::env::temp_dir().join(format!("aiocop-trace-file-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("trace.bin").to_string_lossy().into_owned()
    }

    fn aside(path: &str) -> String {
        format!("{path}.{}", std::process::id())
    }

    fn mode_of(path: &str) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A file the trace path may be made to point at.
    fn victim(path: &str) -> String {
        let victim = path.replace("trace.bin", "victim.txt");
        fs::write(&victim, b"precious").unwrap();
        victim
    }

    #[test]
    fn a_new_path_is_created_locked_and_private() {
        let path = temp_path("new");
        let created = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        assert!(created.created && created.moved_aside.is_none());
        assert_eq!(mode_of(&path), 0o600);
        assert!(matches!(File::open(&path).unwrap().try_lock(), Err(fs::TryLockError::WouldBlock)));
    }

    #[test]
    fn the_mode_asked_for_is_the_mode_whatever_the_umask() {
        let path = temp_path("mode");
        create_locked(&path, 0o640).unwrap();
        assert_eq!(mode_of(&path), 0o640);
    }

    #[test]
    fn an_unused_file_is_removed() {
        let path = temp_path("unused");
        let created = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        remove_unused(&created.file, &created.path);
        assert!(!Path::new(&path).exists());
    }

    #[test]
    fn a_path_in_a_missing_directory_fails() {
        let path = temp_path("missing").replace("trace.bin", "no/such/dir/trace.bin");
        assert_eq!(create_locked(&path, DEFAULT_FILE_MODE).err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn an_old_file_of_ours_is_replaced_not_truncated() {
        let path = temp_path("existing");
        fs::write(&path, b"AIOCOPTR earlier").unwrap();
        let hard_link = path.replace("trace.bin", "other-name");
        fs::hard_link(&path, &hard_link).unwrap();
        let created = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        assert!(created.moved_aside.is_none());
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(fs::read(&hard_link).unwrap(), b"AIOCOPTR earlier", "the old file was unlinked, not written");
    }

    #[test]
    fn an_empty_file_or_a_trace_cut_inside_its_magic_is_replaced() {
        for (tag, bytes) in [("empty", &b""[..]), ("cut", &b"AIOC"[..])] {
            let path = temp_path(tag);
            fs::write(&path, bytes).unwrap();
            assert!(create_locked(&path, DEFAULT_FILE_MODE).unwrap().moved_aside.is_none(), "{tag}");
        }
    }

    #[test]
    fn a_file_of_ours_that_is_not_a_trace_is_never_removed() {
        let path = temp_path("not-a-trace");
        fs::write(&path, b"my notes").unwrap();
        let created = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        assert_eq!(created.path, aside(&path));
        assert_eq!(created.moved_aside, Some("is not an aiocop trace"));
        assert_eq!(fs::read(&path).unwrap(), b"my notes");
    }

    #[test]
    fn a_symlink_at_the_path_is_not_followed() {
        let path = temp_path("symlink");
        let victim = victim(&path);
        symlink(&victim, &path).unwrap();
        let created = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        assert_eq!(created.path, aside(&path));
        assert_eq!(created.moved_aside, Some("is a symbolic link"));
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_dangling_symlink_at_the_path_is_not_followed() {
        let path = temp_path("dangling");
        let target = path.replace("trace.bin", "would-be-created");
        symlink(&target, &path).unwrap();
        assert_eq!(create_locked(&path, DEFAULT_FILE_MODE).unwrap().path, aside(&path));
        assert!(!Path::new(&target).exists());
    }

    #[test]
    fn a_symlink_at_the_fallback_path_is_not_followed_either() {
        let path = temp_path("symlink-aside");
        let victim = victim(&path);
        symlink(&victim, &path).unwrap();
        symlink(&victim, aside(&path)).unwrap();
        let message = create_locked(&path, DEFAULT_FILE_MODE).err().unwrap().to_string();
        assert!(message.contains(&path) && message.contains(&aside(&path)), "{message}");
        assert!(message.contains("symbolic link"), "{message}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_locked_path_is_neither_truncated_nor_shared() {
        let path = temp_path("locked");
        let mut first = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        io::Write::write_all(&mut first.file, b"AIOCOPTR first recording").unwrap();
        let second = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        assert!(second.moved_aside.is_some());
        assert_eq!(second.path, aside(&path));
        assert_eq!(fs::read(&path).unwrap(), b"AIOCOPTR first recording", "the live recording was not cut");
        drop(first);
        drop(second);
        let third = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        assert!(third.moved_aside.is_none(), "a file no live process holds is replaced");
        assert_eq!(fs::read(&path).unwrap(), b"");
    }

    fn make_fifo(path: &str) {
        let c_path = std::ffi::CString::new(path).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn a_fifo_nobody_reads_is_refused_at_once() {
        let path = temp_path("fifo-unread");
        make_fifo(&path);
        let message = create_locked(&path, DEFAULT_FILE_MODE).err().unwrap().to_string();
        assert_eq!(message, "is a FIFO that no process is reading");
    }

    #[test]
    fn a_fifo_with_a_reader_is_opened_at_once_then_made_blocking() {
        let path = temp_path("fifo-read");
        make_fifo(&path);
        let reader = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
        let created = create_locked(&path, DEFAULT_FILE_MODE).unwrap();
        assert!(!created.created && created.moved_aside.is_none());
        // SAFETY: reads the status flags of an open descriptor.
        let flags = || unsafe { libc::fcntl(created.file.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(flags() & libc::O_NONBLOCK, 0);
        make_blocking(&created.file).unwrap();
        assert_eq!(flags() & libc::O_NONBLOCK, 0);
        drop(reader);
    }
}
