//! `--redact`: what a redacted recording keeps out of its trace, applied as
//! slices are recorded (the header's part, command lines, host and
//! `sys.path`, is reduced by the Python side before it gets here).
//!
//! An event's argument summary (a path, a host, a subprocess's arguments)
//! becomes a hash keyed with a random key made for the recording and never
//! written: equal arguments still group within one trace, but a guessed
//! value cannot be checked against it. Context values are left out but for
//! the keys the user kept.

use aiocop_trace::records::Redaction;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

static REDACTING: AtomicBool = AtomicBool::new(false);

struct Policy {
    /// SipHash with random keys: a keyed hash no one can recompute.
    key: std::collections::hash_map::RandomState,
    kept_context_keys: Vec<String>,
}

fn policy() -> &'static Mutex<Option<Policy>> {
    static POLICY: OnceLock<Mutex<Option<Policy>>> = OnceLock::new();
    POLICY.get_or_init(|| Mutex::new(None))
}

/// Applies `redaction` to the slices recorded from now on, with a new key.
pub fn start(redaction: &Redaction) {
    let new_policy = redaction.redacted.then(|| Policy {
        key: std::collections::hash_map::RandomState::new(),
        kept_context_keys: redaction.kept_context_keys.clone(),
    });
    if let Ok(mut policy) = policy().lock() {
        *policy = new_policy;
    }
    REDACTING.store(redaction.redacted, Relaxed);
}

pub fn is_redacting() -> bool {
    REDACTING.load(Relaxed)
}

/// The argument summary to record: `summary` itself, or its keyed hash
/// (`#` and 16 hex digits) when redacting.
pub fn event_args(summary: String) -> String {
    if !is_redacting() {
        return summary;
    }
    let Ok(policy) = policy().lock() else { return String::new() };
    let Some(policy) = policy.as_ref() else { return String::new() };
    format!("#{:016x}", policy.key.hash_one(&summary))
}

/// The context pairs to record: all of them, or when redacting only those
/// whose key was kept.
pub fn context(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    if !is_redacting() {
        return pairs;
    }
    let Ok(policy) = policy().lock() else { return Vec::new() };
    let kept = policy.as_ref().map_or(&[][..], |p| &p.kept_context_keys[..]);
    pairs.into_iter().filter(|(key, _)| kept.contains(key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacting_recording_hashes_arguments_and_keeps_only_the_kept_context_keys() {
        start(&Redaction { redacted: true, kept_context_keys: vec!["route".into()] });
        let hashed = event_args("/srv/secrets/hunter2.txt, r".into());
        assert!(!hashed.contains("hunter2") && hashed.starts_with('#') && hashed.len() == 17, "{hashed}");
        assert_eq!(hashed, event_args("/srv/secrets/hunter2.txt, r".into()), "equal arguments group");
        assert_ne!(hashed, event_args("/srv/other, r".into()));
        let pairs = vec![("route".to_owned(), "/login".to_owned()), ("user".to_owned(), "alice".to_owned())];
        assert_eq!(context(pairs.clone()), vec![("route".to_owned(), "/login".to_owned())]);

        start(&Redaction::default());
        assert_eq!(event_args("a, r".into()), "a, r");
        assert_eq!(context(pairs.clone()), pairs);
    }
}
