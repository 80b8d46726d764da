//! Native stack capture, with every frame and stack interned.
//!
//! A capture walks the interpreter's frames in C (`PyFrame_GetBack`,
//! `PyFrame_GetCode`, `PyFrame_GetLasti`) and turns each `(code object,
//! instruction offset)` pair into a frame id through a cache, so a repeated
//! stack costs a few hash look-ups and builds no Python string: text is made
//! only when an event is formatted for a user.
//!
//! Invariants:
//! - No Python code runs while the registry lock is held (frame walking and
//!   attribute reads happen outside it), and no holder waits for the GIL, so
//!   it is only ever held for short, bounded work. Threads holding the GIL
//!   take it to intern; the recorder's writer thread takes it, without the
//!   GIL, to export new frames and stacks; around a fork it is held by the
//!   forking thread (`hold_for_fork`), so the child never inherits it locked.
//! - Every interned code object is kept alive, so its address stays a valid
//!   key. That is a bounded cost for ordinary programs, whose code objects
//!   live as long as their modules anyway.
//! - Frames of the aiocop package itself are never part of a stack.

use crate::frame_reader::RemoteFrame;
use aiocop_trace::frame::{format_frame, TRACE_SEPARATOR};
use aiocop_trace::Interner;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Mutex, OnceLock};

pub type FrameId = u32;
pub type StackId = u32;

/// Extra raw frames walked beyond the requested depth, so that skipping
/// aiocop's own frames still leaves `depth` frames of the program's.
pub const OWN_FRAME_MARGIN: usize = 8;

/// Source files under this prefix are aiocop's own and never shown.
static OWN_PREFIX: OnceLock<String> = OnceLock::new();

pub fn set_own_prefix(prefix: String) {
    let _ = OWN_PREFIX.set(prefix);
}

#[derive(Clone, Copy)]
enum Resolved {
    Own,
    Frame(FrameId),
}

struct CodeInfo {
    _keep_alive: Py<PyAny>,
    /// Offset (bytes) of the code's first RESUME: a frame before it is
    /// still being set up, and `PyFrame_GetBack` skips it.
    first_traceable: i32,
    /// `co_firstlineno`: what a frame read from another thread is checked by.
    first_line: i32,
    filename: String,
    function: String,
    /// What names the code across releases, where lines and paths move.
    name: FrameName,
}

/// A frame's module (`__name__` of its globals) and `co_qualname`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameName {
    pub module: String,
    pub qualname: String,
}

pub struct FrameInfo {
    pub filename: String,
    pub line: i32,
    pub function: String,
    pub name: FrameName,
    pub text: String,
}

/// What the trace writer needs of a frame it has not defined yet.
pub struct ExportedFrame {
    pub filename: String,
    pub line: i32,
    pub function: String,
    pub name: FrameName,
}

#[derive(Default)]
struct Registry {
    codes: HashMap<usize, CodeInfo>,
    by_instruction: HashMap<(usize, i32), Resolved>,
    frame_ids: Interner<(usize, i32)>,
    frames: Vec<FrameInfo>,
    stacks: Interner<Vec<FrameId>>,
    /// (trace, entry point) of each stack reported so far, as Python
    /// strings, so a stack that repeats is formatted once.
    stack_texts: HashMap<StackId, (Py<PyString>, Py<PyString>)>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    // Holders never wait for anything while holding it (see the module
    // invariants), so waiting here is short.
    let mut guard = REGISTRY.lock().ok()?;
    Some(f(guard.get_or_insert_with(Registry::default)))
}

