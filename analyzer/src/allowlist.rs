//! `aiocop-analyze allowlist`: an allow-list that allows what a recording
//! saw, so that a project can turn the gate on today and then remove the
//! entries one by one as it fixes the calls.
//!
//! Each blocking event with a recorded stack is attributed to the
//! *innermost app frame* of its stack (the innermost frame that is not
//! library code, or under `--app-root`; else the innermost third-party
//! frame; else the innermost frame), and that frame's identity,
//! `module:qualname` (`__name__` of its globals and `co_qualname`, format
//! 1.1), is one entry, allowing the event names seen there. The identity is
//! the one `aiocop.core.allowlist` matches: an event is allowed when any
//! frame of its stack has it, so the entry allows the same events again.
//!
//! What cannot be allowed by identity is said, never dropped silently:
//! events without a recorded stack (past the 50 kept in a slice), frames
//! without a module name (format 1.0 traces) and qualnames the allow-list
//! cannot name (`<generic parameters of ...>`) are counted in the output's
//! header comment.

use crate::error::AnalyzeError;
use crate::paths::{is_app_path, is_third_party_path};
use aiocop_trace::records::FrameId;
use aiocop_trace::{Dictionary, TraceFile};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the recordings say an allow-list needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// By identity: how many events of each name were attributed to it.
    pub by_identity: BTreeMap<String, BTreeMap<String, u64>>,
    /// Blocking events read, and of those, the ones no entry could be made for.
    pub events: u64,
    pub without_stack: u64,
    pub without_identity: u64,
    pub traces: u64,
    /// Identities chosen for stacks with no frame of the app (a library's or
    /// the standard library's innermost frame): broader than an app frame.
    pub not_app: std::collections::BTreeSet<String>,
}

/// Reads every blocking event of `paths` (a chunk that cannot be read is
/// reported through `warn` and skipped).
pub fn seen_in(paths: &[PathBuf], app_roots: &[String], warn: &dyn Fn(&str)) -> Result<Seen, AnalyzeError> {
    let mut seen = Seen::default();
    for path in paths {
        let trace = TraceFile::open(path)?;
        seen.traces += 1;
        if trace.format_version() < (1, 1) {
            warn(&format!(
                "'{}' is trace format 1.0: its frames have no module and qualname, so its events cannot be allowed by identity",
                trace.path()
            ));
        }
        add_trace(&mut seen, &trace, app_roots, warn);
    }
    Ok(seen)
}

fn add_trace(seen: &mut Seen, trace: &TraceFile, app_roots: &[String], warn: &dyn Fn(&str)) {
    let events = &trace.header().event_table;
    let mut dictionary = Dictionary::new();
    for (index, chunk) in trace.chunks().enumerate() {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                warn(&format!("'{}': chunk {index} skipped: {error}", trace.path()));
                continue;
            }
        };
        dictionary.add(&chunk);
        for slice in &chunk.slices {
            seen.events += u64::from(slice.dropped_events);
            seen.without_stack += u64::from(slice.dropped_events);
            for event in &slice.events {
                seen.events += 1;
                let name = events.get(event.event as usize).map_or("?", |spec| spec.name.as_str());
                match dictionary.stack(event.stack) {
                    None => seen.without_stack += 1,
                    Some(frames) => match app_identity(&dictionary, frames, app_roots) {
                        None => seen.without_identity += 1,
                        Some((identity, is_app)) => {
                            if !is_app {
                                seen.not_app.insert(identity.clone());
                            }
                            *seen.by_identity.entry(identity).or_default().entry(name.to_owned()).or_default() += 1;
                        }
                    },
                }
            }
        }
    }
}

/// The identity of the stack's innermost app frame (see the module doc),
/// among the frames the allow-list can name, and whether it is the app's.
fn app_identity(dictionary: &Dictionary, frames: &[FrameId], app_roots: &[String]) -> Option<(String, bool)> {
    let named: Vec<(String, &str)> = frames
        .iter()
        .filter_map(|&frame| {
            let (module, qualname) = dictionary.frame_name(frame)?;
            let path = dictionary.frame(frame).and_then(|f| dictionary.string(f.file))?;
            is_nameable(module, qualname).then(|| (format!("{module}:{qualname}"), path))
        })
        .collect();
    if let Some((identity, _)) = named.iter().find(|(_, path)| is_app_path(path, app_roots)) {
        return Some((identity.clone(), true));
    }
    let third_party = named.iter().find(|(_, path)| is_third_party_path(path));
    third_party.or(named.first()).map(|(identity, _)| (identity.clone(), false))
}

