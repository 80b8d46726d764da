//! The export's tables as Arrow schemas: the one place their columns, types
//! and nullability are written down (docs/parquet-export.md says what each
//! column means; `tests/tables.rs` pins them as read back from the files).
//!
//! Types are the ones every engine reads without conversion: signed
//! integers (Spark has no unsigned ones), UTF-8 strings (dictionary-encoded
//! in the file, plain strings to a reader), timestamps in nanoseconds UTC,
//! lists of strings and a string-to-string map. `label` and `host` are not
//! columns of the files: they are the Hive partitions of the path
//! (`label=v1.4/host=web-3/`), which DuckDB, polars and Spark add as columns.

use arrow_array::builder::{ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::Array;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// Bumped when a column changes type or meaning or goes away; a column
/// added to a table bumps [`SCHEMA_MINOR`] only. Each file says both in its
/// key-value metadata ([`SCHEMA_VERSION_KEY`]).
pub const SCHEMA_VERSION: u32 = 1;
pub const SCHEMA_MINOR: u32 = 2;
/// The key-value metadata keys of every file.
pub const SCHEMA_VERSION_KEY: &str = "aiocop.schema_version";
pub const TABLE_KEY: &str = "aiocop.table";

/// The tables of an export, each a directory of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Slices,
    Events,
    Samples,
    Traces,
    /// Since 1.2.
    Tasks,
}

impl Table {
    pub const ALL: [Table; 5] = [Table::Slices, Table::Events, Table::Samples, Table::Traces, Table::Tasks];

    /// Its directory under the output, and its name in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            Table::Slices => "slices",
            Table::Events => "events",
            Table::Samples => "samples",
            Table::Traces => "traces",
            Table::Tasks => "tasks",
        }
    }

    pub fn schema(self) -> SchemaRef {
        let fields = match self {
            Table::Slices => slices(),
            Table::Events => events(),
            Table::Samples => samples(),
            Table::Traces => traces(),
            Table::Tasks => tasks(),
        };
        Arc::new(Schema::new(fields))
    }
}

fn column(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

/// Nanoseconds since the Unix epoch, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// A list of strings, none of them null.
pub fn string_list_builder() -> ListBuilder<StringBuilder> {
    ListBuilder::new(StringBuilder::new()).with_field(Field::new("item", DataType::Utf8, false))
}

/// Context values: key to value, neither null; named as the Parquet
/// specification names a map's parts (`key_value`, `key`, `value`).
pub fn context_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames { entry: "key_value".to_owned(), key: "key".to_owned(), value: "value".to_owned() };
    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new()).with_values_field(Field::new(
        "value",
        DataType::Utf8,
        false,
    ))
}

fn string_list_type() -> DataType {
    string_list_builder().finish().data_type().clone()
}

fn context_type() -> DataType {
    context_builder().finish().data_type().clone()
}

/// The columns that say which slice a row is of (its key in `slices`).
fn slice_key() -> Vec<Field> {
    vec![column("trace_id", DataType::Utf8, false), column("slice_index", DataType::Int64, false)]
}

fn slices() -> Vec<Field> {
    let mut fields = slice_key();
    fields.extend([
        column("pid", DataType::Int64, false),
        column("thread", DataType::Int64, false),
        column("start", timestamp_type(), false),
        column("start_offset_ns", DataType::Int64, false),
        column("duration_ns", DataType::Int64, false),
        column("what", DataType::Utf8, false),
        column("task", DataType::Utf8, true),
        column("route", DataType::Utf8, true),
        column("context", context_type(), true),
        column("exceeded", DataType::Boolean, false),
        column("score", DataType::Int64, false),
        column("event_count", DataType::Int64, false),
        column("dropped_events", DataType::Int64, false),
        column("sample_count", DataType::Int64, false),
        // Since 1.2: null before format 1.4 and when readiness is unknown.
        column("ready_wait_ns", DataType::Int64, true),
    ]);
    fields
}

/// The columns of a stack: its id in its trace, the report's entry point,
/// and its frames innermost first, as shown and by identity.
fn stack_columns() -> [Field; 4] {
    [
        column("stack_id", DataType::Int64, true),
        column("entry_point", DataType::Utf8, false),
        column("frames", string_list_type(), false),
        column("identities", string_list_type(), false),
    ]
}

fn events() -> Vec<Field> {
    let mut fields = slice_key();
    fields.extend([
        column("event_index", DataType::Int64, false),
        column("event", DataType::Utf8, false),
        column("event_id", DataType::Int64, false),
        column("weight", DataType::Int64, false),
        column("args", DataType::Utf8, false),
        column("offset_ns", DataType::Int64, false),
        column("time", timestamp_type(), false),
    ]);
    fields.extend(stack_columns());
    fields
}

fn samples() -> Vec<Field> {
    let mut fields = slice_key();
    fields.push(column("sample_index", DataType::Int64, false));
    fields.extend(stack_columns());
    fields.extend([
        column("weight_ns", DataType::Int64, false),
        column("share", DataType::Int64, false),
        column("native", DataType::Boolean, false),
    ]);
    fields
}

fn traces() -> Vec<Field> {
    let string = |name: &str| column(name, DataType::Utf8, false);
    let int = |name: &str| column(name, DataType::Int64, false);
    let footer_int = |name: &str| column(name, DataType::Int64, true);
    vec![
        string("trace_id"),
        string("path"),
        int("file_bytes"),
        string("format_version"),
        string("aiocop_version"),
        string("python_version"),
        string("platform"),
        int("pid"),
        int("parent_pid"),
        string("role"),
        column("root_command", string_list_type(), false),
        column("argv", string_list_type(), false),
        column("start", timestamp_type(), false),
        int("threshold_ns"),
        int("trace_depth"),
        column("records_context", DataType::Boolean, false),
        int("sampling_after_ns"),
        int("sampling_interval_ns"),
        column("redacted", DataType::Boolean, false),
        column("cut_short", DataType::Boolean, false),
        footer_int("footer_slices"),
        footer_int("footer_events"),
        footer_int("footer_dropped_slices"),
        footer_int("footer_chunks"),
        footer_int("end_offset_ns"),
        int("chunks"),
        int("unreadable_chunks"),
        int("slices"),
        int("events"),
        int("samples"),
        int("dropped_slices"),
    ]
}

/// Since 1.2: one row per task seen in a trace of format 1.4 or later.
fn tasks() -> Vec<Field> {
    let time = |name: &str| column(name, timestamp_type(), true);
    let offset = |name: &str| column(name, DataType::Int64, true);
    vec![
        column("trace_id", DataType::Utf8, false),
        column("task", DataType::Utf8, false),
        column("coroutine", DataType::Utf8, false),
        column("parent", DataType::Utf8, true),
        column("route", DataType::Utf8, true),
        time("created"),
        offset("created_offset_ns"),
        time("first_step"),
        offset("first_step_offset_ns"),
        time("ended"),
        offset("ended_offset_ns"),
        column("outcome", DataType::Utf8, true),
        column("wall_ns", DataType::Int64, true),
        column("loop_ns", DataType::Int64, false),
        column("ready_wait_ns", DataType::Int64, false),
        column("waiting_ns", DataType::Int64, true),
        column("slice_count", DataType::Int64, false),
    ]
}
