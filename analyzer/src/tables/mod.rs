//! `export --format parquet`: every trace as tables (slices, events,
//! samples, traces) in Parquet files that DuckDB, polars, Spark and the rest
//! read as they are, for the questions a report does not answer.
//!
//! What it promises:
//!
//! - Streaming: a trace's chunks are read one at a time, in file order (a
//!   chunk's ids may be defined by an earlier one), and their rows written
//!   as record batches of at most [`BATCH_ROWS`] rows into row groups of at
//!   most [`ROW_GROUP_ROWS`] rows and [`ROW_GROUP_MEMORY_BYTES`] held:
//!   memory holds a chunk, a batch, a row group being encoded per table and
//!   the trace's dictionary, never the trace; and a trace's files are closed
//!   and new ones begun every [`PART_SLICES`] slices, so that what a writer
//!   keeps until its file closes is bounded too. Traces are
//!   exported in parallel, one per rayon thread.
//! - Layout: `DIR/<table>/label=<label>/host=<host>/<pid>-<start_unix_ns>.parquet`
//!   (the trace's first [`PART_SLICES`] slices, their events, samples and
//!   tasks), then `<pid>-<start_unix_ns>.part00001.parquet` and on,
//!   Hive partitions (a missing label or host is `__HIVE_DEFAULT_PARTITION__`,
//!   which readers take as null); strings dictionary-encoded, pages
//!   compressed with zstd, each file's key-value metadata naming its table
//!   and [`schema::SCHEMA_VERSION`]. docs/parquet-export.md documents the columns.
//! - Bad input as a report takes it: a damaged chunk is skipped with one
//!   warning naming the trace (its readable chunks' rows are written); a
//!   trace with nothing readable is an error, and none of its files is left.
//!   An output directory that exists and is not empty is refused unless
//!   `overwrite`, which replaces the tables' directories only, and only when
//!   they hold nothing but exported files (a user's `tasks/` package is
//!   never deleted).

pub mod rows;
pub mod schema;
pub mod task_rows;
pub mod trace_row;

