//! Which files the inputs name: files as given, every trace inside a
//! directory, and the files a glob matches.
//!
//! - A file is taken as given, whatever its name or content (reading it says
//!   what is wrong with it).
//! - A directory is searched recursively (symbolic links to directories are
//!   not followed), in name order, for files that start like an aiocop trace
//!   (its magic bytes), whatever their name: a forked worker's
//!   `trace.bin.1234` is found too. A directory without one is an error.
//! - An input that does not exist but holds a glob character (`*?[{`) is a
//!   pattern (quoted, so that the shell leaves it alone): the files it
//!   matches, in name order, with directories among them searched as above;
//!   a pattern that matches nothing is an error.
//!
//! A file named twice is read once.

use crate::error::AnalyzeError;
use aiocop_trace::format::MAGIC;
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, AnalyzeError> {
    let mut paths = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = traces_in(input);
            if found.is_empty() {
                return Err(AnalyzeError::NoTraceInDirectory { path: input.display().to_string() });
            }
            paths.extend(found);
        } else if fs::symlink_metadata(input).is_ok() {
            paths.push(input.clone());
        } else {
            let text = input.to_string_lossy();
            if !text.contains(['*', '?', '[', '{']) {
                return Err(AnalyzeError::Missing { path: text.into_owned() });
            }
            paths.extend(glob_matches(&text)?);
        }
    }
    let mut seen = HashSet::new();
    paths.retain(|path| seen.insert(path.clone()));
    Ok(paths)
}

fn glob_matches(pattern: &str) -> Result<Vec<PathBuf>, AnalyzeError> {
    let bad =
        |problem: String| AnalyzeError::BadPattern { what: "trace pattern", pattern: pattern.to_owned(), problem };
    let options = glob::MatchOptions { require_literal_leading_dot: true, ..glob::MatchOptions::new() };
    // `glob` has no braces; expand `{a,b}` first.
    let mut matches = Vec::new();
    for pattern in expand_braces(pattern).map_err(bad)? {
        let paths = glob::glob_with(&pattern, options).map_err(|e| bad(e.to_string()))?;
        // Unreadable entries are skipped, as a shell's glob skips them.
        matches.extend(paths.filter_map(Result::ok));
    }
    matches.sort();
    let mut files = Vec::new();
    for path in matches {
        if path.is_dir() {
            files.extend(traces_in(&path));
        } else {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(AnalyzeError::NoMatch { pattern: pattern.to_owned() });
    }
    Ok(files)
}

/// `a{b,c}d{e,f}` to `abde, abdf, acde, acdf`; no nesting.
fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err("a '}' without a '{'".to_owned());
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let Some(close) = pattern[open..].find('}').map(|at| open + at) else {
        return Err("a '{' without a '}'".to_owned());
    };
    let alternatives = &pattern[open + 1..close];
    if alternatives.contains('{') {
        return Err("nested braces".to_owned());
    }
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let mut expanded = Vec::new();
    for rest in expand_braces(tail)? {
        for alternative in alternatives.split(',') {
            expanded.push(format!("{head}{alternative}{rest}"));
        }
    }
    Ok(expanded)
}

/// Files under `dir` that start like an aiocop trace, in name order.
fn traces_in(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return found };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            found.extend(traces_in(&path));
        } else if (kind.is_file() || (kind.is_symlink() && path.is_file())) && starts_like_a_trace(&path) {
            found.push(path);
        }
    }
    found
}

/// Whether the file's first bytes are the trace magic (or all of a shorter
/// file is a prefix of it: a trace cut inside its first bytes).
fn starts_like_a_trace(path: &Path) -> bool {
    let mut head = [0u8; MAGIC.len()];
    let Ok(mut file) = fs::File::open(path) else { return false };
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    len > 0 && head[..len] == MAGIC[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_to_every_alternative() {
        assert_eq!(expand_braces("a/*.bin").unwrap(), ["a/*.bin"]);
        assert_eq!(expand_braces("{a,b}/x.{bin,aiocop}").unwrap(), ["a/x.bin", "b/x.bin", "a/x.aiocop", "b/x.aiocop"]);
        assert_eq!(expand_braces("a{b").unwrap_err(), "a '{' without a '}'");
        assert_eq!(expand_braces("a}b").unwrap_err(), "a '}' without a '{'");
        assert_eq!(expand_braces("{a,{b}}").unwrap_err(), "nested braces");
    }

    #[test]
    fn directories_globs_and_missing_paths() {
        let dir = std::env::temp_dir().join(format!("aiocop-analyze-input-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("b.bin"), b"AIOCOPTR rest").unwrap();
        fs::write(dir.join("a.trace.123"), b"AIOCOPTR").unwrap();
        fs::write(dir.join("sub/c"), b"AIOC").unwrap();
        fs::write(dir.join("notes.txt"), b"hello").unwrap();
        fs::write(dir.join("empty.bin"), b"").unwrap();
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            paths.iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect()
        };

        assert_eq!(names(expand(std::slice::from_ref(&dir)).unwrap()), ["a.trace.123", "b.bin", "sub/c"]);
        let pattern = dir.join("*.{bin,txt}");
        assert_eq!(names(expand(&[pattern]).unwrap()), ["b.bin", "empty.bin", "notes.txt"]);
        // A file named twice is read once; a file is taken whatever it holds.
        let twice = [dir.join("notes.txt"), dir.join("b.bin"), dir.join("notes.txt")];
        assert_eq!(names(expand(&twice).unwrap()), ["notes.txt", "b.bin"]);

        let missing = dir.join("nope.bin");
        assert_eq!(
            expand(std::slice::from_ref(&missing)).unwrap_err().to_string(),
            format!("'{}': no such file or directory", missing.display())
        );
        let unmatched = dir.join("*.nope");
        assert_eq!(
            expand(std::slice::from_ref(&unmatched)).unwrap_err().to_string(),
            format!("'{}': no file matches this pattern", unmatched.display())
        );
        let bad = dir.join("[");
        assert!(expand(&[bad]).unwrap_err().to_string().contains("not a valid pattern"));
        fs::create_dir_all(dir.join("none")).unwrap();
        assert_eq!(
            expand(&[dir.join("none")]).unwrap_err().to_string(),
            format!("'{}': no aiocop trace in this directory", dir.join("none").display())
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
