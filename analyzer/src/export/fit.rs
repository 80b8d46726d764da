//! Fitting the table report to a terminal's width.
//!
//! On a terminal the tables show fewer columns (`--wide`: all of them) and
//! are laid out here, before comfy-table draws them: every column gets a
//! width, and every cell is made to fit it without breaking a word. Numbers
//! keep their whole width; lists of words (top events) wrap between words;
//! keys are shortened from the left, a path component at a time, so that
//! the file, line and function stay (`…/views.py:30:resolve`), and a stack
//! key is one frame a line. Prose lines wrap between words. Paths are shown
//! relative to the current directory or an `--app-root`.
//!
//! A pipe or a file gets none of this: the full table, as scripts read it.

use crate::diff::Diff;
use crate::report::Report;
use aiocop_trace::frame::TRACE_SEPARATOR;
use unicode_width::UnicodeWidthChar;

/// A key column is not shortened below this many columns while others can give way.
pub(crate) const KEY_MIN_WIDTH: usize = 20;
/// Below this, a key or list column gives no more way, even if the table then overflows.
const LAST_RESORT_WIDTH: usize = 12;
/// A list of words gets up to this many columns before a key gets more than its minimum.
const WORDS_TARGET_WIDTH: usize = 20;
/// What separates the items of a [`Fit::Words`] cell.
const LIST_SEPARATOR: &str = ", ";
/// What a table's borders take: one column on the left, and for each
/// column its two spaces of padding and the rule on its right.
fn border_width(columns: usize) -> usize {
    1 + 3 * columns
}

/// The columns `text` takes on a terminal (ANSI escapes take none).
pub(crate) fn width_of(text: &str) -> usize {
    console::measure_text_width(text)
}

/// `text` shortened from the left to at most `width` columns, keeping its
/// end: by whole path components where one fits (`…/views.py:30:resolve`),
/// else by characters (`…ews.py:30:resolve`): for prose, where a key is a
/// word among others; a key column uses [`fit_key`], which cuts nothing.
pub(crate) fn shorten_left(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_owned();
    }
    tail_that_fits(text, width).unwrap_or_else(|| shorten_chars(text, width))
}

/// A key shortened to `width` columns, as lines ([`fit_key`]); for a stack
/// key (`a <- b <- c`, innermost first) its innermost frame, followed by ` <- …`.
pub(crate) fn shorten_key(key: &str, width: usize) -> Vec<String> {
    match key.split_once(TRACE_SEPARATOR) {
        Some((innermost, _)) if width_of(key) > width => {
            let more = format!("{TRACE_SEPARATOR}…");
            let mut lines = fit_key(innermost, width.saturating_sub(width_of(&more)));
            if let Some(last) = lines.last_mut() {
                last.push_str(&more);
            }
            lines
        }
        _ => fit_key(key, width),
    }
}

