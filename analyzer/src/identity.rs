//! A frame's *identity*: what it is called in a way that survives a
//! release, so that `diff` (and `report --by function`) can match a group
//! of one build with the same group of the next although lines moved and
//! the code was deployed under another directory.
//!
//! The identity of a frame is made in one place, [`frame_identity`], from
//! the [`FrameFacts`] of one place, [`frame_facts`]:
//!
//! - when the trace records a frame's module (`__name__` of its globals) and
//!   its code's `co_qualname`: `module:qualname`, as in
//!   `shop.views:CartView.total` (for a script's `__main__`, its relative
//!   path instead of the module: `app.py:main`);
//! - otherwise (format 1.0 traces record a path, a line and a function
//!   name): `relative/path.py:function`, with the path made relative by
//!   [`relative_path`].
//!
//! Line numbers are never part of an identity; groups keep the lines they
//! were seen at as detail.
//!
//! How a path is made relative (the first rule that applies):
//!
//! 1. `<frozen ...>`, `<string>` and other names in angle brackets stay as
//!    they are;
//! 2. a path under a `sys.path` entry the trace records: relative to the
//!    longest such entry;
//! 3. a path with a `site-packages` or `dist-packages` component: what
//!    follows the last one (`httpx/_client.py`);
//! 4. the standard library (a `lib/pythonX.Y` directory): what follows it
//!    (`asyncio/events.py`);
//! 5. a path under the file's *app root*: relative to it. The app root is
//!    the deepest directory holding every absolute path of the file's stacks
//!    that is the user's own code (not library code, not a console-script
//!    launcher in a `bin/` or `Scripts/` directory), so `/srv/app-1.4/shop/views.py` and
//!    `/srv/app-1.5/shop/views.py` are both `shop/views.py` as long as each
//!    release blocked in `shop/` and somewhere else under its root (when one
//!    blocked only in `shop/`, its paths lose `shop/` too: `diff` then pairs
//!    `views.py:total` with `shop/views.py:total`, see `diff::pair_groups`);
//! 6. anything else as recorded.

use crate::paths::{after_standard_library, is_library_path};
use aiocop_trace::records::{FrameId, StackId};
use aiocop_trace::Dictionary;
use std::borrow::Cow;

/// What a frame's identity is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameFacts<'a> {
    /// As recorded: `co_filename`.
    pub path: &'a str,
    pub line: i32,
    /// `co_name`.
    pub function: &'a str,
    /// `__name__` of the frame's globals, when the trace records it.
    pub module: Option<&'a str>,
    /// `co_qualname`, when the trace records it.
    pub qualname: Option<&'a str>,
}

/// The facts of frame `id`; `None` if the file never defines it (or its
/// strings).
pub fn frame_facts(dictionary: &Dictionary, id: FrameId) -> Option<FrameFacts<'_>> {
    let frame = dictionary.frame(id)?;
    // Format 1.0 records neither; 1.1 adds them per frame (empty where the
    // frame's globals had no `__name__`).
    let name = dictionary.frame_name(id).filter(|(module, qualname)| !module.is_empty() && !qualname.is_empty());
    Some(FrameFacts {
        path: dictionary.string(frame.file)?,
        line: frame.line,
        function: dictionary.string(frame.function)?,
        module: name.map(|(module, _)| module),
        qualname: name.map(|(_, qualname)| qualname),
    })
}

/// What the paths of one file are made relative to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathContext {
    /// The recording process's `sys.path` (format 1.1 headers), longest first.
    pub sys_path: Vec<String>,
    /// See rule 5 of the module doc: with a trailing `/`.
    pub app_root: Option<String>,
}

impl PathContext {
    /// The context of a file whose stacks are `stacks`, given its recorded
    /// `sys_path` (empty for format 1.0).
    pub fn new(dictionary: &Dictionary, stacks: impl IntoIterator<Item = StackId>, sys_path: &[String]) -> Self {
        let mut sys_path: Vec<String> =
            sys_path.iter().filter(|p| p.starts_with('/')).map(|p| format!("{}/", p.trim_end_matches('/'))).collect();
        sys_path.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let mut root: Option<Vec<&str>> = None;
        for stack in stacks {
            for &frame in dictionary.stack(stack).unwrap_or(&[]) {
                let Some(facts) = frame_facts(dictionary, frame) else { continue };
                if !counts_for_app_root(facts.path) {
                    continue;
                }
                let directory: Vec<&str> = facts.path.rsplit_once('/').map_or("", |(dir, _)| dir).split('/').collect();
                root = Some(match root {
                    None => directory,
                    Some(mut common) => {
                        let same = common.iter().zip(&directory).take_while(|(a, b)| a == b).count();
                        common.truncate(same);
                        common
                    }
                });
            }
        }
        // `["", "srv", "app"]` is `/srv/app/`; `[""]` would be `/`, no root at all.
        let app_root = root.filter(|parts| parts.len() > 1).map(|parts| format!("{}/", parts.join("/")));
        PathContext { sys_path, app_root }
    }
}