thread_local! {
    static HELD_FOR_FORK: std::cell::RefCell<Option<std::sync::MutexGuard<'static, Option<Registry>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Takes the registry lock until `release_after_fork`, so that a fork never
/// copies it locked by the recorder's writer thread.
pub fn hold_for_fork() {
    let guard = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    HELD_FOR_FORK.with(|held| *held.borrow_mut() = Some(guard));
}

pub fn release_after_fork() {
    HELD_FOR_FORK.with(|held| held.borrow_mut().take());
}

/// For the trace writer: the frames of each stack in `stacks`, and what it
/// needs of each of their frames for which `known` is false. Taken under one
/// short hold of the lock, without the GIL.
#[allow(clippy::type_complexity)]
pub fn export(
    stacks: &[StackId],
    known: impl Fn(FrameId) -> bool,
) -> (Vec<(StackId, Vec<FrameId>)>, Vec<(FrameId, ExportedFrame)>) {
    with_registry(|registry| {
        let exported: Vec<(StackId, Vec<FrameId>)> =
            stacks.iter().filter_map(|&id| Some((id, registry.stacks.get(id)?.clone()))).collect();
        let mut frames: Vec<FrameId> =
            exported.iter().flat_map(|(_, f)| f.iter().copied()).filter(|&f| !known(f)).collect();
        frames.sort_unstable();
        frames.dedup();
        let frames = frames
            .into_iter()
            .filter_map(|id| {
                let info = registry.frames.get(id as usize)?;
                let exported = ExportedFrame {
                    filename: info.filename.clone(),
                    line: info.line,
                    function: info.function.clone(),
                    name: info.name.clone(),
                };
                Some((id, exported))
            })
            .collect();
        (exported, frames)
    })
    .unwrap_or_default()
}

/// A frame as walked: the frame and its code object (owned) and instruction
/// offset. The frame is kept for the module name of a code seen for the
/// first time (its globals' `__name__`). `Bound`, not `Py`: dropping it
/// releases the reference at once, even in the audit hook, where pyo3 does
/// not know the thread holds the GIL.
struct RawFrame<'py> {
    frame: Bound<'py, PyAny>,
    code: Bound<'py, PyAny>,
    lasti: i32,
}

/// Walks up from `frame` (a borrowed reference, may be null).
///
/// # Safety
/// `frame` must be null or a live frame object of the calling thread, and
/// the GIL must be held (`py`).
unsafe fn walk(py: Python<'_>, frame: *mut ffi::PyFrameObject, limit: usize) -> Vec<RawFrame<'_>> {
    let mut raw = Vec::with_capacity(limit.min(64));
    let mut current = frame;
    // SAFETY: `current` is null or live (the caller's promise); the walk
    // takes a reference of its own to it.
    unsafe { ffi::Py_XINCREF(current.cast()) };
    while !current.is_null() && raw.len() < limit {
        // SAFETY: `current` is a live frame the walk holds a reference to;
        // each getter returns a new reference (code: never null; back: null
        // at the outermost frame).
        let (code, lasti, back) =
            unsafe { (ffi::PyFrame_GetCode(current), ffi::PyFrame_GetLasti(current), ffi::PyFrame_GetBack(current)) };
        // The walk's reference to `current` moves into the raw frame.
        // SAFETY: both are new, non-null references owned by the walk.
        let (frame, code) =
            unsafe { (Bound::from_owned_ptr(py, current.cast()), Bound::from_owned_ptr(py, code.cast())) };
        raw.push(RawFrame { frame, code, lasti });
        current = back;
    }
    // SAFETY: the walk's reference to the frame past the limit, if any.
    unsafe { ffi::Py_XDECREF(current.cast()) };
    raw
}

/// The stack of the calling thread, innermost first.
pub fn capture_current(py: Python<'_>, depth: usize) -> Option<StackId> {
    // SAFETY: we hold the GIL; PyEval_GetFrame returns a borrowed reference.
    let raw = unsafe { walk(py, ffi::PyEval_GetFrame(), depth + OWN_FRAME_MARGIN) };
    intern_stack(raw, depth)
}

/// The stack that starts at `frame`, a frame object of any thread.
pub fn capture_from(py: Python<'_>, frame: &Bound<'_, PyAny>, depth: usize) -> Option<StackId> {
    // SAFETY: `frame` is a live frame object for the duration of the walk.
    let raw = unsafe { walk(py, frame.as_ptr().cast(), depth + OWN_FRAME_MARGIN) };
    intern_stack(raw, depth)
}

fn intern_stack(raw: Vec<RawFrame<'_>>, depth: usize) -> Option<StackId> {
    let known = with_registry(|registry| resolve(registry, &raw, depth))?;
    if let Some(stack) = known {
        return Some(stack);
    }
    // Some frames are new: read what we need from Python without the lock,
    // then insert them and resolve again.
    let new_codes = describe_new_codes(&raw);
    with_registry(|registry| {
        for (address, info) in new_codes {
            registry.codes.entry(address).or_insert(info);
        }
        for frame in &raw {
            add_instruction(registry, frame.code.as_ptr() as usize, frame.lasti);
        }
        resolve(registry, &raw, depth)
    })?
}

/// The stack id if every frame is already known, None otherwise.
fn resolve(registry: &mut Registry, raw: &[RawFrame], depth: usize) -> Option<StackId> {
    resolve_keys(registry, raw.iter().map(|frame| (frame.code.as_ptr() as usize, frame.lasti)), depth)
}

/// The stack id of (code address, instruction offset) pairs, innermost
/// first, if every one is already known; None otherwise.
fn resolve_keys(registry: &mut Registry, keys: impl Iterator<Item = (usize, i32)>, depth: usize) -> Option<StackId> {
    let mut frames = Vec::with_capacity(depth);
    for key in keys {
        match registry.by_instruction.get(&key)? {
            Resolved::Own => {}
            Resolved::Frame(id) => frames.push(*id),
        }
        if frames.len() == depth {
            break;
        }
    }
    Some(registry.stacks.intern(&frames))
}

/// What a stack read from another thread (`frame_reader`) resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoteResolution {
    Stack(StackId),
    /// Every code is known, some instruction's line is not: the loop
    /// thread resolves it ([`intern_remote`]).
    NeedsLines,
    /// A code object the registry does not keep alive: its address may be
    /// a freed one's; the sample is taken another way.
    UnknownCode,
}