/// The pieces a key may be wrapped between: after a `/` or a `:`, before a
/// space, after a `.` of a qualname or a module (`(import uvicorn.protocols.http.auto)`),
/// never before a file's extension. No piece is ever cut.
fn key_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_note = false;
    for (at, c) in text.char_indices() {
        let end = match c {
            '/' | ':' => at + 1,
            // A qualname's dots (`BaseSelectorEventLoop.` `_accept_connection`), never a file's extension.
            '.' if in_note || !is_extension(&text[at + 1..]) => at + 1,
            ' ' => {
                in_note = true;
                at
            }
            _ => continue,
        };
        if end > start {
            pieces.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Whether the text after a `.` is a file's extension (`py:30:f`, `pyx`).
fn is_extension(rest: &str) -> bool {
    let name_end = rest.find([':', ' ', '/']).unwrap_or(rest.len());
    let extension = &rest[..name_end];
    !extension.is_empty() && extension.len() <= 4 && extension.chars().all(|c| c.is_ascii_lowercase())
}

/// `pieces` wrapped greedily into lines of at most `width` columns; a piece
/// wider than a line gets a line of its own (only when the column is
/// narrower than [`key_min_width`]: it is then shortened from the left).
fn wrap_pieces<S: AsRef<str>>(pieces: &[S], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for piece in pieces.iter().map(AsRef::as_ref) {
        if !line.is_empty() && width_of(&line) + width_of(piece.trim_end()) > width {
            lines.push(std::mem::take(&mut line));
        }
        line.push_str(if line.is_empty() { piece.trim_start() } else { piece });
    }
    lines.push(line);
    lines.into_iter().map(|line| shorten_chars(line.trim_end(), width)).collect()
}

/// The pieces of a key's last path component (`views.py:30:resolve`), the
/// first with `…/` before it when components were left out.
fn last_component_pieces(key: &str) -> Vec<String> {
    let (dropped, last) = match key.rfind('/') {
        Some(slash) => (true, &key[slash + 1..]),
        None => (false, key),
    };
    let mut pieces: Vec<String> = key_pieces(last).into_iter().map(str::to_owned).collect();
    if let (true, Some(first)) = (dropped, pieces.first_mut()) {
        first.insert_str(0, "…/");
    }
    pieces
}

/// A frame key in a column `width` wide, as lines: whole if it fits; else
/// shortened from the left by whole path components (`…/views.py:30:resolve`);
/// else its last component over several lines, wrapped between pieces
/// ([`key_pieces`]), so that no file, function or module name is ever cut
/// and a lazy import's module is shown whole (two imports never look the same).
pub(crate) fn fit_key(key: &str, width: usize) -> Vec<String> {
    if width_of(key) <= width {
        return vec![key.to_owned()];
    }
    match tail_that_fits(key, width) {
        Some(tail) => vec![tail],
        None => wrap_pieces(&last_component_pieces(key), width),
    }
}

/// `…` and the longest tail of `text` that starts at a `/` and fits in `width`.
fn tail_that_fits(text: &str, width: usize) -> Option<String> {
    let mut tails = text.match_indices('/').map(|(at, _)| &text[at..]);
    tails.find(|tail| width_of(tail) < width).map(|tail| format!("…{tail}"))
}

/// A key wrapped whole over lines `width` wide, no character left out: what
/// keys that would look the same shortened are shown as.
fn wrap_whole(key: &str, width: usize) -> Vec<String> {
    wrap_pieces(&key_pieces(key), width)
}

/// The narrowest column [`fit_key`] can show `key` in without cutting a
/// piece of its last component.
fn key_min_width(key: &str) -> usize {
    key.split(TRACE_SEPARATOR).flat_map(last_component_pieces).map(|piece| width_of(piece.trim())).max().unwrap_or(0)
}

/// `text` shortened from the left by characters (the last resort).
fn shorten_chars(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut kept = Vec::new();
    let mut kept_width = 0;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if kept_width + w > width - 1 {
            break;
        }
        kept_width += w;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// `text` wrapped into lines of at most `width` columns between the items
/// `separator` ends (`" "`: words; `", "`: a list); an item wider than a
/// line is shortened from the left, never split.
pub(crate) fn wrap_items(text: &str, width: usize, separator: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let items: Vec<&str> = text.split_inclusive(separator).filter(|w| !w.trim().is_empty()).collect();
    for item in items {
        // A line ends with its last item's separator trimmed away.
        let fits = |line: &str, item: &str| width_of(line) + width_of(item.trim_end()) <= width;
        if !line.is_empty() && !fits(&line, item) {
            lines.push(line.trim_end().to_owned());
            line.clear();
        }
        if line.is_empty() && width_of(item.trim_end()) > width {
            line.push_str(&shorten_left(item.trim_end(), width));
            line.push(' ');
            continue;
        }
        line.push_str(item);
    }
    lines.push(line.trim_end().to_owned());
    lines
}

/// [`wrap_items`] between words.
pub(crate) fn wrap_words(text: &str, width: usize) -> Vec<String> {
    wrap_items(text, width, " ")
}

/// Prose for a terminal `width` wide: each line wrapped between words (a
/// line's leading spaces stay on its first line).
pub(crate) fn wrap_text(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
        if width_of(body) <= width {
            out.push_str(body);
        } else {
            let indent = body.len() - body.trim_start().len();
            let wrapped = wrap_words(body.trim_start(), width.saturating_sub(indent).max(1));
            out.push_str(&body[..indent]);
            out.push_str(&wrapped.join(&format!("\n{}", &body[..indent])));
        }
        out.push_str(newline);
    }
    out
}

/// How a column gives way on a narrow terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Numbers and short words: always shown whole.
    Fixed,
    /// A list, items separated by `, `: wrapped between them.
    Words,
    /// Keys: shortened from the left, one line each.
    Key,
    /// A diff's values (`12.177 → 30.473 (+150%)`): whole where there is
    /// room, else wrapped between words, an arrow kept with the number before it.
    Phrase,
}

/// A [`Fit::Phrase`]'s words: split at spaces, an arrow kept with the word
/// before it (`12.177 →`, `30.473`, `(+150%)`).
fn phrase_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        match words.last_mut() {
            Some(last) if word == "→" => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
    }
    words
}

