/* Where the interpreter's eval breaker flag is, read from CPython's own
 * internal headers at build time (3.11 and 3.12 only: 3.13 moved the flag
 * into each thread state and made Py_AddPendingCall set it for the main
 * thread). See src/eval_breaker.rs for why and how it is used. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include "internal/pycore_interp.h"

size_t aiocop_eval_breaker_offset(void) {
    return offsetof(PyInterpreterState, ceval.eval_breaker);
}

size_t aiocop_eval_breaker_size(void) {
    return sizeof(((PyInterpreterState *)0)->ceval.eval_breaker);
}

unsigned long aiocop_eval_breaker_built_for(void) {
    return PY_VERSION_HEX;
}
