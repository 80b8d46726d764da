//! What a row of the report stands for (`--by`), which frames are the
//! user's own code (`app-frame`, `--app-root`), and which blocking events
//! are known and accepted (`--ignore`).
//!
//! Every key is text, resolved through one file's [`Dictionary`]: ids are
//! per file, keys are comparable across files.

use crate::identity::{frame_facts, frame_identity, is_import_frame, PathContext};
use aiocop_trace::frame::{short_path, TRACE_SEPARATOR};
use aiocop_trace::records::{FrameId, StackId};
use aiocop_trace::Dictionary;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rustc_hash::FxHashMap;
use std::fmt;
use std::str::FromStr;

/// The key a blocking event (or a CPU-blocking slice) is grouped by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The innermost frame of the event's stack, `path:line:function`.
    EntryPoint,
    /// The innermost frame's identity, without its line (see [`crate::identity`]).
    Function,
    /// The innermost frame in the user's own code; the entry point if none.
    AppFrame,
    /// The event's name (`open`, `time.sleep`).
    Event,
    /// What the slice ran: the coroutine's qualname for a task step.
    Task,
    /// The whole stack, innermost first, joined with ` <- `.
    Stack,
    /// The slice's value of a context provider key.
    Context(String),
}

impl FromStr for GroupBy {
    type Err = String;

    fn from_str(text: &str) -> Result<GroupBy, String> {
        match text {
            "entry-point" => Ok(GroupBy::EntryPoint),
            "function" => Ok(GroupBy::Function),
            "app-frame" => Ok(GroupBy::AppFrame),
            "event" => Ok(GroupBy::Event),
            "task" => Ok(GroupBy::Task),
            "stack" => Ok(GroupBy::Stack),
            _ => match text.strip_prefix("context:") {
                Some("") => Err("context: needs a key, as in context:endpoint".to_owned()),
                Some(key) => Ok(GroupBy::Context(key.to_owned())),
                None => Err(format!(
                    "'{text}' is not one of entry-point, function, app-frame, event, task, stack, context:KEY"
                )),
            },
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupBy::EntryPoint => f.write_str("entry-point"),
            GroupBy::Function => f.write_str("function"),
            GroupBy::AppFrame => f.write_str("app-frame"),
            GroupBy::Event => f.write_str("event"),
            GroupBy::Task => f.write_str("task"),
            GroupBy::Stack => f.write_str("stack"),
            GroupBy::Context(key) => write!(f, "context:{key}"),
        }
    }
}

impl GroupBy {
    /// The title of the key column of the blocking I/O table.
    pub fn title(&self) -> String {
        match self {
            GroupBy::EntryPoint => "entry point".to_owned(),
            GroupBy::Function => "function".to_owned(),
            GroupBy::AppFrame => "app frame".to_owned(),
            GroupBy::Event => "event".to_owned(),
            GroupBy::Task => "task".to_owned(),
            GroupBy::Stack => "stack".to_owned(),
            GroupBy::Context(key) => format!("context {key}"),
        }
    }

    /// The title of the key column of the CPU-blocking table.
    pub fn cpu_title(&self) -> String {
        match self {
            GroupBy::EntryPoint | GroupBy::Event => "most sampled frame".to_owned(),
            GroupBy::Function => "most sampled function".to_owned(),
            GroupBy::AppFrame => "most sampled app frame".to_owned(),
            GroupBy::Stack => "most sampled stack".to_owned(),
            GroupBy::Task | GroupBy::Context(_) => self.title(),
        }
    }
}

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
/// are given, otherwise anything that is not library code.
pub fn is_app_path(path: &str, app_roots: &[String]) -> bool {
    if app_roots.is_empty() {
        !is_library_path(path)
    } else {
        app_roots.iter().any(|root| is_under(path, root))
    }
}

/// `--ignore` globs: a frame matches if its `path:line:function` (as shown),
/// its shown path, or its recorded path matches any of them. `*` matches
/// `/` too, so `*/logging/*` and `config.py:*` both work.
#[derive(Clone, Debug)]
pub struct IgnoreSet {
    set: GlobSet,
}