/// The program's frames of a stack read from another thread: the entry
/// frames were dropped by the reader; frames still being set up (before
/// their first RESUME, not owned by a generator) are dropped here, as
/// `PyFrame_GetBack` does.
fn complete_keys(registry: &Registry, frames: &[RemoteFrame]) -> Option<Vec<(usize, i32)>> {
    let mut keys = Vec::with_capacity(frames.len());
    for frame in frames {
        let code = registry.codes.get(&frame.code)?;
        // A code learnt after the read: the same object only if it starts
        // on the same line (else the address was freed and reused).
        if frame.first_line.is_some_and(|line| line != code.first_line) {
            return None;
        }
        if frame.owned_by_generator || frame.lasti >= code.first_traceable {
            keys.push((frame.code, frame.lasti));
        }
    }
    Some(keys)
}

/// Resolves a stack read from another thread without the GIL: only
/// through the registry's maps (no Python object is touched).
pub fn resolve_remote(frames: &[RemoteFrame], depth: usize) -> RemoteResolution {
    with_registry(|registry| {
        let Some(keys) = complete_keys(registry, frames) else { return RemoteResolution::UnknownCode };
        match resolve_keys(registry, keys.into_iter(), depth) {
            Some(stack) => RemoteResolution::Stack(stack),
            None => RemoteResolution::NeedsLines,
        }
    })
    .unwrap_or(RemoteResolution::UnknownCode)
}

/// Resolves a stack read from another thread, adding the lines of new
/// instructions: on a thread holding the GIL (`py`). None if a code of the
/// stack is not in the registry (which keeps them alive) or is not the
/// one read (its first line differs).
pub fn intern_remote(_py: Python<'_>, frames: &[RemoteFrame], depth: usize) -> Option<StackId> {
    with_registry(|registry| {
        let keys = complete_keys(registry, frames)?;
        for &(address, lasti) in &keys {
            add_instruction(registry, address, lasti);
        }
        resolve_keys(registry, keys.into_iter(), depth)
    })?
}

