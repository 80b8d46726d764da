//! `--by`: the keys a report's rows stand for, and everything the rest of
//! the analyzer needs to know about each one. Adding a key is adding a
//! variant to [`GroupBy`] and a row to [`GroupBy::spec`]: reading
//! ([`crate::read`]), resolving ([`crate::resolve`]), the formats and
//! `diff` ask the key through the methods here and never match on it.

use crate::aggregate::Extra;
use crate::group::StackFacts;
use aiocop_trace::records::StringId;
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
    /// The outermost frame of the user's own code in the stack, by identity
    /// (see [`StackFacts::handler_identity`]): a handler with its helpers.
    Handler,
    /// The route of the request the slice served (`GET /items/{item_id}`),
    /// as the recorder names it: its context value `route`.
    Route,
    /// The slice's value of a context provider key.
    Context(String),
}

/// The context key the recorder keeps a slice's route in.
pub const ROUTE_KEY: &str = "route";
/// The context key the recorder writes once per request, in the slice that
/// routed it, with its route as the value.
pub const ROUTE_START_KEY: &str = "route.start";

/// Where a key's text comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A frame of the event's (or sample's) stack; a frame inside a lazy
    /// import is keyed by its importer ([`crate::resolve`]).
    Frame(FrameKey),
    /// The whole stack.
    Stack,
    /// The event's name; a CPU sample by its innermost frame.
    Event,
    /// An id the slice carries besides its events ([`Extra`]): what ran,
    /// or a context value.
    Slice,
}

/// Which frame of a stack a [`KeySource::Frame`] key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKey {
    /// The innermost frame, with its line (by identity when matching releases).
    EntryPoint,
    /// The innermost frame's identity, never with a line.
    Function,
    /// The innermost frame of the user's own code.
    AppFrame,
    /// The outermost frame of the user's own code, by identity.
    Handler,
}

/// What one `--by` key is.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// As written after `--by` (`context:` is followed by its key).
    pub name: &'static str,
    /// The title of the key column of the blocking I/O table.
    pub title: &'static str,
    /// The title of the key column of the CPU-blocking table, whose rows
    /// are keyed by their most sampled stack; `None`: the same as `title`.
    pub cpu_title: Option<&'static str>,
    pub source: KeySource,
}

/// The keys without an argument, in the order `--help` and errors list them.
const NAMED: [GroupBy; 8] = [
    GroupBy::EntryPoint,
    GroupBy::Function,
    GroupBy::AppFrame,
    GroupBy::Handler,
    GroupBy::Event,
    GroupBy::Task,
    GroupBy::Route,
    GroupBy::Stack,
];

impl GroupBy {
    /// What this key is: the one place each key is described.
    pub fn spec(&self) -> KeySpec {
        let (name, title, cpu_title, source) = match self {
            GroupBy::EntryPoint => {
                ("entry-point", "entry point", Some("most sampled frame"), KeySource::Frame(FrameKey::EntryPoint))
            }
            GroupBy::Function => {
                ("function", "function", Some("most sampled function"), KeySource::Frame(FrameKey::Function))
            }
            GroupBy::AppFrame => {
                ("app-frame", "app frame", Some("most sampled app frame"), KeySource::Frame(FrameKey::AppFrame))
            }
            GroupBy::Handler => {
                ("handler", "handler", Some("most sampled handler"), KeySource::Frame(FrameKey::Handler))
            }
            GroupBy::Route => ("route", "route", None, KeySource::Slice),
            GroupBy::Event => ("event", "event", Some("most sampled frame"), KeySource::Event),
            GroupBy::Task => ("task", "task", None, KeySource::Slice),
            GroupBy::Stack => ("stack", "stack", Some("most sampled stack"), KeySource::Stack),
            GroupBy::Context(_) => ("context:", "context", None, KeySource::Slice),
        };
        KeySpec { name, title, cpu_title, source }
    }

    /// The title of the key column of the blocking I/O table.
    pub fn title(&self) -> String {
        match self {
            GroupBy::Context(key) => format!("{} {key}", self.spec().title),
            _ => self.spec().title.to_owned(),
        }
    }

    /// The title of the key column of the CPU-blocking table.
    pub fn cpu_title(&self) -> String {
        self.spec().cpu_title.map_or_else(|| self.title(), str::to_owned)
    }

    /// Whether the key is a frame of the stack, where the lazy-import rule
    /// applies (entry point, function, app frame).
    pub fn is_frame(&self) -> bool {
        matches!(self.spec().source, KeySource::Frame(_))
    }

    /// Whether the key names code (a frame or a stack): `diff` pairs such
    /// keys across releases by identity.
    pub fn names_code(&self) -> bool {
        matches!(self.spec().source, KeySource::Frame(_) | KeySource::Stack)
    }

    /// Whether the key is an id the slice carries ([`Extra`]), not a stack:
    /// a slice without samples still has one.
    pub fn is_slice_key(&self) -> bool {
        self.spec().source == KeySource::Slice
    }

    /// What each chunk's slices must carry besides their events for this
    /// key; `context_key_id` is the string id of `context:KEY`'s key.
    pub fn extra(&self, context_key_id: Option<StringId>) -> Extra {
        match self {
            GroupBy::Task => Extra::What,
            GroupBy::Context(_) | GroupBy::Route => Extra::Context(context_key_id),
            _ => Extra::None,
        }
    }

