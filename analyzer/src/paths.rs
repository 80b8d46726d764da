//! Which code a path (a frame's `co_filename`, as recorded) belongs to:
//! the standard library, a third-party package, the import machinery, or
//! the user's own code (`app-frame`, `--app-root`). Every rule about paths
//! is here, so that the keys ([`crate::group`]) and frame identities
//! ([`crate::identity`]) classify a path alike. A leaf: it uses nothing of
//! the crate but the trace crate's `short_path`.

use aiocop_trace::frame::short_path;

/// Whether `path` (as recorded: `co_filename`) is library code: the
/// standard library (under a `lib/pythonX` or `lib/pypyX` directory, or
/// `<frozen ...>`), or a third-party package (`site-packages`,
/// `dist-packages`).
pub fn is_library_path(path: &str) -> bool {
    if path.starts_with("<frozen ") {
        return true;
    }
    let path = path.replace('\\', "/");
    if path.contains("/site-packages/") || path.contains("/dist-packages/") {
        return true;
    }
    // `/usr/lib/python3.12/`, `/venv/lib/python3.12/`, `C:/Python312/Lib/`:
    // the directory after `lib/` names the interpreter.
    let lower = path.to_ascii_lowercase();
    lower.match_indices("/lib/").any(|(at, _)| {
        let rest = &lower[at + "/lib/".len()..];
        let interpreter = ["python", "pypy"].iter().any(|name| {
            rest.strip_prefix(name).is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
        });
        // Windows installs keep the standard library straight in `Lib/`.
        interpreter || (path[at..].starts_with("/Lib/") && path[..at].to_ascii_lowercase().contains("python"))
    })
}