use crate::aggregate::FileAggregate;
use crate::error::AnalyzeError;
use crate::identity::PathContext;
use crate::keys::GroupBy;
use crate::read::{check_readable, newer_minor_warning, trusted_footer};
use crate::resolve::SliceKeys;
use aiocop_trace::records::{Chunk, TraceHeader, READY_UNKNOWN};
use aiocop_trace::{Dictionary, MemoryBudget, ReadError, TraceFile};
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use rows::{SliceRows, Stacks, TraceContext};
use schema::{Table, SCHEMA_MINOR, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use task_rows::{TaskRows, TaskSlice};
use trace_row::{trace_row, ReadCounts};

/// Rows (of the slices, events and samples tables together; of the tasks
/// table alone) gathered before they are written as batches.
pub const BATCH_ROWS: usize = 64 * 1024;
/// Rows per row group at most: what a reader skips or reads in parallel,
/// and what the writer holds encoded before it writes.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;
/// What the writer of one table may hold for the row group it is encoding
/// (its pages, dictionaries and values not yet in a page, as it estimates
/// them) before the row group is written. Rows alone do not bound it: an
/// event's row holds its stack's frames, and a trace's events (1 slice in
/// 50 or so) made one row group that grew with the trace (12.6 MB held for
/// the 76,000 events of 4 M slices) until the file was closed.
///
/// A slice's row group of [`ROW_GROUP_ROWS`] holds 6 to 12 MB (the int
/// columns' dictionaries until they fall back to plain encoding): the bound
/// is above that, as smaller row groups make files a fifth larger.
pub const ROW_GROUP_MEMORY_BYTES: usize = 8 * 1024 * 1024;
/// Slices of a trace per part: its files are closed and new ones begun
/// after this many. A writer keeps until its file closes what the footer
/// needs (each row group's metadata and page index), a zstd context per
/// column, sized by the largest page it compressed, and the sparse tables'
/// open row groups (a fiftieth and a five-hundredth of the slices are
/// events and samples: they fill theirs slowly). With one file per trace
/// and table, an export's peak memory grew about 3 MB a million slices
/// (57/75/93 MB at 1/4/12 M; heaptrack's difference between 1 and 4 M:
/// +10.4 MB of zstd contexts of columns whose first page had been
/// compressed). Parts of one slices row group each ([`ROW_GROUP_ROWS`])
/// reach that steady state within the first part; the Parquet is no
/// larger (8.25 bytes a slice at 12 M, 8.3 before).
pub const PART_SLICES: u64 = ROW_GROUP_ROWS as u64;
/// zstd's level for the pages: 3, its default, compresses the repeated ids
/// and times of slices to a few bytes each without slowing the export.
const ZSTD_LEVEL: i32 = 3;
/// The Hive value of a missing partition value, which readers take as null.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// How an export runs.
pub struct ExportOptions {
    /// The output directory.
    pub output: PathBuf,
    /// Replace the tables of a directory that has them.
    pub overwrite: bool,
    /// The read's memory budget, for every trace.
    pub budget: Arc<MemoryBudget>,
}

/// One trace exported.
#[derive(Debug)]
pub struct TraceExport {
    pub path: PathBuf,
    pub read: ReadCounts,
    /// Bytes of the Parquet files written for it.
    pub written_bytes: u64,
    pub warnings: Vec<String>,
}

/// Prepares the output directory: created if missing; refused if it holds
/// anything, unless `overwrite`, which removes the tables' directories.
pub fn prepare_output(options: &ExportOptions) -> Result<(), AnalyzeError> {
    let out = &options.output;
    let failed = |source| AnalyzeError::Output { path: out.display().to_string(), source };
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return std::fs::create_dir_all(out).map_err(failed),
        Err(e) => return Err(failed(e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(AnalyzeError::Usage(format!(
                "'{}': the output must be a directory (--output DIR), and this is not one",
                out.display()
            )))
        }
        Ok(_) => {}
    }
    let empty = std::fs::read_dir(out).map_err(failed)?.next().is_none();
    if empty {
        return Ok(());
    }
    if !options.overwrite {
        return Err(AnalyzeError::Usage(format!(
            "'{}': the output directory is not empty; give an empty or new one, or --overwrite to replace its tables",
            out.display()
        )));
    }
    // Everything is checked before anything is removed: a directory that
    // merely shares a table's name (a project's `tasks/` package, given
    // `-o .`) is refused whole, never half deleted.
    let tables: Vec<PathBuf> = Table::ALL
        .iter()
        .map(|table| out.join(table.name()))
        .filter(|dir| std::fs::symlink_metadata(dir).is_ok())
        .collect();
    for dir in &tables {
        if let Some(foreign) = not_exported(dir).map_err(failed)? {
            return Err(AnalyzeError::Usage(format!(
                "'{}': not written by an export; --overwrite replaces exported tables only (move it, or give \
                 another directory)",
                foreign.display()
            )));
        }
    }
    for dir in &tables {
        std::fs::remove_dir_all(dir).map_err(failed)?;
    }
    Ok(())
}

/// The first path under a table's directory `dir` that an export does not
/// write (anything but `label=*/host=*/*.parquet` in real directories,
/// symlinks included), or None.
fn not_exported(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let is_real_dir = |path: &Path| std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir());
    let named =
        |path: &Path, prefix: &str| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix));
    if !is_real_dir(dir) {
        return Ok(Some(dir.to_path_buf()));
    }
    for label in std::fs::read_dir(dir)? {
        let label = label?.path();
        if !(named(&label, "label=") && is_real_dir(&label)) {
            return Ok(Some(label));
        }
        for host in std::fs::read_dir(&label)? {
            let host = host?.path();
            if !(named(&host, "host=") && is_real_dir(&host)) {
                return Ok(Some(host));
            }
            for file in std::fs::read_dir(&host)? {
                let file = file?.path();
                let is_parquet = file.extension().is_some_and(|e| e == "parquet")
                    && std::fs::symlink_metadata(&file).is_ok_and(|meta| meta.is_file());
                if !is_parquet {
                    return Ok(Some(file));
                }
            }
        }
    }
    Ok(None)
}

