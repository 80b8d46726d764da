//! Reading the slots of asyncio's `Handle` (`_loop`, `_callback`,
//! `_context`) by offset.
//!
//! A generic attribute read costs about 150 instructions (type look-up,
//! descriptor call); the timing wrapper reads one or two slots of every
//! handle the loop runs, so it reads them where CPython's own member
//! descriptor would: at the offset the descriptor records. The offsets are
//! taken once from `Handle`'s own `__slots__` descriptors, and used only for
//! instances of `Handle` (or subclasses, which keep the base's layout).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::sync::OnceLock;

/// `T_OBJECT_EX` and `T_OBJECT` (structmember.h): an object pointer slot.
const OBJECT_SLOT_TYPES: [i32; 2] = [16, 6];

struct Offsets {
    handle_type: usize,
    event_loop: isize,
    callback: isize,
    context: isize,
}

static OFFSETS: OnceLock<Offsets> = OnceLock::new();

#[derive(Clone, Copy)]
pub enum Slot {
    Loop,
    Callback,
    Context,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::Loop => "_loop",
            Slot::Callback => "_callback",
            Slot::Context => "_context",
        }
    }
}

/// Records the slot offsets of `handle_class`. If it does not have plain
/// object slots with these names, nothing is recorded and `read` falls back
/// to attribute reads.
pub fn learn(handle_class: &Bound<'_, PyType>) {
    let offset = |slot: Slot| -> Option<isize> {
        let descriptor = handle_class.getattr("__dict__").ok()?.get_item(slot.name()).ok()?;
        if descriptor.get_type().name().ok()?.to_str().ok()? != "member_descriptor" {
            return None;
        }
        // SAFETY: a member_descriptor is a PyMemberDescrObject, whose d_member
        // points to its type's static PyMemberDef.
        let member = unsafe { &*(*(descriptor.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member };
        OBJECT_SLOT_TYPES.contains(&member.type_code).then_some(member.offset)
    };
    if let (Some(event_loop), Some(callback), Some(context)) =
        (offset(Slot::Loop), offset(Slot::Callback), offset(Slot::Context))
    {
        let _ =
            OFFSETS.set(Offsets { handle_type: handle_class.as_type_ptr() as usize, event_loop, callback, context });
    }
}

/// The slot's value, or None if it is unset.
pub fn read<'py>(handle: &Bound<'py, PyAny>, slot: Slot) -> Option<Bound<'py, PyAny>> {
    match read_borrowed(handle, slot) {
        // SAFETY: the slot holds a live reference or NULL.
        Some(value) => unsafe { Bound::from_borrowed_ptr_or_opt(handle.py(), value) },
        None => handle.getattr(slot.name()).ok(),
    }
}

/// The slot's value (NULL if unset) as a pointer borrowed from the handle,
/// or None if `handle` is not a `Handle` with known offsets. The handle may
/// drop it when Python code runs (`Handle.cancel()`): use it before any does.
#[inline]
pub fn read_borrowed(handle: &Bound<'_, PyAny>, slot: Slot) -> Option<*mut ffi::PyObject> {
    let offsets = OFFSETS.get()?;
    // SAFETY: type check on a live object.
    let is_handle = unsafe { ffi::PyObject_TypeCheck(handle.as_ptr(), offsets.handle_type as *mut ffi::PyTypeObject) };
    if is_handle == 0 {
        return None;
    }
    let offset = match slot {
        Slot::Loop => offsets.event_loop,
        Slot::Callback => offsets.callback,
        Slot::Context => offsets.context,
    };
    // SAFETY: `handle` is an instance of the class the offset was read from,
    // so the slot is at that offset; it holds a borrowed pointer or NULL.
    Some(unsafe { *((handle.as_ptr() as *mut u8).offset(offset) as *mut *mut ffi::PyObject) })
}
