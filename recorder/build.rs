//! Builds `csrc/exit_guard.c` for every Python, and `csrc/eval_breaker.c` and
//! `csrc/frame_offsets.c` against the headers of the Python the
//! extension is built for, where that Python is 3.11 or 3.12 and installed
//! its internal headers; elsewhere the recorder samples without it (see
//! `src/eval_breaker.rs`).

use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(aiocop_eval_breaker)");
    println!("cargo:rerun-if-changed=csrc/eval_breaker.c");
    println!("cargo:rerun-if-changed=csrc/frame_offsets.c");
    println!("cargo:rerun-if-changed=csrc/exit_guard.c");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    // Every version: calls into Python a finalizing interpreter's pthread_exit
    // must not unwind through (see the file).
    cc::Build::new().file("csrc/exit_guard.c").flag("-fexceptions").compile("aiocop_exit_guard");
    let config = pyo3_build_config::get();
    let (major, minor) = (config.version().major, config.version().minor);
    // The monitor assumes one thread runs Python at a time (the GIL): say so
    // at `pip install`, not with a crash later (python_support.py says it at
    // import too).
    if config.is_free_threaded() {
        panic!(
            "aiocop does not support free-threaded CPython ({major}.{minor}t): \
             install it for the standard build (python{major}.{minor})"
        );
    }
    if major != 3 || !(11..=12).contains(&minor) {
        return;
    }
    let Some(include) = config.executable().and_then(include_dir) else {
        println!("cargo:warning=no Python include directory found: sampling on 3.{minor} takes the GIL");
        return;
    };
    if !std::path::Path::new(&include).join("internal/pycore_interp.h").exists() {
        println!("cargo:warning=no internal headers under {include}: sampling on 3.{minor} takes the GIL");
        return;
    }
    cc::Build::new()
        .file("csrc/eval_breaker.c")
        .file("csrc/frame_offsets.c")
        .include(&include)
        .warnings(false)
        .compile("aiocop_eval_breaker");
    // Both files' functions: the eval breaker and the frame offsets.
    println!("cargo:rustc-cfg=aiocop_eval_breaker");
}

/// `sysconfig`'s include directory of the Python at `executable`.
fn include_dir(executable: &str) -> Option<String> {
    let output = Command::new(executable)
        .args(["-c", "import sysconfig; print(sysconfig.get_path('include'))"])
        .output()
        .ok()?;
    let path = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !path.is_empty()).then_some(path)
}
