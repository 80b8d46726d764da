//! Reading the loop thread's Python frames from the watchdog thread, while
//! the loop thread runs, as py-spy and CPython 3.15's Tachyon do from
//! outside the process.
//!
//! A pending call (see `sampler.rs`) runs only at the loop thread's next
//! eval-breaker check, which C code holding the GIL (a sort, the C JSON
//! encoder, pydantic-core) delays until it returns. Read from another
//! thread, the frames say where the loop thread is *now*, inside the C call
//! too: each sample is taken when it is due.
//!
//! Invariants (this reads memory another thread changes as we read it):
//! - Every read goes through `process_vm_readv` on our own pid: a read of
//!   memory that was freed and unmapped meanwhile returns an error instead
//!   of faulting. No pointer of the other thread is ever dereferenced, and
//!   nothing is written.
//! - Every walk of a frame chain is bounded ([`MAX_WALK`]).
//! - A read is kept only if the thread's current frame and its instruction
//!   are the same after the walk as before it (else the chain may be torn),
//!   and, by the caller, only if every code object in it is one the stack
//!   registry keeps alive (so an address can never be a freed and reused
//!   one): anything else falls back to a pending call.
//! - Where the layout is not known exactly, or the kernel forbids the
//!   system call (seccomp, some containers: EPERM/ENOSYS), nothing is read.
//!
//! The layout: on 3.13 and later the interpreter publishes it in
//! `_Py_DebugOffsets`, the first member of `_PyRuntime` (cookie `xdebugpy`,
//! CPython's Include/internal/pycore_debug_offsets.h; pycore_runtime.h on
//! 3.13); on 3.11 and 3.12 it comes from the internal headers at build time
//! (`csrc/frame_offsets.c`), where the build found them.

use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::OnceLock;

/// Frames walked at most per read, the interpreter's own entry frames
/// included: a bound for a chain that is corrupt or cyclic.
pub const MAX_WALK: usize = 1024;

/// Where the frame fields are in the running interpreter's structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// 3.11 and 3.12: `PyThreadState.cframe`, whose `current_frame` is the
    /// frame; later: none, `current_frame` is in the thread state.
    pub cframe: Option<u64>,
    pub current_frame: u64,
    pub previous: u64,
    pub executable: u64,
    /// `prev_instr` (3.11, 3.12) or `instr_ptr`: either way the instruction
    /// offset is its distance from the code's first code unit, in bytes, as
    /// `PyFrame_GetLasti` gives it.
    pub instr: u64,
    pub owner: u64,
    /// `PyCodeObject.co_code_adaptive`: the first code unit.
    pub code_adaptive: u64,
    /// `PyCodeObject.co_firstlineno` (an int): checks that a code object
    /// read at an address is the one the registry later knows there.
    pub code_firstlineno: u64,
    /// Frames owned by this or higher are the interpreter's own entry and
    /// shim frames (`FRAME_OWNED_BY_CSTACK` from 3.12), never shown.
    pub first_internal_owner: u8,
    /// The low bits of `executable` that tag a stack reference (3.14+).
    pub tag_mask: u64,
}

/// A frame as read: its code object's address, instruction offset (bytes,
/// -1 before the first) and whether a generator or coroutine owns it; for
/// a code the registry did not know at the time, its first line as read
/// then (the registry's code at that address must have the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteFrame {
    pub code: usize,
    pub lasti: i32,
    pub owned_by_generator: bool,
    pub first_line: Option<i32>,
}

/// A stack as read, innermost first, and where the thread was: the current
/// frame's address and its instruction pointer (equal in two reads: the
/// thread did not move on in between).
#[derive(Clone, Debug, Default)]
pub struct RemoteStack {
    pub frames: Vec<RemoteFrame>,
    pub position: (u64, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The kernel refuses the system call (errno).
    Denied(i32),
    /// Memory not readable (freed meanwhile) or read short.
    Unreadable,
    /// The thread moved while we walked its frames.
    Moved,
}

/// The frame fields of one frame.
struct FrameFields {
    previous: u64,
    executable: u64,
    instr: u64,
    owner: u8,
}

const FRAME_OWNED_BY_GENERATOR: u8 = 1;

static PID: AtomicI32 = AtomicI32::new(0);

/// The pid reads go to: ours, taken again after a fork.
pub fn reset_pid() {
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Relaxed);
}