/// Whether `module:qualname` is an identity the allow-list parser reads:
/// dotted names, the qualname's parts names or the compiler's `<name>`.
fn is_nameable(module: &str, qualname: &str) -> bool {
    let is_name = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let is_qualname_part =
        |part: &str| is_name(part) || part.strip_prefix('<').and_then(|p| p.strip_suffix('>')).is_some_and(is_name);
    module.split('.').all(is_name) && qualname.split('.').all(is_qualname_part)
}

/// The `[tool.aiocop]` block: one entry per identity, most events first,
/// each with its counts as a comment.
pub fn render(seen: &Seen) -> String {
    let mut entries: Vec<(&String, &BTreeMap<String, u64>)> = seen.by_identity.iter().collect();
    entries.sort_by_key(|(identity, names)| (std::cmp::Reverse(names.values().sum::<u64>()), identity.as_str()));
    let mut out = String::new();
    out.push_str(&format!(
        "# Made by aiocop-analyze allowlist from {}: {} blocking {} in {} {}.\n",
        plural(seen.traces, "trace", "traces"),
        seen.events,
        if seen.events == 1 { "event" } else { "events" },
        entries.len(),
        if entries.len() == 1 { "function" } else { "functions" },
    ));
    let uncovered = seen.without_stack + seen.without_identity;
    if uncovered > 0 {
        out.push_str(&format!(
            "# Not covered: {} without a recorded stack (past the 50 kept in a slice), {} with no frame the allow-list can name.\n",
            seen.without_stack, seen.without_identity
        ));
    }
    out.push_str("# Paste into pyproject.toml (in aiocop.toml, leave out the [tool.aiocop] line); remove an entry once its calls are fixed.\n");
    out.push_str("[tool.aiocop]\nallow = [\n");
    for (identity, names) in entries {
        let total: u64 = names.values().sum();
        let counts: Vec<String> = names.iter().map(|(name, n)| format!("{name} {n}")).collect();
        let events: Vec<String> = names.keys().map(|name| toml_string(name)).collect();
        let not_app = if seen.not_app.contains(identity) {
            "; no frame of your code in its recorded stacks: named by the library's frame"
        } else {
            ""
        };
        out.push_str(&format!("  # {}: {}{not_app}\n", plural(total, "event", "events"), counts.join(", ")));
        out.push_str(&format!("  {{ id = {}, events = [{}] }},\n", toml_string(identity), events.join(", ")));
    }
    out.push_str("]\n");
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A TOML basic string: JSON's escapes are TOML's.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"?\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameable_identities_are_those_the_parser_reads() {
        assert!(is_nameable("shop.views", "CartView.total"));
        assert!(is_nameable("__main__", "main.<locals>.<lambda>"));
        assert!(!is_nameable("", "f"));
        assert!(!is_nameable("m", "<generic parameters of Box>"));
        assert!(!is_nameable("my-module", "f"));
    }

    #[test]
    fn entries_come_most_events_first_with_their_counts() {
        let mut seen = Seen { events: 4, traces: 1, ..Seen::default() };
        seen.by_identity.insert("a:f".to_owned(), BTreeMap::from([("open".to_owned(), 1)]));
        seen.by_identity
            .insert("b:g".to_owned(), BTreeMap::from([("open".to_owned(), 1), ("time.sleep".to_owned(), 2)]));
        let text = render(&seen);
        let b = text.find("id = \"b:g\", events = [\"open\", \"time.sleep\"]").unwrap();
        let a = text.find("id = \"a:f\", events = [\"open\"]").unwrap();
        assert!(b < a, "{text}");
        assert!(text.contains("  # 3 events: open 1, time.sleep 2\n"), "{text}");
        assert!(text.contains("# Made by aiocop-analyze allowlist from 1 trace: 4 blocking events in 2 functions."));
    }
}
