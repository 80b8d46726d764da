//! One CSV row per group, with the JSON's group fields as columns;
//! `top_events` as `name:count` pairs joined with `;`.

use super::{elapsed_cells, Exporter, Style};
use crate::report::Report;

pub struct CsvExporter;

pub const COLUMNS: [&str; 15] = [
    "rank",
    "key",
    "slices",
    "events",
    "severity_score",
    "severity_level",
    "exceeded",
    "total_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "top_events",
    "example_trace",
    "example_event",
];

impl Exporter for CsvExporter {
    fn render(&self, report: &Report, _style: Style) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut write = |record: Vec<String>| {
            writer.write_record(&record).expect("writing CSV to memory cannot fail");
        };
        write(COLUMNS.iter().map(|c| c.to_string()).collect());
        for row in &report.groups {
            let top_events: Vec<String> = row.top_events.iter().map(|e| format!("{}:{}", e.event, e.count)).collect();
            let mut record = vec![
                row.rank.to_string(),
                row.key.clone(),
                row.slices.to_string(),
                row.events.to_string(),
                row.severity_score.to_string(),
                row.severity_level.to_owned(),
                row.exceeded.to_string(),
            ];
            record.extend(elapsed_cells(row.elapsed_ms()));
            record.extend([top_events.join(";"), row.example_trace.clone(), row.example_event.clone()]);
            write(record);
        }
        let bytes = writer.into_inner().expect("flushing CSV to memory cannot fail");
        String::from_utf8(bytes).expect("CSV of strings is UTF-8")
    }
}