/// Copies `buffer.len()` bytes at `address` of this process into `buffer`,
/// or fails without touching the memory (process_vm_readv).
pub fn read_into(address: u64, buffer: &mut [u8]) -> Result<(), ReadError> {
    let mut pid = PID.load(Relaxed);
    if pid == 0 {
        reset_pid();
        pid = PID.load(Relaxed);
    }
    let local = libc::iovec { iov_base: buffer.as_mut_ptr().cast::<c_void>(), iov_len: buffer.len() };
    let remote = libc::iovec { iov_base: address as *mut c_void, iov_len: buffer.len() };
    // SAFETY: the kernel writes at most `buffer.len()` bytes into `buffer`,
    // which we own; the remote range is only read, by the kernel, which
    // reports unmapped memory as an error.
    let read = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if read == buffer.len() as isize {
        return Ok(());
    }
    if read < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if matches!(errno, libc::EPERM | libc::ENOSYS | libc::EACCES) {
            return Err(ReadError::Denied(errno));
        }
    }
    Err(ReadError::Unreadable)
}

fn read_u64(address: u64) -> Result<u64, ReadError> {
    let mut bytes = [0u8; 8];
    read_into(address, &mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

impl Layout {
    /// The byte range of a frame that holds every field we read.
    fn frame_span(&self) -> (u64, usize) {
        let fields = [self.previous, self.executable, self.instr, self.owner];
        let start = fields.iter().copied().min().unwrap_or(0);
        let end = fields.iter().copied().max().unwrap_or(0) + 8;
        (start, (end - start) as usize)
    }

    fn read_frame(&self, address: u64) -> Result<FrameFields, ReadError> {
        let (start, length) = self.frame_span();
        let mut bytes = [0u8; 256];
        let bytes = bytes.get_mut(..length).ok_or(ReadError::Unreadable)?;
        read_into(address + start, bytes)?;
        let word = |offset: u64| {
            let at = (offset - start) as usize;
            u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        Ok(FrameFields {
            previous: word(self.previous),
            executable: word(self.executable) & !self.tag_mask,
            instr: word(self.instr),
            owner: bytes[(self.owner - start) as usize],
        })
    }

    fn read_current_frame(&self, thread_state: u64) -> Result<u64, ReadError> {
        match self.cframe {
            Some(cframe) => {
                let cframe = read_u64(thread_state + cframe)?;
                if cframe == 0 {
                    return Ok(0);
                }
                read_u64(cframe + self.current_frame)
            }
            None => read_u64(thread_state + self.current_frame),
        }
    }

    /// The frames of the thread whose `PyThreadState` is at `thread_state`,
    /// innermost first, at most `limit` of the program's (entry frames
    /// skipped); an error if any read fails or the thread moved meanwhile.
    pub fn read_stack(&self, thread_state: u64, limit: usize) -> Result<RemoteStack, ReadError> {
        let top = self.read_current_frame(thread_state)?;
        let mut stack = RemoteStack::default();
        let mut address = top;
        for walked in 0..MAX_WALK {
            if address == 0 || stack.frames.len() >= limit {
                break;
            }
            let fields = self.read_frame(address)?;
            if walked == 0 {
                stack.position = (address, fields.instr);
            }
            if fields.owner < self.first_internal_owner {
                stack.frames.push(RemoteFrame {
                    code: fields.executable as usize,
                    lasti: self.lasti(&fields),
                    owned_by_generator: fields.owner == FRAME_OWNED_BY_GENERATOR,
                    first_line: None,
                });
            }
            address = fields.previous;
        }
        // The chain may have been torn if the thread returned or called
        // while we walked: keep the read only if it is where it was.
        if self.read_current_frame(thread_state)? != top {
            return Err(ReadError::Moved);
        }
        if top != 0 && self.read_frame(top)?.instr != stack.position.1 {
            return Err(ReadError::Moved);
        }
        Ok(stack)
    }

    /// The first line of the code object at `code` (`co_firstlineno`).
    pub fn read_first_line(&self, code: usize) -> Result<i32, ReadError> {
        let mut bytes = [0u8; 4];
        read_into(code as u64 + self.code_firstlineno, &mut bytes)?;
        Ok(i32::from_ne_bytes(bytes))
    }

    /// The instruction offset in bytes, as `PyFrame_GetLasti` gives it (-1
    /// before the first instruction).
    fn lasti(&self, fields: &FrameFields) -> i32 {
        let first = fields.executable.wrapping_add(self.code_adaptive);
        if fields.instr < first {
            return -1;
        }
        i32::try_from(fields.instr - first).unwrap_or(i32::MAX)
    }
}

/// The layout of the running interpreter, or why there is none: found once.
static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();

/// The layout, once [`init`] found it exact.
pub fn layout() -> Option<&'static Layout> {
    LAYOUT.get().and_then(|found| found.as_ref().ok())
}

/// Finds the layout of the running interpreter (`version`), once; the
/// error says why frames cannot be read here.
pub fn init(version: (u8, u8)) -> Result<&'static Layout, &'static str> {
    let found = LAYOUT.get_or_init(|| {
        reset_pid();
        find_layout(version)
    });
    found.as_ref().map_err(String::as_str)
}

fn find_layout(version: (u8, u8)) -> Result<Layout, String> {
    probe_the_system_call()?;
    match version {
        (3, 11) | (3, 12) => built::layout(version),
        (3, 13..=15) => debug_offsets::layout(version),
        _ => Err(format!("Python {}.{} is not one whose frame layout aiocop knows", version.0, version.1)),
    }
}

/// Reads a value of our own: fails if the kernel refuses the call here.
fn probe_the_system_call() -> Result<(), String> {
    let value = 0x6169_6f63_6f70_u64;
    let mut bytes = [0u8; 8];
    match read_into(&value as *const u64 as u64, &mut bytes) {
        Ok(()) if u64::from_ne_bytes(bytes) == value => Ok(()),
        Err(ReadError::Denied(errno)) => Err(format!("process_vm_readv is not allowed here (errno {errno})")),
        _ => Err("process_vm_readv does not read this process's memory".to_owned()),
    }
}

#[cfg(aiocop_eval_breaker)]
mod built {
    use super::Layout;

    extern "C" {
        fn aiocop_frame_offsets(out: *mut usize);
        fn aiocop_frame_offsets_built_for() -> std::ffi::c_ulong;
    }

    /// From the internal headers the extension was built against, if it
    /// was built for the running minor version.
    pub fn layout(running: (u8, u8)) -> Result<Layout, String> {
        let mut offsets = [0usize; 8];
        // SAFETY: the C function writes exactly 8 values; the other one is constant.
        let hex = unsafe {
            aiocop_frame_offsets(offsets.as_mut_ptr());
            aiocop_frame_offsets_built_for()
        };
        let built_for = (((hex >> 24) & 0xff) as u8, ((hex >> 16) & 0xff) as u8);
        if built_for != running {
            return Err(format!("built for {}.{}", built_for.0, built_for.1));
        }
        let [cframe, current_frame, previous, executable, instr, owner, code_adaptive, code_firstlineno] =
            offsets.map(|o| o as u64);
        Ok(Layout {
            cframe: Some(cframe),
            current_frame,
            previous,
            executable,
            instr,
            owner,
            code_adaptive,
            code_firstlineno,
            // 3.11 has no entry frames of its own; 3.12's are FRAME_OWNED_BY_CSTACK (3).
            first_internal_owner: if running.1 == 11 { u8::MAX } else { 3 },
            tag_mask: 0,
        })
    }
}

#[cfg(not(aiocop_eval_breaker))]
mod built {
    pub fn layout(running: (u8, u8)) -> Result<super::Layout, String> {
        Err(format!("built without CPython {}.{}'s internal headers", running.0, running.1))
    }
}

/// `_Py_DebugOffsets`: a cookie, then `u64` fields in sections whose order
/// is fixed per minor version. The indices below count `u64`s after the
/// cookie, read from each version's header
/// (Include/internal/pycore_runtime.h on 3.13, pycore_debug_offsets.h on
/// 3.14 and 3.15).
mod debug_offsets {
    use super::{read_into, Layout};

    const COOKIE: &[u8; 8] = b"xdebugpy";

    /// Indices (in u64s after the cookie) of the fields we need.
    struct Indices {
        version: usize,
        free_threaded: usize,
        thread_current_frame: usize,
        frame_previous: usize,
        frame_executable: usize,
        frame_instr_ptr: usize,
        frame_owner: usize,
        code_adaptive: usize,
        code_firstlineno: usize,
        /// One past the last index read.
        end: usize,
    }

    fn indices(minor: u8) -> Option<Indices> {
        // Shared start: version, free_threaded, runtime_state {size,
        // finalizing, interpreters_head}; then interpreter_state.
        let interpreter_state = 5;
        let (interpreter_fields, thread_fields, current_frame_at, err_stackitem, frame_fields) = match minor {
            // 3.13: interpreter_state has 13 fields, thread_state 9
            // (current_frame the 5th), interpreter_frame 6.
            13 => (13, 9, 4, 0, 6),
            // 3.14: interpreter_state 16, thread_state 9, interpreter_frame 8.
            14 => (16, 9, 4, 0, 8),
            // 3.15: interpreter_state 16, thread_state 16, then
            // err_stackitem (1), interpreter_frame 8.
            15 => (16, 16, 4, 1, 8),
            _ => return None,
        };
        let thread_state = interpreter_state + interpreter_fields;
        let frame = thread_state + thread_fields + err_stackitem;
        // interpreter_frame: size, previous, executable, instr_ptr, localsplus, owner, ...
        let code = frame + frame_fields;
        // code_object: size, filename, name, qualname, linetable, firstlineno,
        // argcount, localsplusnames, localspluskinds, co_code_adaptive, ...
        Some(Indices {
            version: 0,
            free_threaded: 1,
            thread_current_frame: thread_state + current_frame_at,
            frame_previous: frame + 1,
            frame_executable: frame + 2,
            frame_instr_ptr: frame + 3,
            frame_owner: frame + 5,
            code_adaptive: code + 9,
            code_firstlineno: code + 5,
            end: code + 10,
        })
    }

    pub fn layout(running: (u8, u8)) -> Result<Layout, String> {
        let indices = indices(running.1).ok_or("no _Py_DebugOffsets layout for this version")?;
        // SAFETY: dlsym on the process's own symbols.
        let runtime = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_PyRuntime".as_ptr()) } as u64;
        if runtime == 0 {
            return Err("_PyRuntime is not exported".to_owned());
        }
        let mut bytes = vec![0u8; 8 + 8 * indices.end];
        read_into(runtime, &mut bytes).map_err(|error| match error {
            super::ReadError::Denied(errno) => format!("process_vm_readv is not allowed here (errno {errno})"),
            _ => "_PyRuntime is not readable".to_owned(),
        })?;
        if &bytes[..8] != COOKIE {
            return Err("_PyRuntime does not start with the xdebugpy cookie".to_owned());
        }
        let field = |index: usize| {
            let at = 8 + 8 * index;
            u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        let version = field(indices.version);
        let published = (((version >> 24) & 0xff) as u8, ((version >> 16) & 0xff) as u8);
        if published != running {
            return Err(format!("_Py_DebugOffsets says {}.{}", published.0, published.1));
        }
        if field(indices.free_threaded) != 0 {
            return Err("free-threaded build".to_owned());
        }
        let layout = Layout {
            cframe: None,
            current_frame: field(indices.thread_current_frame),
            previous: field(indices.frame_previous),
            executable: field(indices.frame_executable),
            instr: field(indices.frame_instr_ptr),
            owner: field(indices.frame_owner),
            code_adaptive: field(indices.code_adaptive),
            code_firstlineno: field(indices.code_firstlineno),
            // 3.13: FRAME_OWNED_BY_CSTACK (3); 3.14+: FRAME_OWNED_BY_INTERPRETER (3), CSTACK (4).
            first_internal_owner: 3,
            // 3.14+: `executable` is a _PyStackRef (Py_TAG_BITS 3 in the GIL build).
            tag_mask: if running.1 >= 14 { 3 } else { 0 },
        };
        sane(&layout).then_some(layout).ok_or_else(|| format!("implausible offsets {layout:?}"))
    }

    /// Offsets inside the small structures they belong to: a wrong index
    /// would give a size or a far-away value.
    fn sane(layout: &Layout) -> bool {
        let frame_fields = [layout.previous, layout.executable, layout.instr, layout.owner];
        frame_fields.iter().all(|&offset| offset < 128)
            && layout.current_frame < 4096
            && (16..512).contains(&layout.code_adaptive)
            && (16..512).contains(&layout.code_firstlineno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_of_unmapped_memory_is_an_error_not_a_fault() {
        let mut buffer = [0u8; 8];
        assert_eq!(read_into(8, &mut buffer), Err(ReadError::Unreadable));
        let value = 0x1234_5678_u64;
        read_into(&value as *const u64 as u64, &mut buffer).unwrap();
        assert_eq!(u64::from_ne_bytes(buffer), value);
    }

    #[test]
    fn a_frame_chain_that_loops_is_walked_a_bounded_number_of_times() {
        // A "frame" whose previous pointer is itself, in our own memory.
        #[repr(C)]
        struct Fake {
            previous: u64,
            executable: u64,
            instr: u64,
            owner: u64,
        }
        let mut fake = Box::new(Fake { previous: 0, executable: 0x1000, instr: 0x1010, owner: 0 });
        let address = &*fake as *const Fake as u64;
        fake.previous = address;
        let thread_state = Box::new(address);
        let layout = Layout {
            cframe: None,
            current_frame: 0,
            previous: 0,
            executable: 8,
            instr: 16,
            owner: 24,
            code_adaptive: 8,
            code_firstlineno: 16,
            first_internal_owner: 3,
            tag_mask: 0,
        };
        let stack = layout.read_stack(&*thread_state as *const u64 as u64, usize::MAX).unwrap();
        assert_eq!(stack.frames.len(), MAX_WALK);
        assert_eq!(
            stack.frames[0],
            RemoteFrame { code: 0x1000, lasti: 8, owned_by_generator: false, first_line: None }
        );
    }
}
