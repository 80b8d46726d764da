//! The stand-in for a stock asyncio loop's `call_soon` that stamps, while
//! recording, when each handle was scheduled and by which task (see
//! `crate::task_timing`, which keeps the stamps).

use pyo3::ffi;
use pyo3::prelude::*;

/// What the stand-in `call_soon` of a stock asyncio loop holds: the
/// original, bound.
#[pyclass(module = "aiocop._native", frozen)]
pub struct StampedCallSoon {
    original: Py<PyAny>,
}

#[pymethods]
impl StampedCallSoon {
    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.original.clone_ref(py)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.original)
    }
}

/// A stand-in for a stock asyncio loop's bound `call_soon` that stamps
/// each handle it returns while recording.
pub fn stamped_call_soon<'py>(py: Python<'py>, original: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let target = Bound::new(py, StampedCallSoon { original })?;
    crate::monitor::new_builtin(py, &CALL_SOON_DEFINITION, target.as_any())
}

static CALL_SOON_DEFINITION: crate::monitor::MethodDefinition =
    crate::monitor::MethodDefinition(std::cell::UnsafeCell::new(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
                fastcall_cfunction_with_keywords,
                call_soon_entry
            ),
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"The loop's call_soon; aiocop notes when each handle was scheduled.".as_ptr(),
    }));

/// The C entry point of a stamped `call_soon`.
///
/// # Safety
/// Called by the interpreter only, with the vectorcall convention: `target`
/// the function's `self` (a `StampedCallSoon`), `args` holding `nargs`
/// positional arguments then one value per name in `kwnames` (null if none).
unsafe fn call_soon_entry(
    py: Python<'_>,
    target: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: `self` of this function is always a StampedCallSoon.
    let target = unsafe { Bound::from_borrowed_ptr(py, target) };
    let original = target.cast::<StampedCallSoon>()?.get().original.as_ptr();
    // SAFETY: as this function's.
    let all = unsafe { crate::monitor::vectorcall_arguments(args, nargs, kwnames) };
    let handle = crate::monitor::vectorcall(py, original, all, nargs as usize, kwnames)?;
    if crate::recording::is_active() {
        crate::task_timing::stamp(handle);
    }
    Ok(handle)
}