/// Whether `path` is under `root`, as whole path components: `/srv/app`
/// holds `/srv/app/x.py`, not `/srv/apple/x.py`.
pub fn is_under(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return path.starts_with('/');
    }
    path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` is the user's own code: under one of `app_roots` if any
/// are given, otherwise anything that is neither library code nor the
/// runtime's (see [`is_runtime_path`]).
pub fn is_app_path(path: &str, app_roots: &[String]) -> bool {
    if app_roots.is_empty() {
        !is_library_path(path) && !is_runtime_path(path)
    } else {
        app_roots.iter().any(|root| is_under(path, root))
    }
}

/// Whether `path` is code without a real file, or a launcher, never "your
/// code": generated code (`<string>`, as multiprocessing's spawn bootstrap
/// and Sanic's compiled handlers run, `<frozen runpy>`, or a bare name
/// such as Sanic's `send`), or a console script's wrapper in a `bin/` or
/// `Scripts/` directory (`.venv/bin/gunicorn`).
pub fn is_runtime_path(path: &str) -> bool {
    let path = path.replace('\\', "/");
    let (directory, file) = path.rsplit_once('/').unwrap_or(("", &path));
    let generated = path.starts_with('<') || (directory.is_empty() && !file.contains('.'));
    let launcher = (directory.ends_with("/bin") || directory.ends_with("/Scripts")) && !file.ends_with(".py");
    generated || launcher
}

/// Whether `path` is the import machinery: importlib's frozen bootstrap,
/// zipimport, or `importlib/__init__.py` (`import_module`).
pub fn is_import_machinery(path: &str) -> bool {
    path.starts_with("<frozen importlib._bootstrap")
        || path == "<frozen zipimport>"
        || path.replace('\\', "/").ends_with("/importlib/__init__.py")
}

/// Whether `path` is a third-party package: under `site-packages` or `dist-packages`.
pub fn is_third_party_path(path: &str) -> bool {
    let path = path.replace('\\', "/");
    path.contains("/site-packages/") || path.contains("/dist-packages/")
}

/// A module's dotted name from its file's path as recorded: the path after
/// `site-packages/` (or `src/`) if any, else the file (or, for a package's
/// `__init__.py`, its directory) alone.
pub fn module_name(path: &str) -> String {
    let path = path.replace('\\', "/");
    // The standard library's shown path is its file alone: the module is
    // the path after `lib/pythonX.Y/`.
    let stdlib = path.match_indices("/lib/python").find_map(|(at, _)| {
        let rest = &path[at + "/lib/python".len()..];
        rest.split_once('/')
            .filter(|(version, _)| version.starts_with(|c: char| c.is_ascii_digit()))
            .map(|(_, rest)| rest)
    });
    let short = match stdlib {
        Some(rest) if !rest.starts_with("site-packages/") => rest,
        _ => short_path(&path),
    };
    let stem = short.strip_suffix(".py").unwrap_or(short);
    let stem = stem.strip_suffix("/__init__").unwrap_or(stem);
    if short.len() < path.len() && !short.starts_with('/') {
        stem.replace('/', ".")
    } else {
        stem.rsplit('/').next().unwrap_or(stem).to_owned()
    }
}

/// Whether a frame is the import system's (`<frozen importlib._bootstrap>`,
/// `<frozen importlib._bootstrap_external>`): a stack through one is a
/// module being imported, work done once, on first use.
pub fn is_import_frame(path: &str) -> bool {
    path.starts_with("<frozen importlib._bootstrap")
}

/// What follows a `lib/pythonX.Y/` (or `lib/pypyX.Y/`) directory.
pub fn after_standard_library(path: &str) -> Option<&str> {
    path.match_indices("/lib/").find_map(|(at, _)| {
        let rest = &path[at + "/lib/".len()..];
        let (directory, inside) = rest.split_once('/')?;
        let interpreter = ["python", "pypy"].iter().any(|name| {
            directory.strip_prefix(name).is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
        });
        interpreter.then_some(inside)
    })
}

/// Whether `path` names no real file: code made at run time (`<string>`
/// from `exec`, Sanic's generated handlers, `<frozen ...>` modules,
/// `<stdin>`). Never the user's own code for `--by handler`.
pub fn is_generated_path(path: &str) -> bool {
    path.starts_with('<')
}

/// Whether a frame is the event loop running callbacks (asyncio's
/// `_run_once`, `run_forever`, `run_until_complete`, `asyncio.run`): the
/// frames outside it started the loop, they do not serve any one slice.
pub fn is_event_loop_frame(path: &str, function: &str) -> bool {
    let Some(inside) = after_standard_library(&path.replace('\\', "/")).map(str::to_owned) else { return false };
    matches!(inside.as_str(), "asyncio/base_events.py" | "asyncio/runners.py" | "asyncio/events.py")
        && matches!(function, "_run_once" | "run_forever" | "run_until_complete" | "run" | "_run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_code_and_the_loop_itself_are_not_handlers() {
        for path in ["<string>", "<frozen runpy>", "<stdin>"] {
            assert!(is_generated_path(path), "{path}");
        }
        assert!(!is_generated_path("/srv/app/handlers.py"));
        assert!(is_event_loop_frame("/usr/lib/python3.12/asyncio/base_events.py", "_run_once"));
        assert!(is_event_loop_frame("/root/.pyenv/versions/3.11.7/lib/python3.11/asyncio/runners.py", "run"));
        assert!(!is_event_loop_frame("/usr/lib/python3.12/asyncio/base_events.py", "create_connection"));
        assert!(!is_event_loop_frame("/srv/app/asyncio/runners.py", "run"));
    }

    #[test]
    fn library_paths_are_the_standard_library_and_installed_packages() {
        for path in [
            "/usr/lib/python3.12/asyncio/events.py",
            "/home/me/.venv/lib/python3.11/site-packages/httpx/_client.py",
            "/usr/lib/python3/dist-packages/requests/api.py",
            "/opt/pypy/lib/pypy3.10/socket.py",
            "<frozen importlib._bootstrap>",
            "C:\\Python312\\Lib\\asyncio\\events.py",
            "C:\\app\\.venv\\Lib\\site-packages\\x.py",
        ] {
            assert!(is_library_path(path), "{path}");
        }
        for path in [
            "/srv/app/handlers.py",
            "/home/me/project/src/svc/api.py",
            "/home/me/lib/pythonic/tool.py",
            "/home/me/lib/python-stuff/x.py",
            "<string>",
            "app.py",
            "C:\\app\\Lib\\mine.py",
        ] {
            assert!(!is_library_path(path), "{path}");
        }
    }

    #[test]
    fn module_names_come_from_paths_and_the_machinery_is_recognised() {
        for (path, module) in [
            ("/v/lib/python3.12/site-packages/numpy/__init__.py", "numpy"),
            ("/v/lib/python3.12/site-packages/numpy/core/multiarray.py", "numpy.core.multiarray"),
            ("/srv/app/src/shop/models.py", "shop.models"),
            ("/tmp/t0/lazy_pkg/__init__.py", "lazy_pkg"),
            ("/tmp/t0/lazy_pkg/alpha.py", "alpha"),
            ("/usr/lib/python3.11/xml/dom/__init__.py", "xml.dom"),
            ("/root/.pyenv/versions/3.11.7/lib/python3.11/json/decoder.py", "json.decoder"),
            ("C:\\app\\.venv\\Lib\\site-packages\\h11\\_events.py", "h11._events"),
        ] {
            assert_eq!(module_name(path), module, "{path}");
        }
        for path in [
            "<frozen importlib._bootstrap>",
            "<frozen importlib._bootstrap_external>",
            "<frozen zipimport>",
            "/usr/lib/python3.12/importlib/__init__.py",
        ] {
            assert!(is_import_machinery(path), "{path}");
        }
        for path in ["<frozen runpy>", "/usr/lib/python3.12/importlib/resources/_common.py", "/srv/app/importlib.py"] {
            assert!(!is_import_machinery(path), "{path}");
        }
        assert!(is_third_party_path("/v/lib/python3.12/site-packages/redis/client.py"));
        assert!(!is_third_party_path("/usr/lib/python3.12/json/decoder.py"));
    }

    #[test]
    fn app_roots_match_whole_path_components() {
        let roots = ["/srv/app".to_owned(), "/opt/lib/".to_owned()];
        assert!(is_app_path("/srv/app/x.py", &roots));
        assert!(is_app_path("/opt/lib/site-packages/mine/y.py", &roots));
        assert!(!is_app_path("/srv/apple/x.py", &roots));
        assert!(!is_app_path("/srv/app", &roots));
        assert!(!is_app_path("/home/me/x.py", &roots));
        // No roots: anything that is not library code.
        assert!(is_app_path("/home/me/x.py", &[]));
        assert!(!is_app_path("/usr/lib/python3.12/json/decoder.py", &[]));
    }

    #[test]
    fn generated_code_and_launchers_are_not_app_code() {
        for path in [
            "<string>",
            "<frozen runpy>",
            "send",
            "/srv/.venv/bin/gunicorn",
            "/usr/local/bin/uvicorn",
            "C:\\v\\Scripts\\hypercorn",
        ] {
            assert!(is_runtime_path(path), "{path}");
            assert!(!is_app_path(path, &[]), "{path}");
        }
        for path in ["app.py", "/srv/app/handlers.py", "/srv/app/bin/tool.py", "/srv/app/binary/run"] {
            assert!(!is_runtime_path(path), "{path}");
            assert!(is_app_path(path, &[]), "{path}");
        }
    }
}
