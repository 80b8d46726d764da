/* Where a thread's current frame and each frame's code and instruction are,
 * read from CPython's own internal headers at build time (3.11 and 3.12
 * only: from 3.13 on the interpreter publishes them in _Py_DebugOffsets at
 * &_PyRuntime). See src/frame_reader.rs for how they are used: only to read
 * the loop thread's frames through process_vm_readv, never dereferenced. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include "internal/pycore_frame.h"

/* In the order of src/frame_reader.rs's BuiltOffsets. */
void aiocop_frame_offsets(size_t out[8]) {
    out[0] = offsetof(PyThreadState, cframe);
    out[1] = offsetof(_PyCFrame, current_frame);
    out[2] = offsetof(_PyInterpreterFrame, previous);
    out[3] = offsetof(_PyInterpreterFrame, f_code);
    out[4] = offsetof(_PyInterpreterFrame, prev_instr);
    out[5] = offsetof(_PyInterpreterFrame, owner);
    out[6] = offsetof(PyCodeObject, co_code_adaptive);
    out[7] = offsetof(PyCodeObject, co_firstlineno);
}

unsigned long aiocop_frame_offsets_built_for(void) {
    return PY_VERSION_HEX;
}
