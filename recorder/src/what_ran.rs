//! What ran in a recorded slice, and on which thread: the what-id (a shared
//! string id) of the callback, the task's token (which names it in the
//! trace, see `recording::registry`), and the thread's number.
//!
//! A task step is named by its coroutine's qualname; any other callback by
//! its code's or its own qualname. Almost every slice is a step of a task
//! the thread has run before: for it, `describe` does one thread-local
//! access, a multiply and a few compares (a hash look-up if the small cache
//! misses), touching no reference count and running no Python code.
//! Anything else takes attribute reads, whose results are cached per thread.

use crate::recording::registry::{self, shared_string_id, NO_TASK};
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;
use pyo3::{ffi, intern};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

/// What the monitored callback was, for `SliceRecord::what`.
pub enum Ran<'a, 'py> {
    /// A stock asyncio handle: its `_callback` ran.
    Handle(&'a Bound<'py, PyAny>),
    /// The callback itself (uvloop).
    Callback(&'a Bound<'py, PyAny>),
}

/// What the recorder knows about a slice's callback and thread.
pub struct Described {
    pub what: u32,
    /// The task's token, or `NO_TASK` if no task ran.
    pub task: u32,
    pub thread: u32,
    /// This thread saw the task for the first time (a new task's first
    /// step, when the recording began before it).
    pub new_task: bool,
}

/// What the recorder keeps per thread, in one thread-local so that a slice
/// costs one thread-local access (each is a call into the dynamic linker
/// from a shared library).
struct ThreadState {
    /// The thread's number in the trace; 0 until its first slice.
    number: u32,
    /// The tasks seen on this thread, by address, so that a step of any of
    /// them (a server interleaves thousands) costs a hash look-up.
    tasks: FxHashMap<usize, KnownTask>,
    /// In front of `tasks`: the last task seen in each of a few slots, so
    /// that most steps cost a multiply and a few compares. Its weak
    /// reference pointers are borrowed from `tasks`: it is emptied whenever
    /// a task leaves `tasks`.
    recent: [RecentTask; RECENT_SLOTS],
    /// What-ids by code object address. The code objects are kept alive
    /// with their ids, so that an address is never reused while cached.
    code_ids: FxHashMap<usize, (Py<PyAny>, u32)>,
}

impl Drop for ThreadState {
    /// A thread that ends takes its tasks with it: the writer may forget them.
    fn drop(&mut self) {
        registry::forget_tasks(self.tasks.values().map(|task| task.token));
    }
}

thread_local! {
    static THREAD: RefCell<ThreadState> = const {
        RefCell::new(ThreadState {
            number: 0,
            tasks: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
            recent: [RecentTask::EMPTY; RECENT_SLOTS],
            code_ids: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
        })
    };
}

static NEXT_THREAD_NUMBER: AtomicU32 = AtomicU32::new(1);

/// Tokens of tasks, unique in the process (`NO_TASK` is never one).
static NEXT_TASK_TOKEN: AtomicU32 = AtomicU32::new(0);

fn next_task_token() -> u32 {
    loop {
        let token = NEXT_TASK_TOKEN.fetch_add(1, Relaxed);
        if token != NO_TASK {
            return token;
        }
    }
}

/// A task that ran on a thread, weakly, with the id of what it runs, its
/// token and name, and the recording its name was last announced to.
struct KnownTask {
    task: Py<PyWeakrefReference>,
    what: u32,
    token: u32,
    name: Arc<str>,
    announced_in: u64,
}

impl KnownTask {
    /// Whether `object` is this task. The weak reference's referent is
    /// compared without taking a reference: it is cleared when the task
    /// dies, so a new object at a dead task's address never matches.
    fn is(&self, object: *mut ffi::PyObject) -> bool {
        // SAFETY: `task` is a live weak reference, held here.
        unsafe { referent(self.task.as_ptr()) == object }
    }

    fn is_dead(&self) -> bool {
        // SAFETY: as in `is`; a dead referent is `Py_None`.
        unsafe { referent(self.task.as_ptr()) == ffi::Py_None() }
    }