/// Exports the traces at `paths` into the prepared output, in parallel on
/// the current rayon pool; each trace's outcome in input order.
pub fn export_traces(paths: &[PathBuf], options: &ExportOptions) -> Vec<Result<TraceExport, AnalyzeError>> {
    paths.par_iter().map(|path| export_trace(path, options)).collect()
}

/// Names a trace across files and tables: host, pid and start.
pub fn trace_id(header: &TraceHeader) -> String {
    format!("{}:{}:{}", header.host, header.pid, header.start_unix_ns)
}

/// A Hive partition value: characters a path or a reader's parser would
/// take otherwise percent-encoded, a missing value Hive's null.
fn partition_value(value: Option<&str>) -> String {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return HIVE_NULL.to_owned() };
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"._-+@ ".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    // `.` and `..` are not names a directory can have.
    if encoded.chars().all(|c| c == '.') {
        encoded = encoded.replace('.', "%2E");
    }
    encoded
}

/// The file of part `part` of `table` for the trace with `header`, under
/// `out`. The first part keeps the name a trace's only file has.
fn table_path(out: &Path, table: Table, header: &TraceHeader, part: u64) -> PathBuf {
    let name = match part {
        0 => format!("{}-{}.parquet", header.pid, header.start_unix_ns),
        _ => format!("{}-{}.part{part:05}.parquet", header.pid, header.start_unix_ns),
    };
    out.join(table.name())
        .join(format!("label={}", partition_value(header.label.as_deref())))
        .join(format!("host={}", partition_value(Some(&header.host))))
        .join(name)
}

