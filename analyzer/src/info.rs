//! `aiocop-analyze info`: what a trace file holds, without grouping
//! anything: its header, counts, time span, chunks and sizes, and whether it
//! was cut short. Chunks are decoded in parallel, as for a report.

use crate::report::{ms, seconds};
use aiocop_trace::records::{SliceRecord, TraceFooter};
use aiocop_trace::{ReadError, TraceFile};
use serde::Serialize;

/// Counts gathered from a file's chunks.
#[derive(Debug, Default)]
pub struct InfoCounts {
    pub slices: u64,
    pub exceeded: u64,
    pub blocking_slices: u64,
    pub events: u64,
    pub samples: u64,
    pub dropped_slices: u64,
    pub dropped_events: u64,
    pub first_start_ns: Option<u64>,
    pub last_end_ns: u64,
    pub strings: u64,
    pub frames: u64,
    pub stacks: u64,
    pub unreadable: u64,
    pub first_error: Option<(usize, ReadError)>,
    /// The memory limit refused a chunk: the read is over.
    pub over_memory_limit: Option<ReadError>,
}

impl InfoCounts {
    /// Counts chunk `index` of `trace`, read one slice at a time, or its error.
    pub fn add_from(&mut self, trace: &TraceFile, index: usize) {
        match trace.visit_chunk(index, &mut |start_ns, slice: &SliceRecord| self.add_slice(start_ns, slice)) {
            // Each id is defined once per file: the sums are the file's counts.
            Ok(chunk) => {
                self.strings += chunk.strings.len() as u64;
                self.frames += chunk.frames.len() as u64;
                self.stacks += chunk.stacks.len() as u64;
                self.dropped_slices += chunk.dropped_slices;
            }
            Err(error) if error.is_over_memory_limit() => {
                self.over_memory_limit.get_or_insert(error);
            }
            Err(error) => {
                self.unreadable += 1;
                if self.first_error.as_ref().is_none_or(|(first, _)| index < *first) {
                    self.first_error = Some((index, error));
                }
            }
        }
    }

    fn add_slice(&mut self, start_ns: u64, slice: &SliceRecord) {
        self.first_start_ns = Some(self.first_start_ns.map_or(start_ns, |s| s.min(start_ns)));
        self.last_end_ns = self.last_end_ns.max(start_ns.saturating_add(slice.duration_ns));
        self.slices += 1;
        self.exceeded += u64::from(slice.exceeded);
        self.blocking_slices += u64::from(!slice.events.is_empty());
        self.events += slice.events.len() as u64;
        self.samples += slice.samples.len() as u64;
        self.dropped_events += u64::from(slice.dropped_events);
    }

