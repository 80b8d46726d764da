//! The flame graph: the loop's busy time by stack, as folded stacks and
//! as an SVG drawn by `inferno`.
//!
//! The view computes, from each file's aggregate ([`crate::aggregate`],
//! read as a report reads it, with `what` kept in every signature), a
//! [`Folded`]: a line `root;outer;...;inner` per distinct stack with the
//! nanoseconds it stands for. It promises that the lines add up to the
//! loop's busy time exactly, attributed as [`crate::loop_time`] attributes
//! it:
//!
//! - a slice with blocking events that `--ignore` keeps splits its duration
//!   between its events' stacks by event count ([`apportion`]);
//! - else a sampled slice splits it between its samples' stacks by their
//!   weights ([`aiocop_trace::sample_weights`]: each sample the time since
//!   the previous one; an equal share each in traces before format 1.3); a
//!   sample whose request waited in C code gets a `[native]` frame under
//!   its innermost one, the C call made from that line;
//! - any other slice is one frame, what ran.
//!
//! Every line starts with what ran (the slice's coroutine or callback
//! qualname), so a callback's width is its busy time and its own box is the
//! time no stack explains; the loop's own frames outside asyncio's
//! `Handle._run` are left out. Frames read `function (path:line)`, or by their
//! identity ([`crate::identity`]) for a differential graph, whose sides must
//! name a frame alike across releases.
//!
//! [`svg`], [`differential_svg`] and [`differential_text`] only write (an
//! SVG counts microseconds, folded text nanoseconds).

use crate::aggregate::FileAggregate;
use crate::group::{IgnoreSet, StackResolver};
use crate::identity::{frame_facts, frame_identity, PathContext};
use crate::stats::{self, RateSample};
use crate::units::count;
use aiocop_trace::apportion;
use aiocop_trace::frame::short_path;
use aiocop_trace::records::{FrameId, StackId, StringId, TraceHeader};
use aiocop_trace::Dictionary;
use rustc_hash::{FxHashMap, FxHashSet};
use std::fmt::Write as _;

/// How frames are named in the folded lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameNames {
    /// `function (short/path.py:line)`.
    Shown,
    /// `module:qualname`, else `relative/path.py:function`: the same across releases.
    Identity,
}

/// Folded stacks: `root;outer;...;inner` to the nanoseconds they stand for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    pub stacks: FxHashMap<String, u64>,
    /// For each stack, Σ over the slices (or parts of slices) behind it of
    /// their time squared, in µs²: what the differential's test needs to
    /// know how much a stack's time varies ([`changes_beyond_chance`]).
    pub squares_us2: FxHashMap<String, u64>,
}

impl Folded {
    /// `ns` of slices whose squares add up to `sq_us2`, at stack `line`.
    fn add(&mut self, line: String, ns: u64, sq_us2: u64) {
        if ns > 0 {
            let square = self.squares_us2.entry(line.clone()).or_default();
            *square = square.saturating_add(sq_us2);
            let total = self.stacks.entry(line).or_default();
            *total = total.saturating_add(ns);
        }
    }

    pub fn merge(&mut self, other: Folded) {
        let mut squares = other.squares_us2;
        for (line, ns) in other.stacks {
            let sq_us2 = squares.remove(&line).unwrap_or(0);
            self.add(line, ns, sq_us2);
        }
    }

    /// All the time, in nanoseconds.
    pub fn total_ns(&self) -> u64 {
        self.stacks.values().fold(0, |sum, &ns| sum.saturating_add(ns))
    }

    /// The lines, sorted (as `inferno` wants them), each `stack nanoseconds`.
    pub fn lines(&self) -> Vec<String> {
        self.lines_in(1)
    }

    /// The lines with their time in units of `unit_ns`, rounded; those that
    /// round to 0 are left out.
    fn lines_in(&self, unit_ns: u64) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .map(|(stack, ns)| (stack, ns.saturating_add(unit_ns / 2) / unit_ns))
            .filter(|&(_, units)| units > 0)
            .map(|(stack, units)| format!("{stack} {units}"))
            .collect();
        lines.sort_unstable();
        lines
    }

    /// The collapsed-stack text: one line each, sorted, in nanoseconds.
    pub fn text(&self) -> String {
        lines_text(&self.lines())
    }
}

fn lines_text(lines: &[String]) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