/// A [`Fit::Phrase`] in lines of at most `width` columns, between its words
/// (a word wider than `width` stays whole on its own line).
fn wrap_phrase(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in phrase_words(text) {
        match lines.last_mut() {
            Some(line) if width_of(line) + 1 + width_of(&word) <= width => {
                line.push(' ');
                line.push_str(&word);
            }
            _ => lines.push(word),
        }
    }
    lines
}

/// The narrowest a [`Fit::Phrase`] can be: its widest word.
fn phrase_min_width(text: &str) -> usize {
    phrase_words(text).iter().map(|w| width_of(w)).max().unwrap_or(0)
}

/// What a [`Fit::Phrase`] takes on two lines, its last word (the change,
/// `(+150%)`) on the second: `12.177 → 30.473`.
fn phrase_two_line_width(text: &str) -> usize {
    let words = phrase_words(text);
    let Some((last, before)) = words.split_last() else { return 0 };
    width_of(&before.join(" ")).max(width_of(last))
}

/// A cell's text: as a pipe gets it, and for a [`Fit::Key`] column, its
/// lines as `(key, suffix)`, the key shortened to make the line fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Text {
    pub full: String,
    pub keys: Vec<(String, String)>,
}

impl Text {
    pub fn plain(text: impl Into<String>) -> Text {
        Text { full: text.into(), keys: Vec::new() }
    }

    /// A key; a stack key (`a <- b <- c`) is shown one frame a line.
    pub fn key(key: &str) -> Text {
        let mut frames: Vec<&str> = key.split(TRACE_SEPARATOR).collect();
        let last = frames.len() - 1;
        let keys = frames
            .drain(..)
            .enumerate()
            .map(|(i, frame)| (frame.to_owned(), if i < last { " <-".to_owned() } else { String::new() }))
            .collect();
        Text { full: key.to_owned(), keys }
    }

    /// Keys each followed by a value, one a line on a terminal, joined with `, ` in full.
    pub fn keyed_values(pairs: Vec<(String, String)>) -> Text {
        let full = pairs.iter().map(|(k, v)| format!("{k}{v}")).collect::<Vec<_>>().join(", ");
        Text { full, keys: pairs }
    }

    fn key_width(&self) -> usize {
        self.keys.iter().map(|(k, s)| width_of(k) + width_of(s)).max().unwrap_or(0)
    }

    /// The text laid out in a column `width` wide.
    fn laid_out(&self, fit: Fit, width: usize) -> String {
        match fit {
            Fit::Fixed => self.full.clone(),
            Fit::Words => wrap_items(&self.full, width, LIST_SEPARATOR).join("\n"),
            Fit::Key => self.key_lines(width, shorten_key).join("\n"),
            Fit::Phrase => wrap_phrase(&self.full, width).join("\n"),
        }
    }

    /// A key cell's lines, each key laid out by `fit` in what its suffix leaves.
    fn key_lines(&self, width: usize, fit: fn(&str, usize) -> Vec<String>) -> Vec<String> {
        let single = [(self.full.clone(), String::new())];
        let keys = if self.keys.is_empty() { &single[..] } else { &self.keys[..] };
        keys.iter()
            .flat_map(|(key, suffix)| {
                let mut lines = fit(key, width.saturating_sub(width_of(suffix)));
                if let Some(last) = lines.last_mut() {
                    last.push_str(suffix);
                }
                lines
            })
            .collect()
    }