    pub fn merge(mut self, other: InfoCounts) -> InfoCounts {
        self.slices += other.slices;
        self.exceeded += other.exceeded;
        self.blocking_slices += other.blocking_slices;
        self.events += other.events;
        self.samples += other.samples;
        self.dropped_slices += other.dropped_slices;
        self.dropped_events += other.dropped_events;
        self.first_start_ns = crate::aggregate::earliest(self.first_start_ns, other.first_start_ns);
        self.last_end_ns = self.last_end_ns.max(other.last_end_ns);
        self.strings += other.strings;
        self.frames += other.frames;
        self.stacks += other.stacks;
        self.unreadable += other.unreadable;
        self.over_memory_limit = self.over_memory_limit.or(other.over_memory_limit);
        if let Some((index, error)) = other.first_error {
            if self.first_error.as_ref().is_none_or(|(first, _)| index < *first) {
                self.first_error = Some((index, error));
            }
        }
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FooterInfo {
    pub slices: u64,
    pub events: u64,
    pub dropped_slices: u64,
    pub chunks: u64,
    pub end_s: f64,
}

/// What `info` says about one trace; its serde form is `info --format json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceInfo {
    pub path: String,
    pub format_version: String,
    pub cut_short: bool,
    pub aiocop_version: String,
    pub python_version: String,
    pub platform: String,
    pub host: String,
    pub pid: u32,
    pub argv: Vec<String>,
    /// Since format 1.1 (0, empty in older traces): see `TraceFacts`.
    pub parent_pid: u32,
    pub role: String,
    pub root_command: Vec<String>,
    pub label: Option<String>,
    pub start_unix_ns: u64,
    pub start_utc: String,
    pub threshold_ms: f64,
    pub trace_depth: u32,
    pub records_context: bool,
    /// Since format 1.2 (false in older traces): recorded with `--redact`.
    pub redacted: bool,
    /// With `redacted`, the context keys whose values were still recorded.
    pub kept_context_keys: Vec<String>,
    pub event_table_len: usize,
    pub slices: u64,
    pub exceeded: u64,
    pub blocking_slices: u64,
    pub events: u64,
    pub cpu_samples: u64,
    pub dropped_slices: u64,
    pub dropped_events: u64,
    /// First slice's start and last slice's end, from the trace's start.
    pub first_slice_s: Option<f64>,
    pub last_end_s: f64,
    /// Recorded time: to the footer's stop, or to the last slice's end.
    pub duration_s: f64,
    pub chunks: usize,
    pub unreadable_chunks: u64,
    pub file_bytes: u64,
    pub compressed_bytes: u64,
    pub raw_bytes: u64,
    pub strings: u64,
    pub frames: u64,
    pub stacks: u64,
    pub footer: Option<FooterInfo>,
}

impl TraceInfo {
    /// What `trace` holds, with `footer` only if it agrees with the chunks
    /// (see `read::trusted_footer`).
    pub fn new(trace: &TraceFile, footer: Option<&TraceFooter>, counts: &InfoCounts) -> TraceInfo {
        let header = trace.header();
        let (major, minor) = trace.format_version();
        let end_ns = footer.map_or(counts.last_end_ns, |f| f.end_offset_ns);
        let footer = footer.map(|f| FooterInfo {
            slices: f.slices,
            events: f.events,
            dropped_slices: f.dropped_slices,
            chunks: f.chunks,
            end_s: seconds(f.end_offset_ns),
        });
        TraceInfo {
            path: trace.path().to_owned(),
            format_version: format!("{major}.{minor}"),
            cut_short: trace.cut_short(),
            aiocop_version: header.aiocop_version.clone(),
            python_version: header.python_version.clone(),
            platform: header.platform.clone(),
            host: header.host.clone(),
            pid: header.pid,
            argv: header.argv.clone(),
            parent_pid: header.process.parent_pid,
            role: header.process.role.clone(),
            root_command: header.process.root_command.clone(),
            label: header.label.clone(),
            start_unix_ns: header.start_unix_ns,
            start_utc: utc(header.start_unix_ns),
            threshold_ms: ms(header.threshold_ns),
            trace_depth: header.trace_depth,
            records_context: header.records_context,
            redacted: header.redaction.redacted,
            kept_context_keys: header.redaction.kept_context_keys.clone(),
            event_table_len: header.event_table.len(),
            slices: counts.slices,
            exceeded: counts.exceeded,
            blocking_slices: counts.blocking_slices,
            events: counts.events,
            cpu_samples: counts.samples,
            dropped_slices: counts.dropped_slices,
            dropped_events: counts.dropped_events,
            first_slice_s: counts.first_start_ns.map(seconds),
            last_end_s: seconds(counts.last_end_ns),
            duration_s: seconds(end_ns),
            chunks: trace.chunk_count(),
            unreadable_chunks: counts.unreadable,
            file_bytes: trace.file_len(),
            compressed_bytes: trace.compressed_bytes(),
            raw_bytes: trace.raw_bytes(),
            strings: counts.strings,
            frames: counts.frames,
            stacks: counts.stacks,
            footer,
        }
    }