/// Whether `path` is the user's code as rule 5 sees it: absolute, not
/// library code, not a console-script launcher.
fn counts_for_app_root(path: &str) -> bool {
    let launcher = path.rsplit_once('/').is_some_and(|(dir, _)| dir.ends_with("/bin") || dir.ends_with("/Scripts"));
    path.starts_with('/') && !launcher && !is_library_path(path)
}

/// `path` made relative by the rules of the module doc.
pub fn relative_path<'a>(path: &'a str, context: &PathContext) -> Cow<'a, str> {
    if path.starts_with('<') {
        return Cow::Borrowed(path);
    }
    let path_slashes = if path.contains('\\') { Cow::Owned(path.replace('\\', "/")) } else { Cow::Borrowed(path) };
    let unix = path_slashes.as_ref();
    if let Some(rest) = context.sys_path.iter().find_map(|entry| unix.strip_prefix(entry.as_str())) {
        return Cow::Owned(rest.to_owned());
    }
    for packages in ["/site-packages/", "/dist-packages/"] {
        if let Some(at) = unix.rfind(packages) {
            return Cow::Owned(unix[at + packages.len()..].to_owned());
        }
    }
    if let Some(rest) = after_standard_library(unix) {
        return Cow::Owned(rest.to_owned());
    }
    if let Some(rest) = context.app_root.as_deref().and_then(|root| unix.strip_prefix(root)) {
        return Cow::Owned(rest.to_owned());
    }
    path_slashes
}