fn describe_new_codes(raw: &[RawFrame<'_>]) -> Vec<(usize, CodeInfo)> {
    let mut described: Vec<(usize, CodeInfo)> = Vec::new();
    let known: Vec<usize> =
        with_registry(|r| raw.iter().map(|f| f.code.as_ptr() as usize).filter(|a| r.codes.contains_key(a)).collect())
            .unwrap_or_default();
    for frame in raw {
        let address = frame.code.as_ptr() as usize;
        if known.contains(&address) || described.iter().any(|(a, _)| *a == address) {
            continue;
        }
        described.push((address, describe_code(&frame.code, module_of(&frame.frame))));
    }
    described
}

fn describe_code(code: &Bound<'_, PyAny>, module: String) -> CodeInfo {
    let text = |name: &str| code.getattr(name).and_then(|v| v.extract::<String>()).unwrap_or_else(|_| "?".to_owned());
    CodeInfo {
        _keep_alive: code.clone().unbind(),
        first_traceable: first_traceable(code),
        first_line: first_line(code),
        filename: text("co_filename"),
        function: text("co_name"),
        name: FrameName { module, qualname: text("co_qualname") },
    }
}

fn first_line(code: &Bound<'_, PyAny>) -> i32 {
    code.getattr("co_firstlineno").and_then(|v| v.extract()).unwrap_or(-1)
}

/// Learns the code objects of `wanted` (address, first line), read from
/// the thread's frames by the watchdog but unknown to the registry, that
/// are still alive where the calling thread can prove it: held by a
/// function (or a class's function) in the globals of one of its frames,
/// or a constant of one of its frames' code (a nested function's). A code
/// called from a C call's caller and returned since (`work` in `main`'s
/// module) is found so; one nowhere to be found is not learnt (its samples
/// are dropped). Holding the GIL (`py`), from `frame`: the read thread's
/// current frame (a frame object), or none for the calling thread's.
pub fn learn_codes(py: Python<'_>, frame: Option<&Bound<'_, PyAny>>, wanted: &[(usize, i32)]) {
    let start = match frame {
        Some(frame) => frame.as_ptr().cast(),
        // SAFETY: we hold the GIL; PyEval_GetFrame returns a borrowed reference.
        None => unsafe { ffi::PyEval_GetFrame() },
    };
    // SAFETY: `start` is null or a live frame (held by `frame` or the thread).
    let raw = unsafe { walk(py, start, 64) };
    let mut found: Vec<(usize, CodeInfo)> = Vec::new();
    let mut consider = |code: &Bound<'_, PyAny>, module: &dyn Fn() -> String| {
        let address = code.as_ptr() as usize;
        let is_wanted = wanted.iter().any(|&(a, line)| a == address && first_line(code) == line);
        if is_wanted && !found.iter().any(|(a, _)| *a == address) {
            found.push((address, describe_code(code, module())));
        }
    };
    for frame in &raw {
        let module = || module_of(&frame.frame);
        if let Ok(constants) = frame.code.getattr("co_consts").and_then(|c| c.extract::<Vec<Bound<'_, PyAny>>>()) {
            // SAFETY: a type check of a live object.
            for constant in constants.iter().filter(|c| unsafe { ffi::PyCode_Check(c.as_ptr()) } != 0) {
                consider(constant, &module);
            }
        }
        // SAFETY: a live frame; PyFrame_GetGlobals returns a new reference.
        let globals = unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyFrame_GetGlobals(frame.frame.as_ptr().cast())) };
        let Some(globals) = globals.and_then(|g| g.cast_into::<pyo3::types::PyDict>().ok()) else { continue };
        for value in globals.values() {
            for function in functions_in(&value).into_iter().chain(module_functions(&value)) {
                if let Ok(code) = function.getattr("__code__") {
                    consider(&code, &module);
                }
            }
        }
    }
    with_registry(|registry| {
        for (address, info) in found {
            registry.codes.entry(address).or_insert(info);
        }
    });
}

/// The functions of a module's namespace and of its plain classes, if
/// `value` is a module (`json` in the globals: `json.dumps`, and
/// `JSONEncoder.iterencode` through it), read from its dict directly (a
/// module's `__getattr__` never runs).
fn module_functions<'py>(value: &Bound<'py, PyAny>) -> Vec<Bound<'py, PyAny>> {
    // SAFETY: a type check of a live object.
    if unsafe { ffi::PyModule_CheckExact(value.as_ptr()) } == 0 {
        return Vec::new();
    }
    // SAFETY: a module; PyModule_GetDict returns a borrowed reference to its dict.
    let namespace = unsafe { Bound::from_borrowed_ptr_or_opt(value.py(), ffi::PyModule_GetDict(value.as_ptr())) };
    let Some(namespace) = namespace.and_then(|n| n.cast_into::<pyo3::types::PyDict>().ok()) else { return Vec::new() };
    namespace.values().iter().flat_map(|member| functions_in(&member)).collect()
}

/// `value` if it is a function, or the functions (static and class
/// methods unwrapped) of a class's namespace. Only built-in types are
/// looked into, so that no code of the program runs (no `__getattr__`, no
/// metaclass).
fn functions_in<'py>(value: &Bound<'py, PyAny>) -> Vec<Bound<'py, PyAny>> {
    // SAFETY: type checks of a live object.
    let is_function = |object: &Bound<'py, PyAny>| unsafe { ffi::PyFunction_Check(object.as_ptr()) } != 0;
    if is_function(value) {
        return vec![value.clone()];
    }
    let py = value.py();
    let plain_class = value.get_type().is(py.get_type::<pyo3::types::PyType>());
    let Ok(class) = value.cast::<pyo3::types::PyType>() else { return Vec::new() };
    if !plain_class {
        return Vec::new();
    }
    let Ok(namespace) = class.getattr("__dict__").and_then(|d| d.call_method0("values")) else { return Vec::new() };
    let Ok(members) = namespace.try_iter() else { return Vec::new() };
    let wrapped = |member: &Bound<'py, PyAny>| {
        let staticmethod = &raw mut ffi::PyStaticMethod_Type as *mut ffi::PyObject;
        let classmethod = &raw mut ffi::PyClassMethod_Type as *mut ffi::PyObject;
        let kind = member.get_type().as_ptr();
        kind == staticmethod || kind == classmethod
    };
    members
        .flatten()
        .map(|member| if wrapped(&member) { member.getattr("__func__").unwrap_or(member) } else { member })
        .filter(is_function)
        .collect()
}

