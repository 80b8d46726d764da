//! The allow-list in force at run time: which blocking events the program
//! accepts, named by the code that raises them (`aiocop.allow`,
//! `python -m aiocop record --allowlist`; the Python side parses and checks
//! entries in `aiocop.core.allowlist` and hands them here).
//!
//! An event is allowed by an entry when any frame of its stack has the
//! entry's identity (`module:qualname` exactly, or `pkg.*`: module `pkg` or
//! `pkg.anything`) and the entry allows its event (the Python side expands
//! the entry's globs over the event table). Allowed events are still
//! recorded, marked with their entry; only `raise_on_violations` ignores
//! them.
//!
//! Cost: with no allow-list set, one atomic load per blocking event. With
//! one, an event's stack is matched once per stack id (stacks are interned,
//! so a repeated call path costs one hash look-up), and every entry that
//! allowed an event counts it (`fired`), which tells stale entries.

use crate::stacks::{self, FrameName, StackId};
use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Frames of an event's stack matched against the entries at most,
/// whatever the recorded trace depth.
pub const MATCH_DEPTH: usize = 256;

/// The index of an entry in the list in force.
type EntryIndex = u32;

enum Identity {
    Function {
        module: String,
        qualname: String,
    },
    /// `pkg.*`, kept as `pkg`.
    Module(String),
}

impl Identity {
    fn parse(text: &str) -> Option<Identity> {
        if let Some(module) = text.strip_suffix(".*") {
            return Some(Identity::Module(module.to_owned()));
        }
        let (module, qualname) = text.split_once(':')?;
        Some(Identity::Function { module: module.to_owned(), qualname: qualname.to_owned() })
    }

    fn is_of(&self, frame: &FrameName) -> bool {
        match self {
            Identity::Function { module, qualname } => frame.module == *module && frame.qualname == *qualname,
            Identity::Module(package) => {
                frame.module.strip_prefix(package.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            }
        }
    }
}

struct Entry {
    /// As written, for the events it allows.
    text: Arc<str>,
    identity: Identity,
    /// By event index: whether the entry allows that event.
    events: Vec<bool>,
}

#[derive(Default)]
struct AllowList {
    entries: Vec<Entry>,
    fired: Vec<u64>,
    /// The entries whose identity some frame of the stack has, in list order.
    by_stack: HashMap<StackId, Vec<EntryIndex>>,
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static LIST: Mutex<Option<AllowList>> = Mutex::new(None);

/// Whether an allow-list with at least one entry is in force.
#[inline]
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Puts `entries` ((identity, allowed event indices)) in force, replacing
/// the list before (and its counts). An identity that does not parse is an
/// error naming it; the list in force is then unchanged.
pub fn set(entries: Vec<(String, Vec<u16>)>) -> Result<(), String> {
    let event_count = aiocop_trace::BLOCKING_EVENTS.len();
    let mut parsed = Vec::with_capacity(entries.len());
    for (identity, allowed) in entries {
        let text: Arc<str> = identity.as_str().into();
        let identity = Identity::parse(&identity).ok_or_else(|| format!("{identity:?} is not an identity"))?;
        let mut events = vec![false; event_count];
        for index in allowed {
            *events.get_mut(index as usize).ok_or_else(|| format!("no event with index {index}"))? = true;
        }
        parsed.push(Entry { text, identity, events });
    }
    let mut list = LIST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    ACTIVE.store(!parsed.is_empty(), Ordering::Relaxed);
    *list = Some(AllowList { fired: vec![0; parsed.len()], entries: parsed, by_stack: HashMap::default() });
    Ok(())
}

/// How many events each entry of the list in force allowed.
pub fn fired() -> Vec<u64> {
    let list = LIST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    list.as_ref().map(|list| list.fired.clone()).unwrap_or_default()
}

/// The identity of the first entry allowing event `event_index` raised
/// with `stack`, if any; every entry allowing it counts it.
pub fn allowing(stack: Option<StackId>, event_index: u16) -> Option<Arc<str>> {
    let stack = stack?;
    let known = LIST.lock().ok()?.as_ref()?.by_stack.contains_key(&stack);
    // Read without this list's lock held: the stack registry has a lock of
    // its own, and the two are never held together.
    let names = if known { Vec::new() } else { stacks::names_of(stack) };
    let mut guard = LIST.lock().ok()?;
    let AllowList { entries, fired, by_stack } = guard.as_mut()?;
    let matching = by_stack.entry(stack).or_insert_with(|| {
        (0..entries.len() as EntryIndex)
            .filter(|&entry| names.iter().any(|name| entries[entry as usize].identity.is_of(name)))
            .collect()
    });
    let mut first: Option<Arc<str>> = None;
    for &index in matching.iter() {
        let entry = &entries[index as usize];
        if entry.events.get(event_index as usize).copied().unwrap_or(false) {
            fired[index as usize] += 1;
            first = first.or_else(|| Some(entry.text.clone()));
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(module: &str, qualname: &str) -> FrameName {
        FrameName { module: module.to_owned(), qualname: qualname.to_owned() }
    }

    #[test]
    fn a_function_identity_is_exact() {
        let identity = Identity::parse("shop.views:CartView.total").unwrap();
        assert!(identity.is_of(&name("shop.views", "CartView.total")));
        assert!(!identity.is_of(&name("shop.views", "CartView.total_price")));
        assert!(!identity.is_of(&name("shop", "CartView.total")));
    }

    #[test]
    fn a_module_identity_covers_its_submodules_only() {
        let identity = Identity::parse("alembic.*").unwrap();
        assert!(identity.is_of(&name("alembic", "f")));
        assert!(identity.is_of(&name("alembic.runtime.migration", "f")));
        assert!(!identity.is_of(&name("alembicx", "f")));
        assert!(!identity.is_of(&name("my.alembic", "f")));
    }

    #[test]
    fn text_without_a_colon_or_star_is_no_identity() {
        assert!(Identity::parse("shop.views").is_none());
    }
}