    /// The narrowest a [`Fit::Key`] cell can be without cutting a name.
    fn key_min_width(&self) -> usize {
        let suffixed = |key: &str, suffix: &str| key_min_width(key) + width_of(suffix);
        if self.keys.is_empty() {
            return suffixed(&self.full, "");
        }
        self.keys.iter().map(|(key, suffix)| suffixed(key, suffix)).max().unwrap_or(0)
    }
}

/// The widths of a table's columns on a terminal `width` wide, and its
/// titles and cells laid out in them.
pub(crate) fn lay_out(
    width: usize,
    titles: &[String],
    fits: &[Fit],
    rows: &[Vec<Text>],
) -> (Vec<String>, Vec<Vec<String>>) {
    let longest_word = |text: &str| text.split(' ').map(width_of).max().unwrap_or(0);
    let longest_item = |text: &str| text.split(LIST_SEPARATOR).map(width_of).max().unwrap_or(0);
    let content = |column: usize| -> usize {
        rows.iter()
            .map(|row| match fits[column] {
                Fit::Key if !row[column].keys.is_empty() => row[column].key_width(),
                _ => row[column].full.lines().map(width_of).max().unwrap_or(0),
            })
            .max()
            .unwrap_or(0)
    };
    let contents: Vec<usize> = (0..titles.len()).map(content).collect();
    // What a key column needs for every line's last path component (`…/views.py:30:f`).
    let tails: Vec<usize> = (0..titles.len())
        .map(|c| {
            let tail = |key: &str, suffix: &str| {
                let last = key.rfind('/').map_or(key, |at| &key[at..]);
                width_of(last) + usize::from(last.len() < key.len()) + width_of(suffix)
            };
            rows.iter()
                .flat_map(|row| match fits[c] {
                    Fit::Key if !row[c].keys.is_empty() => row[c].keys.iter().map(|(k, s)| tail(k, s)).max(),
                    Fit::Key => Some(tail(&row[c].full, "")),
                    _ => None,
                })
                .max()
                .unwrap_or(0)
        })
        .collect();
    // What a key column needs so that no name in it is cut.
    let key_mins: Vec<usize> = (0..titles.len())
        .map(|c| match fits[c] {
            Fit::Key => rows.iter().map(|row| row[c].key_min_width()).max().unwrap_or(0),
            _ => 0,
        })
        .collect();
    // Titles wider than their column's numbers give way (a word a line) when
    // keys need the room where that gains a few columns (`duration ms` over
    // `200.125`, not `start s` over `3.250`); when the table is still too
    // wide, wherever it gains any.
    let title_width = |column: usize, wrap: usize| {
        let (title, content) = (width_of(&titles[column]), contents[column]);
        let gain = [usize::MAX, 3, 0][wrap];
        if title > content.saturating_add(gain) {
            longest_word(&titles[column]).max(content.min(title))
        } else {
            title
        }
    };
    let distribute = |wrap_titles: usize| -> Vec<usize> {
        let mut widths: Vec<usize> = (0..titles.len())
            .map(|c| match fits[c] {
                Fit::Fixed => contents[c].max(title_width(c, wrap_titles)),
                Fit::Words => {
                    rows.iter().map(|row| longest_item(&row[c].full)).max().unwrap_or(0).max(longest_word(&titles[c]))
                }
                Fit::Key => KEY_MIN_WIDTH.min(contents[c]).max(longest_word(&titles[c])).max(key_mins[c]),
                // Its title gives way as a number column's does; its values to their words.
                Fit::Phrase => {
                    rows.iter().map(|row| phrase_min_width(&row[c].full)).max().unwrap_or(0).max(match wrap_titles {
                        2 => longest_word(&titles[c]),
                        _ => title_width(c, wrap_titles).min(contents[c].max(longest_word(&titles[c]))),
                    })
                }
            })
            .collect();
        let preferred = |c: usize| contents[c].max(width_of(&titles[c]));
        let used: usize = widths.iter().sum::<usize>() + border_width(titles.len());
        let mut spare = width.saturating_sub(used);
        let mut grow = |widths: &mut Vec<usize>, fit: Fit, target: &dyn Fn(usize) -> usize| {
            for c in (0..titles.len()).filter(|&c| fits[c] == fit) {
                let more = target(c).saturating_sub(widths[c]).min(spare);
                widths[c] += more;
                spare -= more;
            }
        };
        // Keys first get room for their file, line and function, then lists
        // room for a few items, a diff's values room for two lines (`12.177 →
        // 30.473` over `(+150%)`), then keys the rest, then values to be whole.
        let two_lines = |c: usize| rows.iter().map(|row| phrase_two_line_width(&row[c].full)).max().unwrap_or(0);
        grow(&mut widths, Fit::Key, &|c| preferred(c).min(tails[c]));
        grow(&mut widths, Fit::Words, &|c| preferred(c).min(WORDS_TARGET_WIDTH));
        grow(&mut widths, Fit::Phrase, &two_lines);
        grow(&mut widths, Fit::Key, &preferred);
        grow(&mut widths, Fit::Phrase, &preferred);
        grow(&mut widths, Fit::Words, &preferred);
        widths
    };
    let keys_short = |widths: &[usize]| (0..titles.len()).any(|c| fits[c] == Fit::Key && widths[c] < contents[c]);
    let overflows = |widths: &[usize]| widths.iter().sum::<usize>() + border_width(titles.len()) > width;
    let mut widths = distribute(0);
    if keys_short(&widths) {
        widths = distribute(1);
    }
    if overflows(&widths) {
        widths = distribute(2);
    }
    // Still too wide (a name wider than the room left, or a narrow terminal):
    // the table fits the terminal first, its widest key and list columns
    // giving way down to LAST_RESORT_WIDTH, their names cut from the left.
    let mut excess = (widths.iter().sum::<usize>() + border_width(titles.len())).saturating_sub(width);
    while excess > 0 {
        let gives_way = |c: &usize| matches!(fits[*c], Fit::Words | Fit::Key) && widths[*c] > LAST_RESORT_WIDTH;
        let Some(c) = (0..titles.len()).filter(gives_way).max_by_key(|&c| widths[c]) else { break };
        widths[c] -= 1;
        excess -= 1;
    }
    let titles = titles.iter().zip(&widths).map(|(title, &w)| wrap_words(title, w).join("\n")).collect();
    let mut cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().zip(fits).zip(&widths).map(|((text, &fit), &w)| text.laid_out(fit, w)).collect())
        .collect();
    for c in (0..widths.len()).filter(|&c| fits[c] == Fit::Key) {
        tell_apart(rows, &mut cells, c, widths[c]);
    }
    (titles, cells)
}