impl Folded {
    /// Adds file `aggregate` (read with [`crate::aggregate::Extra::What`],
    /// so that sampled slices keep what ran, as `read_side` reads with
    /// `ReadOptions::flame` unless `--by context:KEY` needs the extra key:
    /// then sampled stacks sit on `<what ran not kept>`), through its whole
    /// dictionary.
    pub fn add_file(
        &mut self,
        header: &TraceHeader,
        aggregate: &FileAggregate,
        ignore: Option<&IgnoreSet>,
        names: FrameNames,
    ) {
        let dictionary = &aggregate.dictionary;
        let used = aggregate.io.keys().flat_map(|s| s.events.iter().map(|&(_, stack)| stack));
        let sampled = aggregate.loop_time.sampled.keys().flat_map(|s| s.samples.iter().map(|share| share.stack));
        let paths = PathContext::new(dictionary, used.chain(sampled), &header.process.sys_path);
        let mut stacks = StackNames { dictionary, paths: &paths, names, cache: FxHashMap::default() };
        let mut resolver = StackResolver::new(dictionary, &[], ignore, &paths);
        let root = |what: StringId| frame_text(&string(dictionary, what));

        for (signature, stats) in &aggregate.io {
            let (busy_ns, sq_us2) = (stats.durations.total_ns(), stats.durations.sum_sq_us2());
            let mut kept: Vec<(StackId, u64)> = Vec::new();
            for &(_, stack) in &signature.events {
                if resolver.facts(stack).ignored {
                    continue;
                }
                match kept.iter_mut().find(|(s, _)| *s == stack) {
                    Some((_, count)) => *count += 1,
                    None => kept.push((stack, 1)),
                }
            }
            let root = root(signature.what);
            if kept.is_empty() {
                // Every event is ignored (known and accepted): what ran.
                self.add(root, busy_ns, sq_us2);
                continue;
            }
            self.add_split(&root, &kept, (busy_ns, sq_us2), &mut stacks);
        }
        for (signature, (stats, _)) in &aggregate.loop_time.sampled {
            let what = signature.extra.map_or_else(|| "<what ran not kept>".to_owned(), root);
            let weights: Vec<u64> = signature.samples.iter().map(|share| u64::from(share.share)).collect();
            for (share, part_ns) in signature.samples.iter().zip(apportion(stats.busy_ns, &weights)) {
                // Time in C code called from the stack's innermost frame.
                let native = if share.native { NATIVE_FRAME } else { "" };
                let sq_us2 = part_of_squares(stats.busy_sq_us2, part_ns, stats.busy_ns);
                self.add(format!("{what};{}{native}", stacks.get(share.stack)), part_ns, sq_us2);
            }
        }
        for (what, stats) in aggregate.loop_time.ran() {
            self.add(root(what), stats.busy_ns, stats.busy_sq_us2);
        }
    }

    /// `ns` (of slices whose squares add up to `sq_us2`) split between
    /// `stacks` by their counts, each under `root`.
    fn add_split(&mut self, root: &str, stacks: &[(StackId, u64)], (ns, sq_us2): (u64, u64), names: &mut StackNames) {
        let weights: Vec<u64> = stacks.iter().map(|&(_, count)| count).collect();
        for (&(stack, _), part_ns) in stacks.iter().zip(apportion(ns, &weights)) {
            self.add(format!("{root};{}", names.get(stack)), part_ns, part_of_squares(sq_us2, part_ns, ns));
        }
    }
}

/// The squares of slices' parts when each slice gives the same fraction
/// `part_ns / whole_ns` of its time: `sq_us2` times that fraction squared.
fn part_of_squares(sq_us2: u64, part_ns: u64, whole_ns: u64) -> u64 {
    if whole_ns == 0 {
        return 0;
    }
    let fraction = part_ns as f64 / whole_ns as f64;
    (sq_us2 as f64 * fraction * fraction).round() as u64
}

/// The frame under a sample's innermost frame when its request waited in
/// C code called from there ([`aiocop_trace::waited_in_native_code`]).
pub const NATIVE_FRAME: &str = ";[native]";

fn string(dictionary: &Dictionary, id: StringId) -> String {
    dictionary.string(id).map_or_else(|| format!("<unknown string {id}>"), str::to_owned)
}

/// A frame's text as a folded line may hold it: `;` separates frames and a
/// line ends the stack.
fn frame_text(text: &str) -> String {
    text.replace(';', ":").replace(['\n', '\r'], " ")
}

/// The folded text of one file's stacks, outermost frame first, cached.
struct StackNames<'a> {
    dictionary: &'a Dictionary,
    paths: &'a PathContext,
    names: FrameNames,
    cache: FxHashMap<StackId, String>,
}