    /// (what, token), announcing the name to the current recording first
    /// if it has not heard of this task.
    fn described(&mut self, recording: u64) -> (u32, u32) {
        if self.announced_in != recording {
            registry::announce_task(self.token, self.name.clone());
            self.announced_in = recording;
        }
        (self.what, self.token)
    }
}

/// A task of `ThreadState::tasks`, by address, with its weak reference
/// (borrowed) and what the fast path needs of it.
#[derive(Clone, Copy)]
struct RecentTask {
    address: usize,
    weakref: *mut ffi::PyObject,
    what: u32,
    token: u32,
    announced_in: u64,
}

impl RecentTask {
    const EMPTY: RecentTask =
        RecentTask { address: 0, weakref: std::ptr::null_mut(), what: 0, token: NO_TASK, announced_in: 0 };

    /// Whether this is `owner`, alive.
    fn is(&self, owner: usize) -> bool {
        // SAFETY: a non-null `weakref` is a live weak reference held by `tasks`.
        self.address == owner && !self.weakref.is_null() && unsafe { referent(self.weakref) } as usize == owner
    }
}

/// What a weak reference refers to, without taking a reference: `Py_None`
/// once the object died.
///
/// # Safety
/// `weakref` must be a live weak reference object.
unsafe fn referent(weakref: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: reads a field of a live weak reference object.
    unsafe { (*weakref.cast::<ffi::PyWeakReference>()).wr_object }
}

const RECENT_SLOTS: usize = 256;

fn recent_slot(address: usize) -> usize {
    // Fibonacci hashing: the top 8 bits of the address times 2^64 / phi.
    (address.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) % RECENT_SLOTS
}

/// Tasks a thread keeps at most; past it, the dead ones are forgotten, and
/// all of them if that is not enough (about 100 bytes each).
const MAX_KNOWN_TASKS: usize = 16_384;

impl ThreadState {
    fn number(&mut self) -> u32 {
        if self.number == 0 {
            self.number = NEXT_THREAD_NUMBER.fetch_add(1, Relaxed);
        }
        self.number
    }

    /// (what, token) of `callback` if it is a step or wake-up of a task this
    /// thread knows, whose name the current recording has heard.
    fn known_task(&mut self, callback: *mut ffi::PyObject, recording: u64) -> Option<(u32, u32)> {
        // SAFETY: `callback` is live for the duration of the call.
        let owner = unsafe { task_of_step(callback) }? as usize;
        let slot = &mut self.recent[recent_slot(owner)];
        if slot.is(owner) && slot.announced_in == recording {
            return Some((slot.what, slot.token));
        }
        let known = self.tasks.get(&owner).filter(|known| known.is(owner as *mut ffi::PyObject))?;
        if known.announced_in != recording {
            return None;
        }
        *slot = RecentTask {
            address: owner,
            weakref: known.task.as_ptr(),
            what: known.what,
            token: known.token,
            announced_in: known.announced_in,
        };
        Some((known.what, known.token))
    }

    /// The what-id of a code object this thread has named already (that of
    /// a function or a bound method: an I/O readiness callback, a plain
    /// `call_soon`).
    fn known_code(&self, code: *mut ffi::PyObject) -> Option<u32> {
        self.code_ids.get(&(code as usize)).map(|(_, id)| *id)
    }

    /// Adds a task, replacing any entry at its address; returns what it
    /// forgot, to be dropped outside the thread state's borrow.
    fn add_task(&mut self, address: usize, task: KnownTask) -> Vec<KnownTask> {
        let mut forgotten = self.make_room();
        forgotten.extend(self.tasks.insert(address, task));
        if !forgotten.is_empty() {
            self.recent = [RecentTask::EMPTY; RECENT_SLOTS];
        }
        forgotten
    }

    /// Makes room for one more task; returns what it forgot.
    fn make_room(&mut self) -> Vec<KnownTask> {
        if self.tasks.len() < MAX_KNOWN_TASKS {
            return Vec::new();
        }
        let dead: Vec<usize> = self.tasks.iter().filter(|(_, t)| t.is_dead()).map(|(&address, _)| address).collect();
        let mut forgotten: Vec<KnownTask> = dead.iter().filter_map(|address| self.tasks.remove(address)).collect();
        if self.tasks.len() > MAX_KNOWN_TASKS * 3 / 4 {
            forgotten.extend(self.tasks.drain().map(|(_, task)| task));
        }
        forgotten
    }
}