/// Keys of column `c` that were shortened to the same text although they
/// differ (`…/views.py:30:f` for two packages' `views.py`) are shown whole
/// instead, wrapped over lines between pieces: two groups never look the same.
fn tell_apart(rows: &[Vec<Text>], cells: &mut [Vec<String>], c: usize, width: usize) {
    let mut fulls_by_shown: std::collections::HashMap<&str, std::collections::HashSet<&str>> = Default::default();
    for (row, cell) in rows.iter().zip(cells.iter()) {
        fulls_by_shown.entry(cell[c].as_str()).or_default().insert(row[c].full.as_str());
    }
    let alike: std::collections::HashSet<String> =
        fulls_by_shown.into_iter().filter(|(_, fulls)| fulls.len() > 1).map(|(shown, _)| shown.to_owned()).collect();
    for (row, cell) in rows.iter().zip(cells.iter_mut()) {
        if alike.contains(&cell[c]) {
            cell[c] = row[c].key_lines(width, wrap_whole).join("\n");
        }
    }
}

/// `text` with every path under one of `roots` made relative to it (the
/// longest root first): a root followed by `/` at the start of the text or
/// after a space, `(`, `'`, `"`, `,` or `=`.
pub(crate) fn relative_to(text: &str, roots: &[String]) -> String {
    let mut out = text.to_owned();
    for root in roots {
        let prefix = format!("{}/", root.trim_end_matches('/'));
        if prefix == "/" || !out.contains(&prefix) {
            continue;
        }
        let mut rebuilt = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&prefix) {
            let boundary = rebuilt.len() + at == 0
                || rest[..at]
                    .chars()
                    .next_back()
                    .or_else(|| rebuilt.chars().next_back())
                    .is_some_and(|c| matches!(c, ' ' | '(' | '\'' | '"' | ',' | '='));
            rebuilt.push_str(&rest[..at]);
            if !boundary {
                rebuilt.push_str(&prefix);
            }
            rest = &rest[at + prefix.len()..];
        }
        rebuilt.push_str(rest);
        out = rebuilt;
    }
    out
}