impl StackNames<'_> {
    fn get(&mut self, stack: StackId) -> &str {
        let (dictionary, paths, names) = (self.dictionary, self.paths, self.names);
        self.cache.entry(stack).or_insert_with(|| {
            let Some(frames) = dictionary.stack(stack).filter(|frames| !frames.is_empty()) else {
                return match dictionary.stack(stack) {
                    Some(_) => "<empty stack>".to_owned(),
                    None if stack == crate::group::NO_STACK => "<no stack>".to_owned(),
                    None => format!("<unknown stack {stack}>"),
                };
            };
            // The loop's own frames, from the script's `<module>` down to
            // asyncio's `Handle._run`, are the same in every stack: what ran,
            // the root, stands for them.
            let is_loop_run = |frame: &FrameId| {
                frame_facts(dictionary, *frame)
                    .is_some_and(|f| f.function == "_run" && f.path.replace('\\', "/").ends_with("/asyncio/events.py"))
            };
            let frames = match frames.iter().position(is_loop_run) {
                Some(at) if at > 0 => &frames[..at],
                _ => frames,
            };
            let mut text = String::new();
            for (at, &frame) in frames.iter().rev().enumerate() {
                if at > 0 {
                    text.push(';');
                }
                let name = match (frame_facts(dictionary, frame), names) {
                    (None, _) => format!("<unknown frame {frame}>"),
                    (Some(facts), FrameNames::Identity) => frame_identity(&facts, paths),
                    (Some(facts), FrameNames::Shown) => {
                        format!("{} ({}:{})", facts.function, short_path(facts.path), facts.line)
                    }
                };
                text.push_str(&frame_text(&name));
            }
            text
        })
    }
}

/// What the SVG says about itself.
#[derive(Clone, Debug, Default)]
pub struct SvgText {
    pub title: String,
    /// Under the title: what was read.
    pub subtitle: Option<String>,
}

fn options(text: &SvgText) -> inferno::flamegraph::Options<'static> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = text.title.clone();
    options.subtitle = text.subtitle.clone();
    // inferno's Python palette tells the standard library by `pythonX.Y` in
    // a frame's path, which shortened paths no longer hold: the classic
    // palette, coloured by name, not by chance (the same picture for the same trace).
    options.colors = inferno::flamegraph::color::Palette::Basic(inferno::flamegraph::color::BasicPalette::Hot);
    options.hash = true;
    options.deterministic = true;
    // A narrow frame keeps its function's name, the start of its text.
    options.text_truncate_direction = inferno::flamegraph::TextTruncateDirection::Right;
    // The SVG's counts are microseconds (not nanoseconds with inferno's
    // `factor`: it scales the counts shown, not a differential's deltas).
    options.count_name = "µs".to_owned();
    options.name_type = String::new();
    options
}

/// The SVG's unit of time: a microsecond.
const SVG_UNIT_NS: u64 = 1_000;

/// The flame graph of `folded`, as SVG.
pub fn svg(folded: &Folded, text: &SvgText) -> std::io::Result<Vec<u8>> {
    let lines = folded.lines_in(SVG_UNIT_NS);
    let mut out = Vec::new();
    if lines.is_empty() {
        // inferno refuses an empty profile; an empty window still gets a picture.
        return Ok(empty_svg(&text.title));
    }
    inferno::flamegraph::from_lines(&mut options(text), lines.iter().map(String::as_str), &mut out)?;
    Ok(out)
}

/// Which stacks a differential picture colours: those whose share of the
/// busy time changed beyond chance by the diff gate's test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChangeTest {
    /// As `diff --confidence`: a change is beyond chance when its test,
    /// Holm-adjusted over every stack of the picture, has p <= 1 - confidence.
    pub confidence: f64,
    /// As `diff --min-increase`: the stack's time against the rest of the
    /// side's must also move by this fraction.
    pub min_increase: f64,
}