/// This thread's number in the trace (given at its first slice or poll).
pub fn thread_number() -> u32 {
    THREAD.with(|state| state.try_borrow_mut().map_or(0, |mut state| state.number()))
}

/// Describes the callback of a slice that ran on this thread. Never raises.
///
/// Inlined into the monitor with the thread-local access: there, the
/// address of this module's thread-locals is computed once for all of them.
#[inline]
pub fn describe(py: Python<'_>, ran: &Ran<'_, '_>) -> Described {
    let callback = match ran {
        Ran::Handle(handle) => crate::handle_slots::read_borrowed(handle, crate::handle_slots::Slot::Callback),
        Ran::Callback(callback) => Some(callback.as_ptr()),
    };
    let recording = registry::generation();
    let fast = callback.filter(|c| !c.is_null()).and_then(|callback| {
        THREAD.with(|state| {
            let mut state = state.try_borrow_mut().ok()?;
            // SAFETY: `callback` is live for the duration of the call.
            let (what, task) = match unsafe { code_of(callback) } {
                Some(code) => (state.known_code(code)?, NO_TASK),
                None => state.known_task(callback, recording)?,
            };
            Some(Described { what, task, thread: state.number(), new_task: false })
        })
    });
    fast.unwrap_or_else(|| describe_slowly(py, ran, recording))
}

/// `describe` for any callback: reads attributes (which may run Python
/// code, so every reference is owned) and fills the caches.
#[cold]
#[inline(never)]
fn describe_slowly(py: Python<'_>, ran: &Ran<'_, '_>, recording: u64) -> Described {
    let callback = match ran {
        Ran::Handle(handle) => crate::handle_slots::read(handle, crate::handle_slots::Slot::Callback),
        Ran::Callback(callback) => Some((*callback).clone()),
    };
    let (what, task, new_task) = match &callback {
        Some(callback) => describe_callback(py, callback, recording),
        None => (shared_string_id("?"), NO_TASK, false),
    };
    let thread = THREAD.with(|state| state.try_borrow_mut().map_or(0, |mut state| state.number()));
    Described { what, task, thread, new_task }
}

/// (what-id, task token, whether the task is new to this thread) of a callback.
fn describe_callback(py: Python<'_>, callback: &Bound<'_, PyAny>, recording: u64) -> (u32, u32, bool) {
    if let Some(function) = partial_function(py, callback) {
        return describe_callback(py, &function, recording);
    }
    // SAFETY: `callback` is live; the code object is borrowed from it.
    if let Some(code) = unsafe { code_of(callback.as_ptr()) } {
        // SAFETY: a live code object, borrowed from `callback`, which outlives this use.
        let code = unsafe { Bound::from_borrowed_ptr(py, code) };
        return (code_what_id(py, &code), NO_TASK, false);
    }
    if let Some(owner) = callback_owner(py, callback) {
        if let Some(described) = describe_task(py, &owner, recording) {
            return described;
        }
    }
    let name = callback
        .getattr(intern!(py, "__qualname__"))
        .or_else(|_| callback.get_type().getattr(intern!(py, "__qualname__")))
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| "?".to_owned());
    (shared_string_id(&name), NO_TASK, false)
}

/// The function a `functools.partial` calls, so that `call_soon(partial(f,
/// x))` is named by `f`.
fn partial_function<'py>(py: Python<'py>, callback: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let kind = callback.get_type();
    let is_partial = kind.name().is_ok_and(|name| name == "partial")
        && kind.getattr(intern!(py, "__module__")).is_ok_and(|module| module.eq("functools").unwrap_or(false));
    if !is_partial {
        return None;
    }
    callback.getattr(intern!(py, "func")).ok()
}