/// The roots paths are shown relative to: the `--app-root`s, then the
/// current directory; the longest first.
pub(crate) fn roots(app_roots: &[String]) -> Vec<String> {
    let mut roots: Vec<String> = app_roots.iter().filter(|r| r.starts_with('/')).cloned().collect();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd.display().to_string());
    }
    roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
    roots.dedup();
    roots
}

/// The report's keys, stacks, event arguments and trace paths made relative to `roots`.
pub(crate) fn relative_report(report: &mut Report, roots: &[String]) {
    let fix = |text: &mut String| *text = relative_to(text, roots);
    for row in &mut report.loop_time.groups {
        fix(&mut row.key);
        row.example_trace.iter_mut().for_each(fix);
    }
    for stall in &mut report.stalls {
        fix(&mut stall.trace);
        stall.top.iter_mut().for_each(|t| fix(&mut t.key));
    }
    for row in &mut report.groups {
        fix(&mut row.key);
        fix(&mut row.example_trace);
        fix(&mut row.example_event);
    }
    for row in &mut report.cpu_groups {
        fix(&mut row.key);
        fix(&mut row.example_trace);
    }
    report.traces.iter_mut().for_each(|t| fix(&mut t.path));
}

/// The diff's keys and trace paths made relative to `roots`.
pub(crate) fn relative_diff(diff: &mut Diff, roots: &[String]) {
    for row in &mut diff.rows {
        row.key = relative_to(&row.key, roots);
    }
    for side in [&mut diff.base, &mut diff.new] {
        side.traces.iter_mut().for_each(|t| t.path = relative_to(&t.path, roots));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shortened_from_the_left_by_whole_components() {
        let key = "/srv/app/shop/views.py:30:resolve";
        assert_eq!(shorten_left(key, 40), key);
        assert_eq!(shorten_left(key, 28), "…/shop/views.py:30:resolve");
        assert_eq!(shorten_left(key, 22), "…/views.py:30:resolve");
        // No component fits: characters go, the line and function stay.
        assert_eq!(shorten_left(key, 15), "….py:30:resolve");
        assert_eq!(width_of(&shorten_left(key, 15)), 15);
        assert_eq!(shorten_left(key, 1), "…");
        assert_eq!(shorten_left(key, 0), "");
    }

    #[test]
    fn a_lazy_imports_key_keeps_its_frame_and_its_whole_module_over_lines() {
        let key = "uvicorn/importer.py:19:import_from_string (import uvicorn.protocols.http.auto)";
        assert_eq!(fit_key(key, 90), [key]);
        assert_eq!(fit_key(key, 75), ["…/importer.py:19:import_from_string (import uvicorn.protocols.http.auto)"]);
        // The module is wrapped after a dot, never cut.
        assert_eq!(fit_key(key, 56), ["…/importer.py:19:import_from_string (import uvicorn.", "protocols.http.auto)"]);
        assert_eq!(
            fit_key(key, 30),
            ["…/importer.py:19:", "import_from_string (import", "uvicorn.protocols.http.auto)"]
        );
        // The http and websockets imports never print the same.
        let other = key.replace("http", "websockets");
        for width in [20, 30, 40, 53, 60, 75] {
            assert_ne!(fit_key(key, width), fit_key(&other, width), "{width}");
            assert!(fit_key(key, width).iter().all(|line| width_of(line) <= width), "{width}");
        }
    }

    #[test]
    fn a_file_name_too_wide_for_the_column_is_wrapped_after_a_colon_never_cut() {
        let key = "/usr/lib/python3.11/asyncio/base_events.py:307:create_unix_server";
        assert_eq!(fit_key(key, 40), ["…/base_events.py:307:create_unix_server"]);
        assert_eq!(fit_key(key, 30), ["…/base_events.py:307:", "create_unix_server"]);
        assert_eq!(key_min_width(key), "create_unix_server".len());
        // At its minimum width nothing is cut; below it (never laid out so) characters go.
        assert_eq!(fit_key(key, 18), ["…/base_events.py:", "307:", "create_unix_server"]);
        // A qualname wraps after a dot; a file's extension stays with its name.
        assert_eq!(
            fit_key("_SelectorSocketTransport._call_connection_lost", 30),
            ["_SelectorSocketTransport.", "_call_connection_lost"]
        );
        assert_eq!(fit_key("a/selector_events.py:1057:write", 24), ["…/selector_events.py:", "1057:write"]);
    }

    #[test]
    fn keys_that_would_look_the_same_shortened_are_shown_whole() {
        let titles = vec!["key".to_owned()];
        let rows = vec![
            vec![Text::key("/srv/app/shop/views.py:30:resolve")],
            vec![Text::key("/srv/app/cart/views.py:30:resolve")],
            vec![Text::key("/srv/app/main.py:9:main_entry_point_of_it")],
        ];
        // A column of 22 (its widest piece) and its borders.
        let (_, cells) = lay_out(26, &titles, &[Fit::Key], &rows);
        assert_eq!(cells[0][0], "/srv/app/shop/\nviews.py:30:resolve");
        assert_eq!(cells[1][0], "/srv/app/cart/\nviews.py:30:resolve");
        assert_eq!(cells[2][0], "…/main.py:9:\nmain_entry_point_of_it");
    }

    #[test]
    fn a_stack_key_keeps_its_innermost_frame() {
        let stack = "/srv/app/shop/views.py:30:resolve <- /srv/app/main.py:9:main";
        assert_eq!(shorten_key(stack, 100), [stack]);
        assert_eq!(shorten_key(stack, 40), ["/srv/app/shop/views.py:30:resolve <- …"]);
        assert_eq!(shorten_key(stack, 27), ["…/views.py:30:resolve <- …"]);
        assert_eq!(shorten_key(stack, 20), ["…/views.py:30:", "resolve <- …"]);
        assert_eq!(shorten_key("/srv/app/shop/views.py:30:resolve", 22), ["…/views.py:30:resolve"]);
    }

    #[test]
    fn words_wrap_between_words_and_long_words_are_shortened_not_split() {
        assert_eq!(wrap_items("open ×2, os.stat ×1, …", 12, ", "), ["open ×2,", "os.stat ×1,", "…"]);
        assert_eq!(wrap_items("open ×2, os.stat ×1, …", 20, ", "), ["open ×2, os.stat ×1,", "…"]);
        assert_eq!(wrap_words("one two three", 8), ["one two", "three"]);
        assert_eq!(wrap_words("a /very/long/path.py:1:f b", 14), ["a", "…/path.py:1:f", "b"]);
        assert_eq!(wrap_words("", 5), [""]);
        assert_eq!(
            wrap_text("  Loop time: 9.600 s busy of 12.500 s\nshort\n", 16),
            "  Loop time:\n  9.600 s busy\n  of 12.500 s\nshort\n"
        );
    }

    #[test]
    fn paths_become_relative_at_word_boundaries_only() {
        let roots = vec!["/srv/app/shop".to_owned(), "/srv/app".to_owned()];
        assert_eq!(relative_to("/srv/app/shop/views.py:30:resolve", &roots), "views.py:30:resolve");
        assert_eq!(
            relative_to("open(/srv/app/cfg.toml, r) <- /srv/app/main.py:1:main", &roots),
            "open(cfg.toml, r) <- main.py:1:main"
        );
        assert_eq!(relative_to("/x/srv/app/a.py:1:f", &roots), "/x/srv/app/a.py:1:f");
        assert_eq!(relative_to("/srv/application.py:1:f", &roots), "/srv/application.py:1:f");
        assert_eq!(relative_to("/srv/app/a.py", &["/".to_owned()]), "/srv/app/a.py");
    }

    #[test]
    fn a_layout_fits_the_width_shortening_keys_and_wrapping_lists() {
        let titles: Vec<String> = ["#", "entry point", "score", "top events"].map(String::from).to_vec();
        let fits = [Fit::Fixed, Fit::Key, Fit::Fixed, Fit::Words];
        let rows = vec![vec![
            Text::plain("1"),
            Text::key("/srv/app/shop/views.py:30:resolve <- /srv/app/main.py:9:main"),
            Text::plain("150"),
            Text::plain("open ×2, os.stat ×1, os.listdir ×1, …"),
        ]];
        // The columns' minimums (1, 20, 5, 13) and the borders (13) take 52: the
        // list gets up to 20, then the key the rest.
        let (titles, cells) = lay_out(65, &titles, &fits, &rows);
        assert_eq!(titles, ["#", "entry point", "score", "top events"]);
        assert_eq!(cells[0][1], "…/views.py:30:resolve <-\n/srv/app/main.py:9:main");
        assert_eq!(cells[0][3], "open ×2, os.stat ×1,\nos.listdir ×1, …");
        // Alone, the key fits whole in 50 columns; in 30 its lines are cut to 22 columns.
        let (_, cells) = lay_out(50, &["#".to_owned(), "key".to_owned()], &fits[..2], &[rows[0][..2].to_vec()]);
        assert_eq!(cells[0][1], "/srv/app/shop/views.py:30:resolve <-\n/srv/app/main.py:9:main");
        let (_, cells) = lay_out(30, &["#".to_owned(), "key".to_owned()], &fits[..2], &[rows[0][..2].to_vec()]);
        // Its file name is never cut: its line and function go to the next line.
        assert_eq!(cells[0][1], "…/views.py:30:\nresolve <-\n…/app/main.py:9:main");
        // Wide enough: nothing changes.
        let (_, cells) = lay_out(200, &["k".to_owned()], &[Fit::Key], &[vec![Text::key("a/b.py:1:f")]]);
        assert_eq!(cells[0][0], "a/b.py:1:f");
    }

    #[test]
    fn a_diffs_values_wrap_between_words_before_a_key_loses_its_file() {
        let titles: Vec<String> =
            ["status", "entry point", "severity per 1k slices", "p95 ms"].map(String::from).to_vec();
        let fits = [Fit::Fixed, Fit::Key, Fit::Phrase, Fit::Phrase];
        let rows = vec![vec![
            Text::plain("regressed"),
            Text::key("uvicorn/protocols/http/httptools_impl.py:run_asgi"),
            Text::plain("12.177 → 30.473 (+150%)"),
            Text::plain("2.1 → 7.9 (+276%)"),
        ]];
        // At 120 every value is whole; at 60 they wrap, an arrow kept with its number.
        let (_, wide) = lay_out(120, &titles, &fits, &rows);
        assert_eq!((wide[0][2].as_str(), wide[0][3].as_str()), ("12.177 → 30.473 (+150%)", "2.1 → 7.9 (+276%)"));
        let (titles, narrow) = lay_out(60, &titles, &fits, &rows);
        assert_eq!(narrow[0][2], "12.177 →\n30.473\n(+150%)");
        assert_eq!(narrow[0][3], "2.1 →\n7.9\n(+276%)");
        // The key keeps its file and function whole (wrapped after the `:`).
        assert_eq!(narrow[0][1], "…/httptools_impl.py:\nrun_asgi");
        let widest = |cell: &str| cell.lines().map(width_of).max().unwrap_or(0);
        let table: usize =
            (0..4).map(|c| widest(&narrow[0][c]).max(widest(&titles[c]))).sum::<usize>() + border_width(4);
        assert!(table <= 60, "{table}: {titles:?} {narrow:?}");
        assert_eq!(wrap_phrase("x0.6–x1.8 (2 routes)", 11), ["x0.6–x1.8", "(2 routes)"]);
    }
}
