//! Routes: the web framework's name for the request a slice serves
//! (`GET /items/{item_id}`), recorded as the slice's context value `route`.
//!
//! Place in the flow (record -> trace file): beside `context`. The Python
//! side (`aiocop.core.routes`) hooks the frameworks a program imports and,
//! once a request is routed, calls `set_route`: the route goes into a
//! `ContextVar` of the request's task (so the tasks it spawns, which copy
//! its context, inherit it) and the request is counted in the running
//! slice. After each slice the monitor asks `slice_route` for the value in
//! the slice's context.
//!
//! A program that never routes a request pays one relaxed load per slice:
//! nothing is read until the first `set_route`.

use crate::what_ran::Ran;
use pyo3::ffi;
use pyo3::prelude::*;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

/// The `ContextVar` holding the route of the request a task serves.
static ROUTE_VAR: OnceLock<Py<PyAny>> = OnceLock::new();
/// Set by the first routed request: until then slices read nothing.
static IN_USE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The routes (shared string ids) of the requests routed in this
    /// thread's running slice.
    static STARTED: RefCell<Started> = RefCell::new(Started::new());
    /// Shared string ids of the route strings seen, by address. The strings
    /// are kept alive with their ids, so that an address is never reused
    /// while cached; the Python side hands one string per route.
    static IDS: RefCell<FxHashMap<usize, (Py<PyAny>, u32)>> = RefCell::new(FxHashMap::default());
}

/// Routes a thread caches at most; past it, the cache starts over (a
/// program minting route names per request would otherwise grow it).
const MAX_CACHED_ROUTES: usize = 4096;

/// Routes of the requests routed in one slice.
pub type Started = crate::recording::RouteIds;

/// What a slice says about routes: its route's shared string id, and the
/// routes of the requests routed during it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceRoute {
    pub route: Option<u32>,
    pub started: Started,
}

impl SliceRoute {
    pub fn is_some(&self) -> bool {
        self.route.is_some() || !self.started.is_empty()
    }
}

/// Gives the native side the `ContextVar` routes are kept in (once).
pub fn set_route_var(var: Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: a type check on a live object.
    if unsafe { ffi::PyContextVar_CheckExact(var.as_ptr()) } == 0 {
        return Err(pyo3::exceptions::PyTypeError::new_err("the route variable must be a contextvars.ContextVar"));
    }
    let _ = ROUTE_VAR.set(var.unbind());
    Ok(())
}

/// Sets the current context's route to `route` and counts one request
/// routed in the running slice.
pub fn set_route(route: &Bound<'_, PyAny>) -> PyResult<()> {
    let var = ROUTE_VAR
        .get()
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("aiocop: the route variable is not set"))?;
    // SAFETY: GIL held; `var` is a ContextVar (checked when set); the token
    // returned is a new reference, released at once.
    let token = unsafe { ffi::PyContextVar_Set(var.as_ptr(), route.as_ptr()) };
    // SAFETY: a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(route.py(), token) }?;
    IN_USE.store(true, Relaxed);
    if let Some(id) = route_id(route) {
        STARTED.with(|started| {
            if let Ok(mut started) = started.try_borrow_mut() {
                // A slice routes one request, a few when pipelined; bounded anyway.
                if started.len() < MAX_STARTED_PER_SLICE {
                    started.push(id);
                }
            }
        });
    }
    Ok(())
}

/// Requests a slice counts at most (a pipelined connection can route
/// several in one slice).
const MAX_STARTED_PER_SLICE: usize = 64;

/// Forgets the requests counted in this thread's running slice (at its start).
#[inline]
pub fn slice_started() {
    if IN_USE.load(Relaxed) {
        take_started();
    }
}

/// The route of the slice that just ran `ran`, and the requests routed in
/// it. Never raises.
#[inline]
pub fn slice_route(py: Python<'_>, ran: &Ran<'_, '_>) -> SliceRoute {
    if !IN_USE.load(Relaxed) {
        return SliceRoute::default();
    }
    read_route(py, ran)
}

#[inline(never)]
fn read_route(py: Python<'_>, ran: &Ran<'_, '_>) -> SliceRoute {
    let started = take_started();
    let value = match ran {
        // Stock asyncio: the handle ran in its context, which is no longer entered.
        Ran::Handle(handle) => crate::handle_slots::read(handle, crate::handle_slots::Slot::Context)
            .filter(|context| !context.is_none())
            .and_then(|context| value_in(py, Some(&context))),
        // uvloop: `run_monitored` runs inside the callback's context.
        Ran::Callback(_) => value_in(py, None),
    };
    // A request task started eagerly (`eager_start`, aiohttp on 3.12+) runs
    // its first step, routing included, inside the slice that created it:
    // that slice's own context has no route, so it takes the one routed.
    let route = value.and_then(|value| route_id(&value)).or_else(|| started.last().copied());
    SliceRoute { route, started }
}

fn take_started() -> Started {
    STARTED.with(|started| started.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default())
}

/// The route variable's value in `context` (entered for the read), or in
/// the current context; None if unset or not readable.
fn value_in<'py>(py: Python<'py>, context: Option<&Bound<'py, PyAny>>) -> Option<Bound<'py, PyAny>> {
    let var = ROUTE_VAR.get()?;
    // SAFETY: a type check on a live object.
    let context = context.filter(|c| unsafe { ffi::PyContext_CheckExact(c.as_ptr()) } != 0);
    // SAFETY: GIL held; `context` is a contextvars.Context. Entering fails
    // (RuntimeError) if it is entered already, as when a loop is run inside
    // one of its callbacks: then nothing is read.
    unsafe {
        if let Some(context) = context {
            if ffi::PyContext_Enter(context.as_ptr()) != 0 {
                ffi::PyErr_Clear();
                return None;
            }
        }
        let mut value: *mut ffi::PyObject = std::ptr::null_mut();
        let read = ffi::PyContextVar_Get(var.as_ptr(), std::ptr::null_mut(), &mut value);
        if let Some(context) = context {
            if ffi::PyContext_Exit(context.as_ptr()) != 0 {
                ffi::PyErr_Clear();
            }
        }
        if read != 0 {
            ffi::PyErr_Clear();
            return None;
        }
        Bound::from_owned_ptr_or_opt(py, value).filter(|v| !v.is_none())
    }
}

/// The shared string id of a route string, cached by its address.
fn route_id(value: &Bound<'_, PyAny>) -> Option<u32> {
    let address = value.as_ptr() as usize;
    let cached = IDS.with(|ids| ids.try_borrow().ok()?.get(&address).map(|(_, id)| *id));
    if cached.is_some() {
        return cached;
    }
    let text = value.cast::<pyo3::types::PyString>().ok()?.to_str().ok()?.to_owned();
    let id = crate::recording::shared_string_id(&text);
    IDS.with(|ids| {
        if let Ok(mut ids) = ids.try_borrow_mut() {
            if ids.len() >= MAX_CACHED_ROUTES {
                ids.clear();
            }
            ids.insert(address, (value.clone().unbind(), id));
        }
    });
    Some(id)
}
