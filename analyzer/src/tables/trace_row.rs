//! The one row of the `traces` table a trace gets: its header's facts, its
//! footer's counts (null when it has none, or one that disagrees with its
//! chunks) and what the export read of it.

use super::schema::{string_list_builder, timestamp_type, Table};
use aiocop_trace::records::TraceFooter;
use aiocop_trace::TraceFile;
use arrow_array::builder::ListBuilder;
use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use std::sync::Arc;

/// What the export read of a trace's chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub slices: u64,
    pub events: u64,
    pub samples: u64,
    pub dropped_slices: u64,
    pub unreadable_chunks: u64,
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn strings(value: &str) -> ArrayRef {
    Arc::new(StringArray::from(vec![value]))
}

fn ints(value: i64) -> ArrayRef {
    Arc::new(Int64Array::from(vec![value]))
}

fn footer_ints(value: Option<u64>) -> ArrayRef {
    Arc::new(Int64Array::from(vec![value.map(int)]))
}

fn flags(value: bool) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value]))
}

fn string_list(values: &[String]) -> ArrayRef {
    let mut builder: ListBuilder<StringBuilder> = string_list_builder();
    builder.append_value(values.iter().map(Some));
    Arc::new(builder.finish())
}

/// The row of `trace`, known as `trace_id`, whose footer is `footer` if
/// it is to be trusted.
pub fn trace_row(trace: &TraceFile, trace_id: &str, footer: Option<&TraceFooter>, read: &ReadCounts) -> RecordBatch {
    let header = trace.header();
    let (major, minor) = trace.format_version();
    let start = TimestampNanosecondArray::from(vec![int(header.start_unix_ns)]).with_data_type(timestamp_type());
    let columns: Vec<ArrayRef> = vec![
        strings(trace_id),
        strings(trace.path()),
        ints(int(trace.file_len())),
        strings(&format!("{major}.{minor}")),
        strings(&header.aiocop_version),
        strings(&header.python_version),
        strings(&header.platform),
        ints(i64::from(header.pid)),
        ints(i64::from(header.process.parent_pid)),
        strings(&header.process.role),
        string_list(&header.process.root_command),
        string_list(&header.argv),
        Arc::new(start),
        ints(int(header.threshold_ns)),
        ints(i64::from(header.trace_depth)),
        flags(header.records_context),
        ints(int(header.sampling.after_ns)),
        ints(int(header.sampling.interval_ns)),
        flags(header.redaction.redacted),
        flags(trace.cut_short()),
        footer_ints(footer.map(|f| f.slices)),
        footer_ints(footer.map(|f| f.events)),
        footer_ints(footer.map(|f| f.dropped_slices)),
        footer_ints(footer.map(|f| f.chunks)),
        footer_ints(footer.map(|f| f.end_offset_ns)),
        ints(trace.chunk_count() as i64),
        ints(int(read.unreadable_chunks)),
        ints(int(read.slices)),
        ints(int(read.events)),
        ints(int(read.samples)),
        ints(int(read.dropped_slices)),
    ];
    RecordBatch::try_new(Table::Traces.schema(), columns).expect("the row follows the traces table's schema")
}