/// The object a callback is bound to (`__self__`): the task, for a task's
/// step and wake-up callbacks.
fn callback_owner<'py>(py: Python<'py>, callback: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    // SAFETY: `callback` is live; the task it points to is borrowed from it.
    if let Some(task) = unsafe { task_of_step(callback.as_ptr()) } {
        // SAFETY: the task is alive as long as the callback bound to it is.
        return unsafe { Bound::from_borrowed_ptr_or_opt(py, task) };
    }
    if STEP_WRAPPER_TYPE.get().is_none() {
        learn_step_wrapper(callback);
    }
    callback.getattr(intern!(py, "__self__")).ok()
}

/// The object bound to `callback`, borrowed from it, read without an
/// attribute look-up for the two kinds every task step uses: the C
/// `TaskStepMethWrapper`, whose task pointer sits right after the object
/// header (the offset is checked against `__self__` the first time), and
/// builtin methods (`task.__wakeup`). None for anything else.
///
/// # Safety
/// `callback` must be a live object.
unsafe fn task_of_step(callback: *mut ffi::PyObject) -> Option<*mut ffi::PyObject> {
    // SAFETY: type checks and field reads on a live object.
    unsafe {
        // The step wrapper first: it runs every task step (an exact type
        // compare, where PyCFunction_Check walks the type's bases).
        let callback_type = ffi::Py_TYPE(callback) as usize;
        if let Some(&Some(known)) = STEP_WRAPPER_TYPE.get() {
            if known == callback_type {
                let task = *(callback.cast::<u8>().add(STEP_WRAPPER_TASK_OFFSET) as *mut *mut ffi::PyObject);
                return Some(task).filter(|t| !t.is_null());
            }
        }
        if ffi::PyCFunction_Check(callback) != 0 {
            return Some(ffi::PyCFunction_GET_SELF(callback)).filter(|s| !s.is_null());
        }
    }
    None
}

/// The object a task step or wake-up callback is bound to (the task), as
/// an address; 0 for any other callback. Reads no attribute.
#[inline]
pub fn task_of_callback(callback: *mut ffi::PyObject) -> usize {
    if callback.is_null() {
        return 0;
    }
    // SAFETY: the caller's callback is a live object.
    unsafe { task_of_step(callback) }.map_or(0, |task| task as usize)
}

/// Whether `callback` is `_asyncio`'s task step wrapper (a task's first
/// step is one; its wake-ups after a future are not).
#[inline]
pub fn is_step_wrapper(callback: *mut ffi::PyObject) -> bool {
    let Some(&Some(known)) = STEP_WRAPPER_TYPE.get() else { return false };
    // SAFETY: the caller's callback is a live object.
    !callback.is_null() && known == unsafe { ffi::Py_TYPE(callback) } as usize
}

/// The token of the task at `address` if this thread has described it and
/// it is alive; `NO_TASK` otherwise.
pub fn token_of(address: usize) -> u32 {
    if address == 0 {
        return NO_TASK;
    }
    THREAD
        .with(|state| {
            let state = state.try_borrow().ok()?;
            state.tasks.get(&address).filter(|known| known.is(address as *mut ffi::PyObject)).map(|known| known.token)
        })
        .unwrap_or(NO_TASK)
}

/// The code object a function or a bound method runs, borrowed; None for
/// any other callable.
///
/// # Safety
/// `callback` must be a live object.
#[inline]
unsafe fn code_of(callback: *mut ffi::PyObject) -> Option<*mut ffi::PyObject> {
    // SAFETY: exact type checks, then field reads of the checked layouts.
    unsafe {
        let function = if crate::ffi::PyMethod_Check(callback) != 0 {
            (*callback.cast::<crate::ffi::PyMethodObject>()).im_func
        } else {
            callback
        };
        if function.is_null() || ffi::PyFunction_Check(function) == 0 {
            return None;
        }
        Some((*function.cast::<ffi::PyFunctionObject>()).func_code).filter(|code| !code.is_null())
    }
}

/// The type of `_asyncio`'s task step wrapper, once checked; None inside if
/// its layout is not the expected one.
static STEP_WRAPPER_TYPE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
const STEP_WRAPPER_TASK_OFFSET: usize = std::mem::size_of::<ffi::PyObject>();