impl IgnoreSet {
    /// `None` when there are no patterns.
    pub fn new(patterns: &[String]) -> Result<Option<IgnoreSet>, (String, globset::Error)> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| (pattern.clone(), e))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| (patterns.join(" "), e))?;
        Ok(Some(IgnoreSet { set }))
    }

    pub fn matches_frame(&self, formatted: &str, recorded_path: &str) -> bool {
        self.set.is_match(formatted) || self.set.is_match(short_path(recorded_path)) || self.set.is_match(recorded_path)
    }
}

/// What a stack resolves to, computed once per stack per file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackFacts {
    /// The innermost frame, `path:line:function`; for a stack inside a lazy
    /// import, the innermost frame outside the import machinery.
    pub entry_point: String,
    /// The innermost frame in the user's own code; without one, the
    /// innermost third-party frame (site-packages, dist-packages); without
    /// either, the entry point. Inside a lazy import, of the frames outside
    /// the import machinery.
    pub app_frame: String,
    /// Every frame, innermost first, joined with ` <- `.
    pub trace: String,
    /// Whether a frame matches an `--ignore` glob.
    pub ignored: bool,
    /// The same three by identity, without lines (see [`crate::identity`]).
    pub entry_identity: String,
    pub app_identity: String,
    pub trace_identity: String,
    /// The lines of the entry point and of the app frame (`None` for a placeholder).
    pub entry_line: Option<i32>,
    pub app_line: Option<i32>,
    /// Whether a frame is the import system's: first-call import work.
    pub through_import: bool,
    /// Set when the stack runs inside the import machinery: a lazy import.
    pub import: Option<ImportFacts>,
}

/// A stack inside a lazy import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportFacts {
    /// Whether frames outside the machinery were recorded: a deep import's
    /// stack may be cut at the trace depth before its importer.
    pub has_importer: bool,
    /// The module the outermost import runs, from its `<module>` frame's
    /// path (`numpy/__init__.py`: `numpy`), if recorded.
    pub module_hint: Option<String>,
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

/// The id the recorder writes for an event whose stack could not be taken.
pub const NO_STACK: StackId = u32::MAX;

/// Resolves one file's stack ids to [`StackFacts`], caching them.
pub struct StackResolver<'a> {
    dictionary: &'a Dictionary,
    app_roots: &'a [String],
    ignore: Option<&'a IgnoreSet>,
    paths: &'a PathContext,
    cache: FxHashMap<StackId, StackFacts>,
}

impl<'a> StackResolver<'a> {
    pub fn new(
        dictionary: &'a Dictionary,
        app_roots: &'a [String],
        ignore: Option<&'a IgnoreSet>,
        paths: &'a PathContext,
    ) -> Self {
        StackResolver { dictionary, app_roots, ignore, paths, cache: FxHashMap::default() }
    }

    pub fn facts(&mut self, stack: StackId) -> &StackFacts {
        let (dictionary, app_roots, ignore, paths) = (self.dictionary, self.app_roots, self.ignore, self.paths);
        self.cache.entry(stack).or_insert_with(|| resolve_stack(dictionary, app_roots, ignore, paths, stack))
    }
}