/// The byte offset of the code's first RESUME instruction (CPython's
/// `_co_firsttraceable`), from its `co_code`; 0 if it has none.
fn first_traceable(code: &Bound<'_, PyAny>) -> i32 {
    // A PyOnceLock, not a std OnceLock: importing `opcode` may release the
    // GIL, and a second thread waiting on a std OnceLock while holding the
    // GIL would deadlock with it (found hung in the recorder's tests).
    static RESUME: PyOnceLock<Option<u8>> = PyOnceLock::new();
    let resume = RESUME.get_or_init(code.py(), || {
        let opmap = code.py().import("opcode").and_then(|opcode| opcode.getattr("opmap")).ok()?;
        opmap.get_item("RESUME").ok()?.extract::<u8>().ok()
    });
    let Some(resume) = *resume else { return 0 };
    let Ok(bytes) = code.getattr("co_code").and_then(|c| c.extract::<Vec<u8>>()) else { return 0 };
    bytes.chunks_exact(2).position(|unit| unit[0] == resume).map_or(0, |index| 2 * index as i32)
}

/// `__name__` of the frame's globals: the module its code belongs to
/// (`shop.views`, `__main__`); empty if it has none.
fn module_of(frame: &Bound<'_, PyAny>) -> String {
    // SAFETY: `frame` is a live frame object; PyFrame_GetGlobals returns a
    // new reference to its globals dict.
    let globals = unsafe { Bound::from_owned_ptr_or_opt(frame.py(), ffi::PyFrame_GetGlobals(frame.as_ptr().cast())) };
    globals
        .and_then(|globals| globals.get_item("__name__").ok())
        .and_then(|name| name.extract::<String>().ok())
        .unwrap_or_default()
}

/// Adds the frame of an instruction of a code the registry holds. The GIL
/// must be held (it reads the code's line table).
fn add_instruction(registry: &mut Registry, address: usize, lasti: i32) {
    let key = (address, lasti);
    if registry.by_instruction.contains_key(&key) {
        return;
    }
    let Some(code) = registry.codes.get(&address) else { return };
    let own = OWN_PREFIX.get().is_some_and(|prefix| code.filename.starts_with(prefix.as_str()));
    let resolved = if own {
        Resolved::Own
    } else {
        // SAFETY: the code object is alive (kept by the registry, which
        // holds it at `address`); the caller holds the GIL; this only reads
        // its line table.
        let line = unsafe { ffi::PyCode_Addr2Line(address as *mut ffi::PyCodeObject, lasti) };
        let id = registry.frame_ids.intern(&(address, line));
        if id as usize == registry.frames.len() {
            let text = format_frame(&code.filename, line.into(), &code.function);
            registry.frames.push(FrameInfo {
                filename: code.filename.clone(),
                line,
                function: code.function.clone(),
                name: code.name.clone(),
                text,
            });
        }
        Resolved::Frame(id)
    };
    registry.by_instruction.insert(key, resolved);
}

/// What users see of a stack: the joined trace and its entry point (the
/// innermost frame outside aiocop), as aiocop 1.2.1 formats them. Made once
/// per stack; later calls share the same string objects.
pub fn describe<'py>(py: Python<'py>, stack: Option<StackId>) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
    // Creating a str runs no Python code, so it is safe under the registry lock.
    let described = stack.and_then(|id| {
        with_registry(|registry| {
            if let Some((trace, entry)) = registry.stack_texts.get(&id) {
                return Some((trace.bind(py).clone(), entry.bind(py).clone()));
            }
            let frames = registry.stacks.get(id)?;
            let texts: Vec<&str> = frames.iter().map(|f| registry.frames[*f as usize].text.as_str()).collect();
            let trace = PyString::new(py, &texts.join(TRACE_SEPARATOR));
            let entry = PyString::new(py, texts.first().copied().unwrap_or("unknown"));
            registry.stack_texts.insert(id, (trace.clone().unbind(), entry.clone().unbind()));
            Some((trace, entry))
        })
        .flatten()
    });
    described.unwrap_or_else(|| (PyString::new(py, ""), PyString::new(py, "unknown")))
}

