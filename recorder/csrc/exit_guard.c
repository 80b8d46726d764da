/* Calls into Python that a daemon thread cannot be unwound out of.
 *
 * On CPython 3.11 to 3.13, a daemon thread that wants the GIL back while the
 * interpreter finalizes is ended with pthread_exit(), which unwinds its stack
 * (gh-87135). aiocop's native frames sit on that stack when the thread blocked
 * inside a callback, a timed select or an audited function: they are Rust
 * `extern "C"` functions, which abort the process when an unwind crosses them.
 * Every such call goes through here instead: a cleanup handler, run by the
 * unwind before it reaches aiocop's frames, parks the thread for good, as
 * CPython 3.14 and later do themselves. The process exits as it would have.
 *
 * Compiled with -fexceptions, so that glibc's pthread_cleanup_push is a
 * cleanup the unwinder runs. The two CPython functions are declared here, not
 * from Python.h, so that this file builds for every version alike.
 */
#include <pthread.h>
#include <stddef.h>
#include <unistd.h>

typedef struct _object PyObject;
extern PyObject *PyObject_Vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames);
extern PyObject *PyObject_Call(PyObject *callable, PyObject *args, PyObject *kwargs);

static void park_forever(void *unused) {
    (void)unused;
    for (;;) {
        pause();
    }
}

PyObject *aiocop_guarded_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PyObject *result;
    pthread_cleanup_push(park_forever, NULL);
    result = PyObject_Vectorcall(callable, args, nargsf, kwnames);
    pthread_cleanup_pop(0);
    return result;
}

PyObject *aiocop_guarded_call(PyObject *callable, PyObject *args, PyObject *kwargs) {
    PyObject *result;
    pthread_cleanup_push(park_forever, NULL);
    result = PyObject_Call(callable, args, kwargs);
    pthread_cleanup_pop(0);
    return result;
}
