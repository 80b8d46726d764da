//! A stack's keys, resolved once per stack ([`StackFacts`], from which
//! [`crate::keys`] picks a `--by` key): its innermost frame, its frame in
//! the user's own code (`app-frame`, `--app-root`, by the path rules of
//! [`crate::paths`]), the whole stack, each also by identity; and which
//! blocking events are known and accepted (`--ignore`).
//!
//! Every key is text, resolved through one file's [`Dictionary`]: ids are
//! per file, keys are comparable across files.

use crate::identity::{frame_facts, frame_identity, PathContext};
use crate::paths::{
    is_app_path, is_event_loop_frame, is_generated_path, is_import_frame, is_import_machinery, is_third_party_path,
    module_name,
};
use aiocop_trace::frame::{short_path, TRACE_SEPARATOR};
use aiocop_trace::records::{FrameId, StackId};
use aiocop_trace::Dictionary;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rustc_hash::FxHashMap;

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
    /// `--by handler`: the outermost frame of the user's own code inside
    /// the event loop (never generated code, never a module's top level
    /// when a function of the app is inside it), by identity: the handler,
    /// or whatever the framework called into, whose helpers are inside it.
    /// Without one, the app frame's identity.
    pub handler_identity: String,
    pub handler_line: Option<i32>,
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
        handler_identity: text.clone(),
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
    let handler_at = handler_frame(
        frames.len(),
        outside,
        |at| (known(at), recorded_path(frames[at]), function(frames[at])),
        app_roots,
    );
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
        handler_identity: identities[handler_at].clone(),
        handler_line: line(handler_at),
        through_import: frames.iter().any(|&frame| is_import_frame(recorded_path(frame))),
        import,
    }
}

/// The index of a stack's handler frame (see [`StackFacts::handler_identity`]):
/// of the frames from `outside` (the innermost outside a lazy import) to the
/// innermost event loop frame, the outermost of the app that is not
/// generated code, preferring a function to a module's top level; without
/// one, the innermost third-party frame there (the framework's code that
/// ran: never the script that started the loop), else `outside`.
/// `frame(at)` is (known, recorded path, function).
fn handler_frame<'f>(
    count: usize,
    outside: usize,
    frame: impl Fn(usize) -> (bool, &'f str, &'f str),
    app_roots: &[String],
) -> usize {
    let inside_loop = (outside..count).find(|&at| is_event_loop_frame(frame(at).1, frame(at).2)).unwrap_or(count);
    let mine = |at: &usize| {
        let (known, path, _) = frame(*at);
        known && !is_generated_path(path) && is_app_path(path, app_roots)
    };
    let top_level = |at: &usize| frame(*at).2 == "<module>";
    let candidates = || (outside..inside_loop).rev().filter(mine);
    candidates()
        .find(|at| !top_level(at))
        .or_else(|| candidates().next())
        .or_else(|| (outside..inside_loop).find(|&at| frame(at).0 && is_third_party_path(frame(at).1)))
        .unwrap_or(outside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiocop_trace::records::{Chunk, Frame};

    static NO_PATHS: PathContext = PathContext { sys_path: Vec::new(), app_root: None };

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
                // The outermost frame of the app: the handler, whose helper get_user is.
                handler_identity: "handlers.py:handle".to_owned(),
                handler_line: Some(7),
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
    fn the_handler_is_the_outermost_app_function_inside_the_loop() {
        let strings = [
            "/srv/app/costs.py",
            "burn",
            "/srv/app/app.py",
            "render",
            "<string>",
            "send",
            "/usr/lib/python3.12/asyncio/base_events.py",
            "_run_once",
            "/srv/app/app.py",
            "<module>",
            "/v/lib/python3.12/site-packages/aiohttp/web_protocol.py",
            "_handle_request",
        ];
        let frame = |file: u32, line: i32| Frame { file, line, function: file + 1 };
        let mut dictionary = Dictionary::new();
        dictionary.add(&Chunk {
            strings: strings.iter().enumerate().map(|(i, s)| (i as u32, (*s).to_owned())).collect(),
            frames: vec![
                (0, frame(0, 9)),
                (1, frame(2, 22)),
                (2, frame(4, 13)),
                (3, frame(6, 1922)),
                (4, frame(8, 43)),
                (5, frame(10, 577)),
            ],
            stacks: vec![
                // burn <- render <- loop <- the script that started the loop
                (0, vec![0, 1, 3, 4]),
                // generated code outside the handler is not the app's
                (1, vec![0, 1, 2, 3, 4]),
                // only the framework inside the loop: its frame, never the script
                (2, vec![5, 3, 4]),
            ],
            ..Chunk::default()
        });
        let mut resolver = StackResolver::new(&dictionary, &[], None, &NO_PATHS);
        assert_eq!(resolver.facts(0).handler_identity, "/srv/app/app.py:render");
        assert_eq!(resolver.facts(0).handler_line, Some(22));
        assert_eq!(resolver.facts(1).handler_identity, "/srv/app/app.py:render");
        assert_eq!(resolver.facts(2).handler_identity, "aiohttp/web_protocol.py:_handle_request");
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