fn learn_step_wrapper(callback: &Bound<'_, PyAny>) {
    let Ok(name) = callback.get_type().name() else { return };
    if name.to_str().ok() != Some("TaskStepMethWrapper") {
        return;
    }
    let Ok(owner) = callback.getattr("__self__") else { return };
    // SAFETY: reads one pointer-sized field inside the object (its basic size
    // is checked to include it first).
    let matches = unsafe {
        let basic_size = (*ffi::Py_TYPE(callback.as_ptr())).tp_basicsize as usize;
        basic_size >= STEP_WRAPPER_TASK_OFFSET + std::mem::size_of::<usize>()
            && *((callback.as_ptr() as *mut u8).add(STEP_WRAPPER_TASK_OFFSET) as *mut *mut ffi::PyObject)
                == owner.as_ptr()
    };
    let _ = STEP_WRAPPER_TYPE.set(matches.then_some(callback.get_type().as_type_ptr() as usize));
}

/// (what-id of its coroutine, token, new to this thread) if `owner` is a
/// task; cached per thread through a weak reference, so a task that died
/// and whose address was reused is never mistaken for it.
fn describe_task(py: Python<'_>, owner: &Bound<'_, PyAny>, recording: u64) -> Option<(u32, u32, bool)> {
    let address = owner.as_ptr() as usize;
    let known = THREAD.with(|state| {
        let mut state = state.try_borrow_mut().ok()?;
        let known = state.tasks.get_mut(&address).filter(|known| known.is(owner.as_ptr()))?;
        Some(known.described(recording))
    });
    if let Some((what, token)) = known {
        return Some((what, token, false));
    }
    let coroutine = owner.getattr(intern!(py, "_coro")).ok()?;
    let code = coroutine.getattr(intern!(py, "cr_code")).or_else(|_| coroutine.getattr(intern!(py, "gi_code"))).ok()?;
    let what = code_what_id(py, &code);
    let name: Arc<str> = owner
        .call_method0(intern!(py, "get_name"))
        .ok()
        .and_then(|name| name.str().ok().map(|name| Arc::from(name.to_string_lossy().as_ref())))
        .unwrap_or_else(|| Arc::from("?"));
    let Ok(task) = PyWeakrefReference::new(owner) else { return Some((what, NO_TASK, false)) };
    let mut known = KnownTask { task: task.unbind(), what, token: next_task_token(), name, announced_in: 0 };
    let described = known.described(recording);
    // Dropped outside the borrow: dropping a reference may run Python code.
    let forgotten = THREAD.with(|state| Some(state.try_borrow_mut().ok()?.add_task(address, known)));
    if let Some(forgotten) = &forgotten {
        registry::forget_tasks(forgotten.iter().map(|task| task.token));
    }
    drop(forgotten);
    Some((described.0, described.1, true))
}

/// The what-id of a coroutine: its code's qualname, as a task step is named.
pub fn coroutine_what_id(coroutine: &Bound<'_, PyAny>) -> u32 {
    let py = coroutine.py();
    match coroutine.getattr(intern!(py, "cr_code")).or_else(|_| coroutine.getattr(intern!(py, "gi_code"))) {
        Ok(code) => code_what_id(py, &code),
        Err(_) => shared_string_id("?"),
    }
}

/// The what-id of a code object: its qualname, interned.
fn code_what_id(py: Python<'_>, code: &Bound<'_, PyAny>) -> u32 {
    let address = code.as_ptr() as usize;
    let cached = THREAD.with(|state| state.try_borrow().ok()?.code_ids.get(&address).map(|(_, id)| *id));
    if let Some(id) = cached {
        return id;
    }
    let name = code
        .getattr(intern!(py, "co_qualname"))
        .or_else(|_| code.getattr(intern!(py, "co_name")))
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| "?".to_owned());
    let id = shared_string_id(&name);
    THREAD.with(|state| {
        if let Ok(mut state) = state.try_borrow_mut() {
            state.code_ids.insert(address, (code.clone().unbind(), id));
        }
    });
    id
}

/// In a forked child: thread numbers start again from 1, with the thread
/// that forked (the only one the child has) numbered at its next slice.
pub fn restart_thread_numbers() {
    THREAD.with(|state| {
        if let Ok(mut state) = state.try_borrow_mut() {
            state.number = 0;
        }
    });
    NEXT_THREAD_NUMBER.store(1, Relaxed);
}