    /// Whether the report gains the Routes table (requests and their loop
    /// time per route, [`crate::routes`]).
    pub fn has_routes_table(&self) -> bool {
        matches!(self, GroupBy::Route)
    }

    /// `context:KEY`'s key, whose string id each trace is searched for.
    pub fn context_key(&self) -> Option<&str> {
        match self {
            GroupBy::Context(key) => Some(key),
            GroupBy::Route => Some(ROUTE_KEY),
            _ => None,
        }
    }

    /// The key of a slice without the `context:KEY` value (empty for other keys).
    pub fn missing_key(&self) -> String {
        match self {
            GroupBy::Context(key) => format!("<no {key}>"),
            GroupBy::Route => "<no route>".to_owned(),
            _ => String::new(),
        }
    }

    /// The key of a stack: its frame or the whole stack for the keys that
    /// come from one, its innermost frame for the others (a CPU sample
    /// stands for an event by it); by identity when `by_identity` (always
    /// for `function`).
    pub fn stack_key<'f>(&self, facts: &'f StackFacts, by_identity: bool) -> &'f str {
        match (self.spec().source, by_identity) {
            (KeySource::Frame(FrameKey::Handler), _) => &facts.handler_identity,
            (KeySource::Frame(FrameKey::Function), _)
            | (KeySource::Frame(FrameKey::EntryPoint) | KeySource::Event | KeySource::Slice, true) => {
                &facts.entry_identity
            }
            (KeySource::Frame(FrameKey::AppFrame), true) => &facts.app_identity,
            (KeySource::Frame(FrameKey::AppFrame), false) => &facts.app_frame,
            (KeySource::Stack, true) => &facts.trace_identity,
            (KeySource::Stack, false) => &facts.trace,
            _ => &facts.entry_point,
        }
    }

    /// Whether the key by identity is shown otherwise (with path and line):
    /// true for the keys whose text identity changes.
    pub fn shows_identity_otherwise(&self) -> bool {
        matches!(self.spec().source, KeySource::Frame(FrameKey::EntryPoint | FrameKey::AppFrame) | KeySource::Stack)
    }

    /// The line a key's row keeps as detail: the app frame's for `app-frame`,
    /// else the innermost frame's.
    pub fn line(&self, facts: &StackFacts) -> Option<i32> {
        match self.spec().source {
            KeySource::Frame(FrameKey::AppFrame) => facts.app_line,
            KeySource::Frame(FrameKey::Handler) => facts.handler_line,
            _ => facts.entry_line,
        }
    }
}

impl FromStr for GroupBy {
    type Err = String;

    fn from_str(text: &str) -> Result<GroupBy, String> {
        if let Some(key) = NAMED.into_iter().find(|key| key.spec().name == text) {
            return Ok(key);
        }
        match text.strip_prefix("context:") {
            Some("") => Err("context: needs a key, as in context:endpoint".to_owned()),
            Some(key) => Ok(GroupBy::Context(key.to_owned())),
            None => {
                let names: Vec<&str> = NAMED.iter().map(|key| key.spec().name).collect();
                Err(format!("'{text}' is not one of {}, context:KEY", names.join(", ")))
            }
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupBy::Context(key) => write!(f, "context:{key}"),
            _ => f.write_str(self.spec().name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_parses_every_documented_form_and_shows_it_back() {
        for text in [
            "entry-point",
            "function",
            "app-frame",
            "handler",
            "event",
            "task",
            "route",
            "stack",
            "context:endpoint",
            "context:a:b",
        ] {
            assert_eq!(text.parse::<GroupBy>().unwrap().to_string(), text);
        }
        assert_eq!("context:user".parse::<GroupBy>(), Ok(GroupBy::Context("user".to_owned())));
        assert_eq!("context:".parse::<GroupBy>(), Err("context: needs a key, as in context:endpoint".to_owned()));
        assert!("entrypoint".parse::<GroupBy>().unwrap_err().starts_with("'entrypoint' is not one of"));
    }

    #[test]
    fn an_unknown_key_is_told_every_key_there_is() {
        assert_eq!(
            "entrypoint".parse::<GroupBy>(),
            Err("'entrypoint' is not one of entry-point, function, app-frame, handler, event, task, route, stack, \
                 context:KEY"
                .to_owned())
        );
    }

    #[test]
    fn every_key_has_its_column_titles() {
        let titles = |by: GroupBy| (by.title(), by.cpu_title());
        let owned = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(titles(GroupBy::EntryPoint), owned("entry point", "most sampled frame"));
        assert_eq!(titles(GroupBy::Function), owned("function", "most sampled function"));
        assert_eq!(titles(GroupBy::AppFrame), owned("app frame", "most sampled app frame"));
        assert_eq!(titles(GroupBy::Event), owned("event", "most sampled frame"));
        assert_eq!(titles(GroupBy::Task), owned("task", "task"));
        assert_eq!(titles(GroupBy::Stack), owned("stack", "most sampled stack"));
        assert_eq!(titles(GroupBy::Handler), owned("handler", "most sampled handler"));
        assert_eq!(titles(GroupBy::Route), owned("route", "route"));
        assert_eq!(titles(GroupBy::Context("endpoint".to_owned())), owned("context endpoint", "context endpoint"));
    }
}