/// The identity of a frame: `module:qualname` when recorded, else
/// `relative/path.py:function`.
pub fn frame_identity(facts: &FrameFacts, context: &PathContext) -> String {
    match (facts.module, facts.qualname) {
        // A script run as `python app.py` is `__main__` whatever it is
        // called: its path says which.
        (Some("__main__"), Some(qualname)) => format!("{}:{qualname}", relative_path(facts.path, context)),
        (Some(module), Some(qualname)) => format!("{module}:{qualname}"),
        _ => format!("{}:{}", relative_path(facts.path, context), facts.function),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::is_import_frame;
    use aiocop_trace::records::{Chunk, Frame};

    fn facts<'a>(path: &'a str, function: &'a str) -> FrameFacts<'a> {
        FrameFacts { path, line: 42, function, module: None, qualname: None }
    }

    fn rooted(root: &str) -> PathContext {
        PathContext { sys_path: Vec::new(), app_root: Some(root.to_owned()) }
    }

    #[test]
    fn paths_lose_what_differs_between_deployments() {
        let none = PathContext::default();
        let relative = |path, context: &PathContext| relative_path(path, context).into_owned();
        assert_eq!(relative("/srv/v1/.venv/lib/python3.12/site-packages/httpx/_client.py", &none), "httpx/_client.py");
        assert_eq!(relative("/usr/lib/python3/dist-packages/requests/api.py", &none), "requests/api.py");
        assert_eq!(relative("/usr/lib/python3.12/asyncio/events.py", &none), "asyncio/events.py");
        assert_eq!(relative("C:\\Python312\\Lib\\site-packages\\x\\y.py", &none), "x/y.py");
        assert_eq!(relative("<frozen importlib._bootstrap>", &rooted("/srv/")), "<frozen importlib._bootstrap>");
        assert_eq!(relative("/srv/app-1.4/shop/views.py", &rooted("/srv/app-1.4/")), "shop/views.py");
        assert_eq!(relative("/srv/app-1.5/shop/views.py", &rooted("/srv/app-1.5/")), "shop/views.py");
        // Not under the root: as recorded.
        assert_eq!(relative("/opt/other/x.py", &rooted("/srv/app-1.4/")), "/opt/other/x.py");
        // A recorded sys.path wins, longest entry first.
        let context =
            PathContext { sys_path: vec!["/srv/app/src/".to_owned(), "/srv/app/".to_owned()], app_root: None };
        assert_eq!(relative("/srv/app/src/shop/views.py", &context), "shop/views.py");
        assert_eq!(relative("/srv/app/manage.py", &context), "manage.py");
    }

    #[test]
    fn identities_are_module_and_qualname_or_relative_path_and_function() {
        let root = rooted("/srv/app-1.4/");
        assert_eq!(frame_identity(&facts("/srv/app-1.4/shop/views.py", "total"), &root), "shop/views.py:total");
        let recorded =
            FrameFacts { module: Some("shop.views"), qualname: Some("CartView.total"), ..facts("x", "total") };
        assert_eq!(frame_identity(&recorded, &root), "shop.views:CartView.total");
        assert!(is_import_frame("<frozen importlib._bootstrap_external>"));
        assert!(!is_import_frame("<frozen runpy>"));
    }

    #[test]
    fn a_format_1_1_frame_is_named_by_its_recorded_module_and_qualname() {
        use aiocop_trace::records::{Appended, FrameName};
        let strings = ["/srv/app-1.5/shop/views.py", "total", "shop.views", "CartView.total", ""];
        let chunk = Chunk {
            strings: strings.iter().enumerate().map(|(id, text)| (id as u32, (*text).to_owned())).collect(),
            frames: vec![(0, Frame { file: 0, line: 45, function: 1 }), (1, Frame { file: 0, line: 9, function: 1 })],
            frame_names: Appended(vec![
                (0, FrameName { module: 2, qualname: 3 }),
                (1, FrameName { module: 4, qualname: 3 }), // no __name__: falls back
            ]),
            ..Chunk::default()
        };
        let mut dictionary = Dictionary::new();
        dictionary.add(&chunk);
        let context = rooted("/srv/app-1.5/");
        let identity = |id| frame_identity(&frame_facts(&dictionary, id).unwrap(), &context);
        assert_eq!(identity(0), "shop.views:CartView.total");
        assert_eq!(identity(1), "shop/views.py:total");
        let script =
            FrameFacts { module: Some("__main__"), qualname: Some("Job.run"), ..facts("/srv/app-1.5/run.py", "run") };
        assert_eq!(frame_identity(&script, &context), "run.py:Job.run");
    }

    #[test]
    fn a_path_under_a_recorded_sys_path_entry_is_relative_to_the_longest() {
        let context =
            PathContext::new(&Dictionary::new(), [], &["/srv/app-1.5".to_owned(), "/srv".to_owned(), String::new()]);
        assert_eq!(relative_path("/srv/app-1.5/shop/views.py", &context), "shop/views.py");
    }

    fn dictionary(paths: &[&str]) -> Dictionary {
        let mut strings: Vec<(u32, String)> =
            paths.iter().enumerate().map(|(i, p)| (i as u32, p.to_string())).collect();
        strings.push((100, "f".to_owned()));
        let frames = (0..paths.len() as u32).map(|i| (i, Frame { file: i, line: 1, function: 100 })).collect();
        let mut dictionary = Dictionary::new();
        dictionary.add(&Chunk {
            strings,
            frames,
            stacks: vec![(0, (0..paths.len() as u32).collect())],
            ..Chunk::default()
        });
        dictionary
    }

    #[test]
    fn the_app_root_is_the_deepest_directory_of_the_users_code() {
        let root = |paths: &[&str]| PathContext::new(&dictionary(paths), [0], &[]).app_root;
        assert_eq!(
            root(&[
                "/srv/app-1.4/shop/views.py",
                "/srv/app-1.4/shop/db/models.py",
                "/srv/app-1.4/main.py",
                "/usr/lib/python3.12/asyncio/events.py",
                "/srv/app-1.4/.venv/lib/python3.12/site-packages/starlette/routing.py",
                "/srv/app-1.4/.venv/bin/uvicorn",
                "<frozen runpy>",
            ]),
            Some("/srv/app-1.4/".to_owned())
        );
        assert_eq!(root(&["/srv/app/shop/views.py"]), Some("/srv/app/shop/".to_owned()));
        // Nothing in common but `/`: no root.
        assert_eq!(root(&["/srv/a.py", "/home/b.py"]), None);
        assert_eq!(root(&["/usr/lib/python3.12/json/encoder.py"]), None);
    }
}