fn resolve_stack(
    dictionary: &Dictionary,
    app_roots: &[String],
    ignore: Option<&IgnoreSet>,
    paths: &PathContext,
    stack: StackId,
) -> StackFacts {
    let placeholder = |text: String| StackFacts {
        entry_point: text.clone(),
        app_frame: text.clone(),
        trace: text.clone(),
        entry_identity: text.clone(),
        app_identity: text.clone(),
        trace_identity: text,
        ..StackFacts::default()
    };
    let frames = match dictionary.stack(stack) {
        None if stack == NO_STACK => return placeholder("<no stack>".to_owned()),
        None => return placeholder(format!("<unknown stack {stack}>")),
        Some([]) => return placeholder("<empty stack>".to_owned()),
        Some(frames) => frames,
    };
    let recorded_path =
        |frame: FrameId| -> &str { dictionary.frame(frame).and_then(|f| dictionary.string(f.file)).unwrap_or("") };
    let function =
        |frame: FrameId| -> &str { dictionary.frame(frame).and_then(|f| dictionary.string(f.function)).unwrap_or("") };
    let formatted: Vec<String> = frames.iter().map(|&frame| dictionary.format_frame(frame)).collect();
    // A lazy import is keyed where it was imported: the frames outside the
    // outermost run of import machinery, not each module-level line of
    // everything it pulled in.
    let outermost_machinery = frames.iter().rposition(|&frame| is_import_machinery(recorded_path(frame)));
    let import = outermost_machinery.map(|at| {
        // A `<module>` frame alone outside the machinery is a module being
        // imported whose importer is past the trace depth, not an importer.
        let cut = at + 2 == frames.len() && function(frames[at + 1]) == "<module>";
        let has_importer = at + 1 < frames.len() && !cut;
        let inside = if has_importer { &frames[..at] } else { frames };
        let module_hint = inside
            .iter()
            .rev()
            .find(|&&frame| function(frame) == "<module>")
            .map(|&frame| module_name(recorded_path(frame)));
        ImportFacts { has_importer, module_hint }
    });
    let outside = match (&import, outermost_machinery) {
        (Some(import), Some(at)) if import.has_importer => at + 1,
        _ => 0,
    };
    let known = |at: usize| dictionary.frame(frames[at]).is_some();
    // The innermost frame of the app outside the import, else of a
    // third-party package, else the entry point.
    let app_at = (outside..frames.len())
        .find(|&at| known(at) && is_app_path(recorded_path(frames[at]), app_roots))
        .or_else(|| (outside..frames.len()).find(|&at| known(at) && is_third_party_path(recorded_path(frames[at]))))
        .unwrap_or(outside);
    let ignored = ignore.is_some_and(|ignore| {
        frames.iter().zip(&formatted).any(|(&frame, text)| ignore.matches_frame(text, recorded_path(frame)))
    });
    let identities: Vec<String> = frames
        .iter()
        .zip(&formatted)
        .map(|(&frame, text)| {
            frame_facts(dictionary, frame).map_or_else(|| text.clone(), |f| frame_identity(&f, paths))
        })
        .collect();
    let line = |at: usize| dictionary.frame(frames[at]).map(|f| f.line);
    StackFacts {
        entry_point: formatted[outside].clone(),
        app_frame: formatted[app_at].clone(),
        trace: formatted.join(TRACE_SEPARATOR),
        ignored,
        entry_identity: identities[outside].clone(),
        app_identity: identities[app_at].clone(),
        trace_identity: identities.join(TRACE_SEPARATOR),
        entry_line: line(outside),
        app_line: line(app_at),
        through_import: frames.iter().any(|&frame| is_import_frame(recorded_path(frame))),
        import,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiocop_trace::records::{Chunk, Frame};

    static NO_PATHS: PathContext = PathContext { sys_path: Vec::new(), app_root: None };

    #[test]
    fn group_by_parses_every_documented_form_and_shows_it_back() {
        for text in
            ["entry-point", "function", "app-frame", "event", "task", "stack", "context:endpoint", "context:a:b"]
        {
            assert_eq!(text.parse::<GroupBy>().unwrap().to_string(), text);
        }
        assert_eq!("context:user".parse::<GroupBy>(), Ok(GroupBy::Context("user".to_owned())));
        assert_eq!("context:".parse::<GroupBy>(), Err("context: needs a key, as in context:endpoint".to_owned()));
        assert!("entrypoint".parse::<GroupBy>().unwrap_err().starts_with("'entrypoint' is not one of"));
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

    /// A dictionary with stacks 0 (app <- lib <- stdlib... innermost first:
    /// stdlib, library, app, app2) and 1 (only the standard library).
    fn dictionary() -> Dictionary {
        let strings = [
            "/usr/lib/python3.12/socket.py",
            "create_connection",
            "/v/lib/python3.12/site-packages/redis/connection.py",
            "connect",
            "/srv/app/cache.py",
            "get_user",
            "/srv/app/handlers.py",
            "handle",
        ];
        let frame = |file: u32, line: i32| Frame { file, line, function: file + 1 };
        let mut dictionary = Dictionary::new();
        dictionary.add(&Chunk {
            strings: strings.iter().enumerate().map(|(i, s)| (i as u32, (*s).to_owned())).collect(),
            frames: vec![(10, frame(0, 800)), (11, frame(2, 600)), (12, frame(4, 42)), (13, frame(6, 7))],
            stacks: vec![(0, vec![10, 11, 12, 13]), (1, vec![10]), (2, vec![])],
            ..Chunk::default()
        });
        dictionary
    }

    #[test]
    fn stacks_resolve_to_entry_point_app_frame_and_trace() {
        let dictionary = dictionary();
        let paths = PathContext::new(&dictionary, [0, 1], &[]);
        assert_eq!(paths.app_root.as_deref(), Some("/srv/app/"));
        let mut resolver = StackResolver::new(&dictionary, &[], None, &paths);
        assert_eq!(
            resolver.facts(0),
            &StackFacts {
                entry_point: "socket.py:800:create_connection".to_owned(),
                app_frame: "/srv/app/cache.py:42:get_user".to_owned(),
                trace: "socket.py:800:create_connection <- redis/connection.py:600:connect \
                        <- /srv/app/cache.py:42:get_user <- /srv/app/handlers.py:7:handle"
                    .to_owned(),
                ignored: false,
                entry_identity: "socket.py:create_connection".to_owned(),
                app_identity: "cache.py:get_user".to_owned(),
                trace_identity: "socket.py:create_connection <- redis/connection.py:connect \
                                 <- cache.py:get_user <- handlers.py:handle"
                    .to_owned(),
                entry_line: Some(800),
                app_line: Some(42),
                through_import: false,
                import: None,
            }
        );
        // Only library frames: the app frame falls back to the entry point.
        assert_eq!(resolver.facts(1).app_frame, "socket.py:800:create_connection");
        assert_eq!(resolver.facts(2).entry_point, "<empty stack>");
        assert_eq!(resolver.facts(NO_STACK).entry_point, "<no stack>");
        assert_eq!(resolver.facts(77).trace, "<unknown stack 77>");
    }

    #[test]
    fn app_roots_pick_the_innermost_frame_under_them() {
        let dictionary = dictionary();
        let roots = ["/srv/app/handlers.py".to_owned(), "/v/lib/python3.12/site-packages/redis".to_owned()];
        let mut resolver = StackResolver::new(&dictionary, &roots, None, &NO_PATHS);
        assert_eq!(resolver.facts(0).app_frame, "redis/connection.py:600:connect");
        let roots = ["/srv/app/handlers.py".to_owned()];
        let mut resolver = StackResolver::new(&dictionary, &roots, None, &NO_PATHS);
        // `handlers.py` is a file, not a directory: nothing is under it, and
        // the innermost third-party frame stands for the stack.
        assert_eq!(resolver.facts(0).app_frame, "redis/connection.py:600:connect");
        // Only the standard library: the entry point.
        assert_eq!(resolver.facts(1).app_frame, "socket.py:800:create_connection");
    }

    #[test]
    fn ignore_globs_match_formatted_frames_shown_paths_and_recorded_paths() {
        let dictionary = dictionary();
        let ignored = |pattern: &str| {
            let set = IgnoreSet::new(&[pattern.to_owned()]).unwrap().unwrap();
            let mut resolver = StackResolver::new(&dictionary, &[], Some(&set), &NO_PATHS);
            (resolver.facts(0).ignored, resolver.facts(1).ignored)
        };
        assert_eq!(ignored("/srv/app/cache.py:42:get_user"), (true, false));
        assert_eq!(ignored("*:get_user"), (true, false));
        assert_eq!(ignored("redis/*"), (true, false)); // the shown path
        assert_eq!(ignored("*/site-packages/redis/*"), (true, false)); // the recorded path
        assert_eq!(ignored("socket.py"), (true, true));
        assert_eq!(ignored("*/python3.12/socket.py"), (true, true));
        assert_eq!(ignored("*:43:*"), (false, false));
        assert_eq!(ignored("cache.py"), (false, false)); // a glob matches whole strings
        assert!(IgnoreSet::new(&[]).unwrap().is_none());
        assert_eq!(IgnoreSet::new(&["a[".to_owned()]).unwrap_err().0, "a[");
    }
}