/// The stacks whose share of the busy time rose or fell beyond chance
/// from `base` to `new`: the diff gate's rate test ([`crate::stats`]) on
/// time, a stack's microseconds tested as a count after dividing by their
/// dispersion (Σ of its slices' squared times over its time: a stack of a
/// few long slices varies more than one of many short ones), against the
/// rest of its side's busy time; rises and falls each Holm-adjusted over
/// the stacks whose test could reject at all (Tarone), and its time
/// against the rest moved by at least `min_increase` too.
pub fn changes_beyond_chance(base: &Folded, new: &Folded, test: ChangeTest) -> Changes {
    let (base_total_us, new_total_us) = (base.total_ns() / 1000, new.total_ns() / 1000);
    let (base_tested, new_tested) = (tested_stacks(base), tested_stacks(new));
    let stacks: Vec<&String> = {
        let mut all: Vec<&String> = base_tested.keys().chain(new_tested.keys()).collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    // A stack's time against the rest of its side's (the denominator that
    // does not move with the stack): a dominant stack three times as slow
    // barely grows its share (83% to 91%), but triples against the rest.
    let sample = |tested: &FxHashMap<String, (u64, u64)>, stack: &str, side_us: u64| {
        let (ns, sq_us2) = tested.get(stack).copied().unwrap_or_default();
        let total = ns as f64 / 1000.0;
        RateSample { total, sum_sq: sq_us2 as f64, side_slices: side_us.saturating_sub(total as u64).max(1) }
    };
    let pairs: Vec<(RateSample, RateSample)> =
        stacks.iter().map(|s| (sample(&base_tested, s, base_total_us), sample(&new_tested, s, new_total_us))).collect();
    let alpha = 1.0 - test.confidence;
    let floors: Vec<(f64, f64)> = pairs.iter().map(|(b, n)| stats::rate_floor(b, n)).collect();
    let rises = testable_holm(&pairs, &floors, alpha, |(b, n)| stats::rate_rise(b, n), |f| f.0);
    let falls = testable_holm(&pairs, &floors, alpha, |(b, n)| stats::rate_fall(b, n), |f| f.1);
    let against_rest = |sample: &RateSample| sample.total / sample.side_slices as f64;
    let moved = |from: f64, to: f64| to > 0.0 && to >= from * (1.0 + test.min_increase);
    let tested = floors.iter().filter(|&&(rise, fall)| rise <= alpha || fall <= alpha).count();
    let changed = stacks
        .iter()
        .zip(pairs.iter().zip(rises.iter().zip(&falls)))
        .filter(|(_, ((b, n), (&rise, &fall)))| {
            (rise <= alpha && moved(against_rest(b), against_rest(n)))
                || (fall <= alpha && moved(against_rest(n), against_rest(b)))
        })
        .map(|(stack, _)| (*stack).clone())
        .collect();
    Changes { changed, tested, stacks: stacks.len() }
}

/// What [`changes_beyond_chance`] found, with the counts behind it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The stacks (as tested: without a `[native]` frame) that changed.
    pub changed: FxHashSet<String>,
    /// How many stacks had time enough on the two sides for their test to
    /// be able to call a change at all (the Holm family's size).
    pub tested: usize,
    /// How many stacks either side had.
    pub stacks: usize,
}

/// The stacks as the test takes them: time and squares, a `[native]` frame
/// counted with its caller. Whether a sample waited in C code is judged by
/// the wall clock in traces without the loop thread's CPU times
/// ([`aiocop_trace::waited_in_native_code`]): on a loaded machine
/// pure-Python code is marked native in one run and not in the next, which
/// is not a change of the program; by CPU time, a wait near the limit can
/// still tip either way.
fn tested_stacks(folded: &Folded) -> FxHashMap<String, (u64, u64)> {
    let mut tested: FxHashMap<String, (u64, u64)> = FxHashMap::default();
    for (stack, &ns) in &folded.stacks {
        let sq_us2 = folded.squares_us2.get(stack).copied().unwrap_or(0);
        let entry = tested.entry(tested_key(stack).to_owned()).or_default();
        *entry = (entry.0.saturating_add(ns), entry.1.saturating_add(sq_us2));
    }
    tested
}

/// The stack a line is tested as: without its `[native]` frame.
fn tested_key(stack: &str) -> &str {
    stack.strip_suffix(NATIVE_FRAME).unwrap_or(stack)
}

/// Holm-adjusted p-values of `test` over the pairs whose smallest possible
/// p-value (`floor`) is at most `alpha`; 1 for the others, which could
/// never reject (a stack seen in a slice or two).
fn testable_holm(
    pairs: &[(RateSample, RateSample)],
    floors: &[(f64, f64)],
    alpha: f64,
    test: impl Fn(&(RateSample, RateSample)) -> f64,
    floor: impl Fn(&(f64, f64)) -> f64,
) -> Vec<f64> {
    let testable: Vec<usize> = (0..pairs.len()).filter(|&i| floor(&floors[i]) <= alpha).collect();
    let adjusted = stats::holm(&testable.iter().map(|&i| test(&pairs[i])).collect::<Vec<_>>());
    let mut p_values = vec![1.0; pairs.len()];
    for (&i, p) in testable.iter().zip(adjusted) {
        p_values[i] = p;
    }
    p_values
}