    pub fn text(&self) -> String {
        let mut lines = vec![format!("'{}'", self.path)];
        let mut field = |name: &str, value: String| lines.push(format!("  {:<13}{value}", format!("{name}:")));
        let completeness = if self.cut_short {
            "cut short: no footer (the recording did not stop cleanly, or is still going on)"
        } else {
            "complete"
        };
        field("format", format!("{}, {completeness}", self.format_version));
        field(
            "recorded by",
            format!(
                "aiocop {}, Python {} on {}, host {}, pid {}",
                self.aiocop_version, self.python_version, self.platform, self.host, self.pid
            ),
        );
        field("command", if self.argv.is_empty() { "unknown".to_owned() } else { self.argv.join(" ") });
        if !self.role.is_empty() {
            let of_parent = if self.role == "main" { String::new() } else { format!(" of pid {}", self.parent_pid) };
            field("process", format!("{}{of_parent}, for: {}", self.role, self.root_command.join(" ")));
        }
        field("label", self.label.clone().unwrap_or_else(|| "none".to_owned()));
        field("started", self.start_utc.clone());
        field(
            "threshold",
            format!(
                "{} ms; stacks of up to {} frames; context values {}",
                crate::units::fmt_short_ms(self.threshold_ms),
                self.trace_depth,
                if self.records_context { "recorded" } else { "not recorded" }
            ),
        );
        field(
            "slices",
            format!(
                "{}: {} over the threshold, {} with blocking I/O, {} dropped by the recorder",
                self.slices, self.exceeded, self.blocking_slices, self.dropped_slices
            ),
        );
        field(
            "events",
            format!(
                "{} blocking events, {} more past 50 in a slice; {} CPU samples",
                self.events, self.dropped_events, self.cpu_samples
            ),
        );
        let slices = match self.first_slice_s {
            Some(first) => format!("first slice at {first:.3} s, last one ends at {:.3} s", self.last_end_s),
            None => "no slices".to_owned(),
        };
        field("time span", format!("{slices}; recorded for {:.3} s", self.duration_s));
        field("chunks", format!("{}, {} unreadable", self.chunks, self.unreadable_chunks));
        let ratio = if self.compressed_bytes > 0 {
            format!(" ({:.1}x)", self.raw_bytes as f64 / self.compressed_bytes as f64)
        } else {
            String::new()
        };
        field(
            "size",
            format!(
                "{} bytes; chunks {} bytes compressed, {} raw{ratio}",
                self.file_bytes, self.compressed_bytes, self.raw_bytes
            ),
        );
        field("definitions", format!("{} strings, {} frames, {} stacks", self.strings, self.frames, self.stacks));
        field("holds", self.what_it_holds());
        lines.join("\n") + "\n"
    }

    /// What of the recorded program the trace gives away, for whoever it is
    /// shared with.
    fn what_it_holds(&self) -> String {
        let context = match (self.records_context, self.redacted) {
            (false, _) => "no context values".to_owned(),
            (true, false) => "context provider values".to_owned(),
            (true, true) if self.kept_context_keys.is_empty() => "no context values".to_owned(),
            (true, true) => format!("context values of {} only", self.kept_context_keys.join(", ")),
        };
        if self.redacted {
            format!(
                "redacted (--redact): program names without arguments, no host name or sys.path, event arguments \
                 hashed, {context}; source paths and function names as recorded"
            )
        } else {
            format!(
                "not redacted: the command lines with their arguments, host name, sys.path, the arguments of \
                 blocking calls (file paths, hosts, subprocess arguments), {context}, source paths and function \
                 names; record with --redact to leave secrets out"
            )
        }
    }
}

/// `unix_ns` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let millis = unix_ns % 1_000_000_000 / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_714_564_800_000_000_000), "2024-05-01T12:00:00.000Z");
        assert_eq!(utc(4_102_444_799_999_999_999), "2099-12-31T23:59:59.999Z");
    }
}