fn writer_properties(table: Table) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("zstd has level 3")))
        .set_dictionary_enabled(true)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_owned(), format!("{SCHEMA_VERSION}.{SCHEMA_MINOR}")),
            KeyValue::new(TABLE_KEY.to_owned(), table.name().to_owned()),
        ]));
    // Strings only: the int and time columns (keys, starts, durations) are
    // mostly distinct, so their dictionaries filled to the page limit (and
    // were held, with their hash tables, for the row group) before falling
    // back to plain pages, which zstd compresses as well.
    for field in table.schema().fields() {
        if !matches!(field.data_type(), DataType::Utf8 | DataType::List(_) | DataType::Map(..)) {
            properties = properties.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    properties.build()
}

/// One table's file of one trace, being written.
struct TableFile {
    path: PathBuf,
    writer: ArrowWriter<BufWriter<File>>,
}

impl TableFile {
    fn create(path: PathBuf, table: Table) -> Result<TableFile, AnalyzeError> {
        let failed = |source| AnalyzeError::Output { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        // Never into a file this run did not create: a second trace with
        // the same pid and start (the same file given twice) is refused.
        let file = File::create_new(&path).map_err(failed)?;
        let writer = ArrowWriter::try_new(BufWriter::new(file), table.schema(), Some(writer_properties(table)))
            .map_err(|e| parquet_error(&path, e))?;
        Ok(TableFile { path, writer })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), AnalyzeError> {
        self.writer.write(batch).map_err(|e| parquet_error(&self.path, e))?;
        if self.writer.memory_size() >= ROW_GROUP_MEMORY_BYTES {
            self.writer.flush().map_err(|e| parquet_error(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes the footer; the file's size.
    fn close(self) -> Result<u64, AnalyzeError> {
        let path = self.path;
        self.writer.close().map_err(|e| parquet_error(&path, e))?;
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| AnalyzeError::Output { path: path.display().to_string(), source: e })
    }
}

fn parquet_error(path: &Path, error: parquet::errors::ParquetError) -> AnalyzeError {
    let source = match error {
        parquet::errors::ParquetError::External(e) => std::io::Error::other(e.to_string()),
        other => std::io::Error::other(other.to_string()),
    };
    AnalyzeError::Output { path: path.display().to_string(), source }
}

/// The tables with rows for each part of a trace (the `traces` table has one row a trace).
const PART_TABLES: [Table; 4] = [Table::Slices, Table::Events, Table::Samples, Table::Tasks];

/// The files of one trace while its chunks are read: those of its current
/// part, one per table of [`PART_TABLES`], and every file created so far.
struct TraceFiles<'a> {
    out: &'a Path,
    header: &'a TraceHeader,
    part: u64,
    files: Vec<(Table, TableFile)>,
    created: Vec<PathBuf>,
    written_bytes: u64,
}

impl<'a> TraceFiles<'a> {
    fn new(out: &'a Path, header: &'a TraceHeader) -> Self {
        TraceFiles { out, header, part: 0, files: Vec::new(), created: Vec::new(), written_bytes: 0 }
    }

    fn create(&mut self, table: Table, part: u64) -> Result<TableFile, AnalyzeError> {
        let file = TableFile::create(table_path(self.out, table, self.header, part), table)?;
        self.created.push(file.path.clone());
        Ok(file)
    }

    /// Opens the files of the current part.
    fn open_part(&mut self) -> Result<(), AnalyzeError> {
        for table in PART_TABLES {
            let file = self.create(table, self.part)?;
            self.files.push((table, file));
        }
        Ok(())
    }

    /// Closes the current part's files, counting their bytes.
    fn close_part(&mut self) -> Result<(), AnalyzeError> {
        for (_, file) in std::mem::take(&mut self.files) {
            self.written_bytes += file.close()?;
        }
        Ok(())
    }

    /// Closes the current part and opens the next one.
    fn next_part(&mut self) -> Result<(), AnalyzeError> {
        self.close_part()?;
        self.part += 1;
        self.open_part()
    }

    /// Writes the trace's one row of the `traces` table, in a file of its own.
    fn write_trace_row(&mut self, row: &RecordBatch) -> Result<(), AnalyzeError> {
        let mut traces = self.create(Table::Traces, 0)?;
        traces.write(row)?;
        self.written_bytes += traces.close()?;
        Ok(())
    }

    /// Removes every file created, after an error.
    fn remove_created(self) {
        drop(self.files);
        for path in &self.created {
            let _ = std::fs::remove_file(path);
        }
    }

    fn write(&mut self, batches: [(Table, RecordBatch); 3]) -> Result<(), AnalyzeError> {
        for (table, batch) in batches {
            self.write_one(table, batch)?;
        }
        Ok(())
    }

    fn write_tasks(&mut self, tasks: &mut TaskRows) -> Result<(), AnalyzeError> {
        self.write_one(Table::Tasks, tasks.take())
    }

    fn write_one(&mut self, table: Table, batch: RecordBatch) -> Result<(), AnalyzeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let file = self.files.iter_mut().find(|(t, _)| *t == table).map(|(_, f)| f);
        file.expect("a file for each table written while reading").write(&batch)
    }
}

/// Exports one trace; on an error, removes the files it had created.
fn export_trace(path: &Path, options: &ExportOptions) -> Result<TraceExport, AnalyzeError> {
    let trace = TraceFile::open_within(path, options.budget.clone())?;
    if let (0, Some(damage)) = (trace.chunk_count(), trace.damage()) {
        return Err(AnalyzeError::DamagedBeforeAnyChunk { damage: damage.to_string() });
    }
    let mut files = TraceFiles::new(&options.output, trace.header());
    match write_trace(&trace, &mut files) {
        Ok((read, warnings)) => {
            Ok(TraceExport { path: path.to_path_buf(), read, written_bytes: files.written_bytes, warnings })
        }
        Err(error) => {
            files.remove_created();
            Err(error)
        }
    }
}

/// Writes the files of `trace`, part by part; what was read, and warnings.
fn write_trace(trace: &TraceFile, files: &mut TraceFiles) -> Result<(ReadCounts, Vec<String>), AnalyzeError> {
    files.open_part()?;
    let header = trace.header();
    let trace_id = trace_id(header);
    let path_context = PathContext::new(&Dictionary::new(), [], &header.process.sys_path);
    // The report's keys need its aggregate's dictionary, grown chunk by chunk.
    let mut definitions = FileAggregate::default();
    let by = GroupBy::EntryPoint;
    let mut stacks = Stacks::default();
    let mut rows = SliceRows::default();
    // Task timing is in format 1.4 and later; the report reads no tasks before.
    let timed = trace.format_version() >= (1, 4);
    let mut tasks = TaskRows::default();
    let mut read = ReadCounts::default();
    let mut first_error: Option<ReadError> = None;
    for index in 0..trace.chunk_count() {
        let counted = match trace.read_chunk_counted(index) {
            Ok(counted) => counted,
            Err(error) if error.is_over_memory_limit() => return Err(error.into()),
            Err(error) => {
                read.unreadable_chunks += 1;
                first_error.get_or_insert(error);
                continue;
            }
        };
        let chunk: &Chunk = &counted.chunk;
        definitions.dictionary.add(chunk);
        read.dropped_slices += chunk.dropped_slices;
        let context = TraceContext { trace_id: &trace_id, header, dictionary: &definitions.dictionary };
        let mut keys = SliceKeys::new(header, &definitions, &by, &path_context);
        let mut start_ns = chunk.base_offset_ns;
        let mut created = chunk.task_timing.created.iter().peekable();
        let mut ended = chunk.task_timing.ended.iter().peekable();
        for (in_chunk, slice) in chunk.slices.iter().enumerate() {
            if read.slices > 0 && read.slices.is_multiple_of(PART_SLICES) {
                files.write(rows.take())?;
                files.write_tasks(&mut tasks)?;
                files.next_part()?;
            }
            start_ns = start_ns.saturating_add(slice.start_delta_ns);
            let (times, cpu) = (chunk.sample_timing.of_slice(in_chunk), chunk.sample_cpu.of_slice(in_chunk));
            let timing = &chunk.task_timing;
            let ready_wait_ns = timing
                .ready
                .get(in_chunk)
                .filter(|ready| timed && ready.since != READY_UNKNOWN)
                .map(|ready| ready.wait_ns);
            let route = rows.push(
                &context,
                &mut stacks,
                &mut keys,
                &path_context,
                read.slices,
                start_ns,
                slice,
                (times, cpu),
                ready_wait_ns,
            );
            // The chunk's creations and ends are in slice order, as the report meets them.
            let created = created.next_if(|c| c.slice as usize == in_chunk);
            let ended = ended.next_if(|e| e.slice as usize == in_chunk).map(|e| e.outcome);
            if let (true, Some(task)) = (timed, slice.task) {
                let seen = TaskSlice {
                    task,
                    what: slice.what,
                    route,
                    start_ns,
                    duration_ns: slice.duration_ns,
                    ready_wait_ns,
                };
                tasks.push(&context, &seen, created, ended);
                if tasks.rows_held() >= BATCH_ROWS {
                    files.write_tasks(&mut tasks)?;
                }
            }
            read.slices += 1;
            read.events += slice.events.len() as u64;
            read.samples += slice.samples.len() as u64;
            if rows.rows_held() >= BATCH_ROWS {
                files.write(rows.take())?;
            }
        }
    }
    files.write(rows.take())?;
    let context = TraceContext { trace_id: &trace_id, header, dictionary: &definitions.dictionary };
    tasks.finish_open(&context);
    files.write_tasks(&mut tasks)?;
    if read.unreadable_chunks > 0 && read.unreadable_chunks == trace.chunk_count() as u64 {
        if let Some(error) = first_error.take() {
            return Err(AnalyzeError::NothingReadable { error, chunks: trace.chunk_count() });
        }
    }
    let mut warnings: Vec<String> = newer_minor_warning(trace).into_iter().collect();
    let footer = trusted_footer(trace, (read.unreadable_chunks == 0).then_some(read.slices));
    warnings.extend(footer.warning);
    warnings.extend(check_readable(trace, read.unreadable_chunks, first_error.map(|e| e.to_string())));

    files.close_part()?;
    files.write_trace_row(&trace_row(trace, &trace_id, footer.footer.as_ref(), &read))?;
    Ok((read, warnings))
}