/// The differential flame graph of `new` against `base`: `new`'s stacks,
/// the base's time scaled to `new`'s total; only the stacks whose change
/// `test` calls beyond chance are coloured (red: more of the time, blue:
/// less), the others drawn as unchanged (white). Under the frames, a legend
/// gives the counts behind the colours and says when two
/// recordings of one build would be coloured too.
pub fn differential_svg(base: &Folded, new: &Folded, text: &SvgText, test: ChangeTest) -> std::io::Result<Vec<u8>> {
    let changes = changes_beyond_chance(base, new, test);
    let changed = &changes.changed;
    let scale = if base.total_ns() == 0 { 0.0 } else { new.total_ns() as f64 / base.total_ns() as f64 };
    let units = |ns: f64| (ns / SVG_UNIT_NS as f64).round() as u64;
    let mut lines: Vec<String> = new
        .stacks
        .keys()
        .chain(base.stacks.keys().filter(|stack| !new.stacks.contains_key(*stack)))
        .filter_map(|stack| {
            let new_units = units(new.stacks.get(stack).map_or(0.0, |&ns| ns as f64));
            let base_units = match changed.contains(tested_key(stack)) {
                true => units(base.stacks.get(stack).map_or(0.0, |&ns| ns as f64 * scale)),
                false => new_units,
            };
            (new_units > 0 || base_units > 0).then(|| format!("{stack} {base_units} {new_units}"))
        })
        .collect();
    if lines.is_empty() {
        return Ok(empty_svg(&text.title));
    }
    lines.sort_unstable();
    // Say on the picture what its colours are, and how many stacks have one.
    let note = format!(
        "Coloured: {} of {} tested, beyond chance (legend below)",
        changes.changed.len(),
        count(changes.tested as u64, "stack")
    );
    let subtitle = match &text.subtitle {
        Some(subtitle) => format!("{subtitle}. {note}"),
        None => note,
    };
    let text = SvgText { subtitle: Some(subtitle), ..text.clone() };
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options(&text), lines.iter().map(String::as_str), &mut out)?;
    Ok(with_legend(out, &legend(&changes, test, (unstacked_share(base), unstacked_share(new)))))
}

/// The share of `folded`'s time at a stack of one frame, what ran with no
/// stack under it: a slice neither sampled nor with blocking I/O.
fn unstacked_share(folded: &Folded) -> f64 {
    let total = folded.total_ns();
    let unstacked: u64 = folded.stacks.iter().filter(|(stack, _)| !stack.contains(';')).map(|(_, &ns)| ns).sum();
    if total == 0 {
        0.0
    } else {
        unstacked as f64 / total as f64
    }
}

/// What a differential picture says of its colours, under it: the test, its
/// counts, what an A/A pair colours by chance, and when the two sides'
/// stacks cannot be compared alike (one sampled far more of its time).
fn legend(changes: &Changes, test: ChangeTest, (base_unstacked, new_unstacked): (f64, f64)) -> Vec<String> {
    let pct = |fraction: f64| (fraction * 1000.0).round() / 10.0;
    let mut lines = vec![
        format!(
            "Red: more of the time, blue: less, white: no change beyond chance. Coloured: {} of {} tested \
             (of {} on either side; the rest too small to show a change).",
            changes.changed.len(),
            count(changes.tested as u64, "stack"),
            changes.stacks
        ),
        format!(
            "Test: each stack's time against the rest of its side, the diff gate's quasi-Poisson rate test, \
             Holm-adjusted over the {} tested, confidence {}, change >= {}%.",
            changes.tested,
            test.confidence,
            pct(test.min_increase)
        ),
        format!(
            "By chance alone an A/A pair colours no stack ({} pairs of 100); a change of the machine's load is \
             not chance: A/A pairs measured on a loaded machine coloured 0-8.",
            (test.confidence * 100.0).floor(),
        ),
    ];
    let shares =
        format!("Time with no stack under what ran: base {}%, new {}%", pct(base_unstacked), pct(new_unstacked));
    let (low, high) = (base_unstacked.min(new_unstacked), base_unstacked.max(new_unstacked));
    lines.push(if high > low * (1.0 + test.min_increase) && high - low >= UNSTACKED_MOVE_WORTH_SAYING {
        format!(
            "{shares}: these differ by more than {}%, time moved between what ran and its stacks (slices near the \
             sampling limit).",
            pct(test.min_increase)
        )
    } else {
        format!("{shares}.")
    });
    lines
}

/// The least share of the busy time moved between what ran and its stacks
/// that the legend warns of: less moves no stack that has time enough to be
/// tested by much (a stack of 5% of the time taking all of it would be +100%,
/// but such a move is spread over every stack of the requests near the limit).
const UNSTACKED_MOVE_WORTH_SAYING: f64 = 0.05;