/// The frames of a stack as (filename, line, function), innermost first.
pub fn frames_of(stack: StackId) -> Vec<(String, i32, String)> {
    with_registry(|registry| {
        registry.stacks.get(stack).map(|frames| {
            frames
                .iter()
                .map(|f| {
                    let info = &registry.frames[*f as usize];
                    (info.filename.clone(), info.line, info.function.clone())
                })
                .collect()
        })
    })
    .flatten()
    .unwrap_or_default()
}

/// The frames of a stack as (filename, line, module, qualname), innermost
/// first: what an allow-list matches by identity and a failure message shows.
pub fn named_frames_of(stack: StackId) -> Vec<(String, i32, String, String)> {
    with_registry(|registry| {
        registry.stacks.get(stack).map(|frames| {
            frames
                .iter()
                .map(|f| {
                    let info = &registry.frames[*f as usize];
                    (info.filename.clone(), info.line, info.name.module.clone(), info.name.qualname.clone())
                })
                .collect()
        })
    })
    .flatten()
    .unwrap_or_default()
}

/// The module and qualname of each frame of a stack, innermost first.
pub fn names_of(stack: StackId) -> Vec<FrameName> {
    with_registry(|registry| {
        registry
            .stacks
            .get(stack)
            .map(|frames| frames.iter().map(|f| registry.frames[*f as usize].name.clone()).collect())
    })
    .flatten()
    .unwrap_or_default()
}

/// How many distinct frames and stacks have been interned.
pub fn sizes() -> (usize, usize) {
    with_registry(|registry| (registry.frames.len(), registry.stacks.len())).unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyDict;

    #[pyfunction]
    fn capture(py: Python<'_>, depth: usize) -> Option<StackId> {
        capture_current(py, depth)
    }

    /// Runs `code` with `capture` in its globals and returns its globals.
    fn run<'py>(py: Python<'py>, code: &std::ffi::CStr) -> Bound<'py, PyDict> {
        let globals = PyDict::new(py);
        globals.set_item("capture", wrap_pyfunction!(capture, py).unwrap()).unwrap();
        globals.set_item("__file__", "/app/src/svc/handlers.py").unwrap();
        py.run(code, Some(&globals), None).unwrap();
        globals
    }

    const TWO_CALLS: &std::ffi::CStr = c"
def inner():
    return capture(20)

def outer():
    return inner()

ids = []
for _ in range(2):
    ids.append(outer())
shallow = capture(1)
";

    #[test]
    fn a_repeated_stack_is_interned_once_with_its_lines_and_names() {
        Python::initialize();
        Python::attach(|py| {
            let globals = run(py, TWO_CALLS);
            let ids: Vec<StackId> = globals.get_item("ids").unwrap().unwrap().extract().unwrap();
            assert_eq!(ids[0], ids[1], "the same call path must give the same stack id");

            let frames = frames_of(ids[0]);
            let names: Vec<(&str, i32)> = frames.iter().map(|(_, line, function)| (function.as_str(), *line)).collect();
            assert_eq!(names, [("inner", 3), ("outer", 6), ("<module>", 10)]);

            let (trace, entry) = describe(py, Some(ids[0]));
            assert_eq!(entry.to_string(), "<string>:3:inner");
            assert_eq!(trace.to_string(), "<string>:3:inner <- <string>:6:outer <- <string>:10:<module>");
        });
    }

    #[test]
    fn depth_limits_the_frames_kept() {
        Python::initialize();
        Python::attach(|py| {
            let globals = run(py, TWO_CALLS);
            let shallow: StackId = globals.get_item("shallow").unwrap().unwrap().extract().unwrap();
            assert_eq!(frames_of(shallow).len(), 1);
        });
    }

    #[test]
    fn frames_under_the_own_prefix_are_skipped() {
        Python::initialize();
        set_own_prefix("/opt/aiocop/".to_owned());
        Python::attach(|py| {
            let globals = run(
                py,
                c"
exec(compile('def own():\\n    return capture(20)\\n', '/opt/aiocop/core.py', 'exec'))

def user():
    return own()

result = user()
",
            );
            let stack: StackId = globals.get_item("result").unwrap().unwrap().extract().unwrap();
            let functions: Vec<String> = frames_of(stack).into_iter().map(|(_, _, f)| f).collect();
            assert_eq!(functions, ["user", "<module>"]);
        });
    }
}