/// The height of a line of the legend, in pixels (the picture's font is 12 px).
const LEGEND_LINE_PX: usize = 16;

/// `svg` (as inferno writes it) made taller by `lines`, written under the frames.
fn with_legend(svg: Vec<u8>, lines: &[String]) -> Vec<u8> {
    let text = String::from_utf8_lossy(&svg).into_owned();
    let height = |text: &str| -> Option<usize> {
        let at = text.find("<svg ")?;
        let rest = &text[at..];
        let start = rest.find(" height=\"")? + " height=\"".len();
        rest[start..].split('"').next()?.parse().ok()
    };
    let (Some(old), Some(end)) = (height(&text), text.rfind("</svg>")) else { return svg };
    let new = old + LEGEND_LINE_PX * lines.len() + LEGEND_LINE_PX / 2;
    let mut legend = String::new();
    for (i, line) in lines.iter().enumerate() {
        let y = old + LEGEND_LINE_PX * (i + 1);
        let _ = write!(legend, "<text class=\"legend\" x=\"10\" y=\"{y}\">{}</text>", xml_escape(line));
    }
    let mut out = text[..end].replacen(&format!(" height=\"{old}\""), &format!(" height=\"{new}\""), 2);
    out = out.replacen(&format!("viewBox=\"0 0 1200 {old}\""), &format!("viewBox=\"0 0 1200 {new}\""), 1);
    out.push_str(&legend);
    out.push_str(&text[end..]);
    out.into_bytes()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Both sides' stacks, one line each, `stack base new`, in units of
/// `unit_ns` (inferno's `differential`; with `normalize`, the base's time
/// scaled to the new side's total).
fn differential_lines(base: &Folded, new: &Folded, unit_ns: u64, normalize: bool) -> std::io::Result<String> {
    let mut both = Vec::new();
    let differential = inferno::differential::Options { normalize, strip_hex: false };
    let (base, new) = (lines_text(&base.lines_in(unit_ns)), lines_text(&new.lines_in(unit_ns)));
    inferno::differential::from_readers(differential, base.as_bytes(), new.as_bytes(), &mut both)?;
    let mut lines: Vec<String> =
        String::from_utf8_lossy(&both).lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    lines.sort_unstable();
    Ok(lines_text(&lines))
}

/// The folded text of a differential: `stack base_ns new_ns` lines, as
/// recorded (not scaled), sorted: what `inferno-flamegraph` and
/// `difffolded.pl`'s readers take.
pub fn differential_text(base: &Folded, new: &Folded) -> std::io::Result<String> {
    differential_lines(base, new, 1, false)
}

/// A valid SVG that says there was nothing to draw.
fn empty_svg(title: &str) -> Vec<u8> {
    let mut svg = String::new();
    let escaped = xml_escape(title);
    let _ = write!(
        svg,
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"1200\" height=\"60\" \
         xmlns=\"http://www.w3.org/2000/svg\"><text x=\"600\" y=\"24\" text-anchor=\"middle\">{escaped}</text>\
         <text x=\"600\" y=\"48\" text-anchor=\"middle\">no slice in the window: nothing to draw</text></svg>\n"
    );
    svg.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{ChunkOptions, Extra};
    use aiocop_trace::records::{Chunk, EventRecord, Frame, SliceRecord};

    /// Strings: 0 app.py, 1 handler, 2 load, 3 "main", 4 "tick", 5 asyncio's
    /// events.py, 6 _run; frames 10 app.py:5:load, 11 app.py:9:handler, 12
    /// events.py:88:_run, 13 app.py:1:handler; stacks 20 (load <- handler), 21
    /// (handler <- _run <- handler: the loop's frames, outside, are left out).
    fn chunk(slices: Vec<SliceRecord>) -> Chunk {
        let strings =
            ["/srv/app/app.py", "handler", "load", "main", "tick", "/usr/lib/python3.12/asyncio/events.py", "_run"];
        let frame = |file, line, function| Frame { file, line, function };
        Chunk {
            strings: strings.iter().enumerate().map(|(i, s)| (i as u32, (*s).to_owned())).collect(),
            frames: vec![(10, frame(0, 5, 2)), (11, frame(0, 9, 1)), (12, frame(5, 88, 6)), (13, frame(0, 1, 1))],
            stacks: vec![(20, vec![10, 11]), (21, vec![11, 12, 13])],
            slices,
            ..Chunk::default()
        }
    }

    fn slice(duration_ns: u64, what: u32, events: &[StackId], samples: &[StackId]) -> SliceRecord {
        SliceRecord {
            start_delta_ns: 1_000,
            duration_ns,
            what,
            events: events.iter().map(|&stack| EventRecord { event: 0, args: 4, offset_ns: 0, stack }).collect(),
            samples: samples.to_vec(),
            ..SliceRecord::default()
        }
    }

    fn folded(slices: Vec<SliceRecord>, ignore: &[&str], names: FrameNames) -> Folded {
        let mut aggregate = FileAggregate::default();
        aggregate.add_chunk(&chunk(slices), &ChunkOptions { extra: Extra::What, ..ChunkOptions::default() });
        let ignore = IgnoreSet::new(&ignore.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        let mut folded = Folded::default();
        folded.add_file(&TraceHeader::default(), &aggregate, ignore.as_ref(), names);
        folded
    }

    #[test]
    fn every_slice_gives_its_whole_time_to_its_stacks_or_to_what_ran() {
        let slices = vec![
            slice(900, 3, &[20, 20, 21], &[21]), // events win over samples: 600 + 300
            slice(1_000, 3, &[], &[20, 21, 21, 21]),
            slice(77, 4, &[], &[]),
            slice(5, 4, &[], &[]),
        ];
        let folded = folded(slices, &[], FrameNames::Shown);
        assert_eq!(
            folded.lines(),
            [
                "main;handler (/srv/app/app.py:9) 1050",
                "main;handler (/srv/app/app.py:9);load (/srv/app/app.py:5) 850",
                "tick 82",
            ]
        );
        assert_eq!(folded.total_ns(), 900 + 1_000 + 77 + 5);
    }

    #[test]
    fn ignored_events_leave_their_time_to_the_others_or_to_what_ran() {
        let slices = vec![slice(100, 3, &[20, 21], &[]), slice(40, 3, &[20], &[21])];
        let folded = folded(slices, &["*:5:load"], FrameNames::Shown);
        assert_eq!(folded.lines(), ["main 40", "main;handler (/srv/app/app.py:9) 100"]);
    }

    #[test]
    fn identity_names_drop_lines_and_frames_are_safe_in_a_folded_line() {
        let folded = folded(vec![slice(10, 3, &[20], &[])], &[], FrameNames::Identity);
        assert_eq!(folded.lines(), ["main;app.py:handler;app.py:load 10"]);
        assert_eq!(frame_text("a;b\nc"), "a:b c");
    }

    #[test]
    fn svgs_name_the_frames_and_an_empty_window_is_still_a_picture() {
        let folded = folded(vec![slice(10_000, 3, &[20], &[])], &[], FrameNames::Shown);
        let text = SvgText { title: "t".to_owned(), subtitle: None };
        let svg = String::from_utf8(svg(&folded, &text).unwrap()).unwrap();
        assert!(svg.contains("load (/srv/app/app.py:5)"), "{svg}");
        let empty = String::from_utf8(svg_of_nothing()).unwrap();
        assert!(empty.starts_with("<?xml") && empty.contains("nothing to draw"));
        let test = ChangeTest { confidence: 0.99, min_increase: 0.2 };
        let diff = String::from_utf8(differential_svg(&Folded::default(), &folded, &text, test).unwrap()).unwrap();
        assert!(diff.contains("load (/srv/app/app.py:5)"));
        // Its colours are said to be tested, not every difference.
        assert!(
            diff.contains("the diff gate's quasi-Poisson rate test, Holm-adjusted over the 0 tested, confidence 0.99"),
            "{diff}"
        );
        let text_lines = differential_text(&Folded::default(), &folded).unwrap();
        assert_eq!(text_lines, "main;handler (/srv/app/app.py:9);load (/srv/app/app.py:5) 0 10000\n");
        // Against itself at twice the time: normalized, nothing changed.
        let twice = Folded {
            stacks: folded.stacks.iter().map(|(k, ns)| (k.clone(), 2 * ns)).collect(),
            squares_us2: folded.squares_us2.iter().map(|(k, sq)| (k.clone(), 4 * sq)).collect(),
        };
        let same = String::from_utf8(differential_svg(&twice, &folded, &text, test).unwrap()).unwrap();
        assert!(same.contains("<title>load (/srv/app/app.py:5) (10 µs, 100.00%; 0.00%)</title>"), "{same}");
    }

    /// `n` slices of `ms` each at `stack`.
    fn slices_at(folded: &mut Folded, stack: &str, n: u64, ms: u64) {
        folded.add(stack.to_owned(), n * ms * 1_000_000, n * (ms * 1000) * (ms * 1000));
    }

    #[test]
    fn only_a_change_beyond_chance_is_coloured() {
        let test = ChangeTest { confidence: 0.99, min_increase: 0.2 };
        let (mut base, mut new) = (Folded::default(), Folded::default());
        slices_at(&mut base, "main;cpu", 10_000, 5);
        slices_at(&mut base, "main;io", 10_000, 1);
        slices_at(&mut base, "main;rare", 3, 40);
        // The same mix with a little noise, and a rare stack three times as often.
        slices_at(&mut new, "main;cpu", 10_300, 5);
        slices_at(&mut new, "main;io", 9_850, 1);
        slices_at(&mut new, "main;rare", 9, 40);
        assert!(changes_beyond_chance(&base, &new, test).changed.is_empty());
        // cpu twice as slow: its share rose, io's fell.
        let mut slower = Folded::default();
        slices_at(&mut slower, "main;cpu", 10_000, 10);
        slices_at(&mut slower, "main;io", 10_000, 1);
        slices_at(&mut slower, "main;rare", 3, 40);
        let changed = changes_beyond_chance(&base, &slower, test).changed;
        assert_eq!(
            changed.into_iter().collect::<std::collections::BTreeSet<_>>(),
            ["main;cpu", "main;io"].map(String::from).into()
        );
        // Drawn: a changed stack gets its base's scaled time, an unchanged one its own (white).
        let text = SvgText { title: "t".to_owned(), subtitle: None };
        let svg = String::from_utf8(differential_svg(&base, &new, &text, test).unwrap()).unwrap();
        assert!(svg.contains("Coloured: 0 of 3 stacks tested, beyond chance (legend below)"), "{svg}");
        assert!(svg.contains("Coloured: 0 of 3 stacks tested (of 3 on either side;"), "{svg}");
        let fills = |svg: &str| -> std::collections::BTreeSet<String> {
            svg.split("fill=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect()
        };
        // Frames are white (250) or red/blue; black is text, the background a gradient.
        let frame_fills = |svg: &str| {
            let mut all = fills(svg);
            all.retain(|fill| fill != "rgb(0,0,0)" && fill != "url(#background)");
            all
        };
        assert_eq!(frame_fills(&svg), ["rgb(250,250,250)".to_owned()].into());
        let slower_svg = String::from_utf8(differential_svg(&base, &slower, &text, test).unwrap()).unwrap();
        let coloured = frame_fills(&slower_svg);
        assert!(coloured.iter().any(|f| f.starts_with("rgb(255,")), "{coloured:?}");
        assert!(coloured.iter().any(|f| f.ends_with(",255)")), "{coloured:?}");
    }

    #[test]
    fn the_legend_says_when_one_side_sampled_far_more_of_its_time_than_the_other() {
        let test = ChangeTest { confidence: 0.99, min_increase: 0.2 };
        // The same work; the base's requests were not sampled (their time on what ran), the new one's were.
        let (mut base, mut new) = (Folded::default(), Folded::default());
        slices_at(&mut base, "main", 800, 3);
        slices_at(&mut base, "main;cpu", 200, 3);
        slices_at(&mut new, "main", 200, 3);
        slices_at(&mut new, "main;cpu", 800, 3);
        let text = SvgText { title: "t".to_owned(), subtitle: None };
        let svg = String::from_utf8(differential_svg(&base, &new, &text, test).unwrap()).unwrap();
        assert!(
            svg.contains("Time with no stack under what ran: base 80%, new 20%: these differ by more than 20%"),
            "{svg}"
        );
        assert!(svg.contains("A/A pairs measured on a loaded machine coloured 0-8."), "{svg}");
        // Four lines under the frames, the picture taller by them.
        assert_eq!(svg.matches("<text class=\"legend\"").count(), 4, "{svg}");
        let number_after = |svg: &str, from: &str, what: &str| -> usize {
            let rest = &svg[svg.find(from).unwrap()..];
            rest.split(what).nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
        };
        let height = number_after(&svg, "<svg ", " height=\"");
        let first_line_y = number_after(&svg, "<text class=\"legend\"", " y=\"");
        assert_eq!(height, first_line_y + 3 * LEGEND_LINE_PX + LEGEND_LINE_PX / 2);
        assert!(svg.contains(&format!("height=\"{height}\" fill=\"url(#background)\"")), "{svg}");
        // Alike: no warning.
        let same = String::from_utf8(differential_svg(&new, &new, &text, test).unwrap()).unwrap();
        assert!(same.contains("base 20%, new 20%.") && !same.contains("these differ"), "{same}");
    }

    fn svg_of_nothing() -> Vec<u8> {
        svg(&Folded::default(), &SvgText { title: "t".to_owned(), subtitle: None }).unwrap()
    }
}
