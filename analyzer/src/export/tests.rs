//! Every format on one hand-made report, compared with exact text.

use super::*;
use crate::keys::GroupBy;
use crate::report::{
    CpuRow, Elapsed, EventCount, LoopRow, LoopTimeView, OptionsView, Report, Row, StallRow, StallTop, TotalsView,
    TraceFacts,
};
use aiocop_trace::SeverityLevel;

pub(crate) fn sample_report() -> Report {
    let row = |rank, key: &str, score, level: SeverityLevel, ms: [f64; 5], events: &[(&str, u64)]| Row {
        rank,
        key: key.to_owned(),
        slices: 3,
        events: events.iter().map(|e| e.1).sum(),
        severity_score: score,
        severity_level: level.as_str(),
        exceeded: 1,
        total_ms: ms[0],
        p50_ms: ms[1],
        p95_ms: ms[2],
        p99_ms: ms[3],
        max_ms: ms[4],
        busy_ms: ms[0],
        top_events: events.iter().map(|(e, c)| EventCount { event: (*e).to_owned(), count: *c }).collect(),
        example_trace: format!("{key} <- app.py:1:main"),
        example_event: "open(/etc/hosts, r)".to_owned(),
        level,
        elapsed: Elapsed::default(),
        busy_ns: 0,
    };
    let loop_row = |rank, key: &str, busy_ms: f64, share, io_ms: f64, samples, via: &[&'static str]| LoopRow {
        rank,
        key: key.to_owned(),
        busy_ms,
        share,
        slices: 3,
        io_ms,
        cpu_ms: ((busy_ms - io_ms) * 1000.0).round() / 1000.0,
        samples,
        via: via.to_vec(),
        example_trace: (via != ["what_ran"]).then(|| format!("{key} <- app.py:1:main")),
        busy_ns: 0,
    };
    Report {
        routes: Vec::new(),
        tasks: crate::report::TasksView {
            by: "coroutine",
            rows: vec![crate::tasks::TaskRow {
                key: "handle".to_owned(),
                tasks: 3,
                timed: 2,
                wall_p50_ms: 55.0,
                wall_p95_ms: 60.0,
                loop_ms: 5.0,
                ready_wait_p50_ms: 0.5,
                ready_wait_p95_ms: 1.0,
                waiting_ms: 50.0,
                cancelled: 1,
                raised: 0,
                eager: 0,
                ended_eagerly: 0,
            }],
            loop_lag: Some(lag(0.1)),
            loop_lag_by_second: vec![crate::tasks::LagSecond { second: 3, lag: lag(0.2) }],
            traces_without_task_timing: 0,
        },
        schema_version: 1,
        schema_minor: 3,
        by: "entry-point".to_owned(),
        loop_time: LoopTimeView {
            busy_ms: 9600.0,
            groups: vec![
                loop_row(1, "handle_cpu", 7000.0, 0.7292, 0.0, 0, &["what_ran"]),
                loop_row(2, "app.py:40:crunch", 1450.5, 0.1511, 0.0, 14, &["samples"]),
                loop_row(3, "app.py:12:fetch", 1000.0, 0.1042, 312.5, 0, &["events", "samples"]),
            ],
            groups_not_shown: 5,
            groups_not_shown_busy_ms: 149.5,
            long_ms: 2.0,
            long_slice_ms: 8000.0,
            long_slice_attributed_ms: 1600.0,
            long_slice_attributed_share: 0.2,
            samples: 14,
            traces_without_samples: 0,
            traces_with_guessed_stalls: 0,
            traces_with_untimed_samples: 0,
            traces_with_wall_clock_native: 0,
        },
        stalls: vec![StallRow {
            rank: 1,
            trace: "w.bin".to_owned(),
            thread: 1,
            start_s: 3.25,
            duration_ms: 200.125,
            slices: 10,
            top: vec![
                StallTop { key: "handle_cpu".to_owned(), busy_ms: 180.0 },
                StallTop { key: "app.py:12:fetch".to_owned(), busy_ms: 20.1 },
            ],
            alike: 1,
            alike_ms: 200.125,
        }],
        stalls_not_shown: 0,
        groups: vec![
            row(
                1,
                "app.py:12:fetch",
                150,
                SeverityLevel::High,
                [312.5, 101.25, 110.0, 110.0, 110.0],
                &[("time.sleep", 3)],
            ),
            row(
                2,
                "<frozen a|b>:3:load",
                31,
                SeverityLevel::Medium,
                [0.052, 0.011, 0.03, 0.03, 0.03],
                &[("open", 2), ("os.stat", 1), ("os.listdir", 1), ("glob.glob", 1)],
            ),
        ],
        groups_not_shown: 4,
        cpu_groups: vec![CpuRow {
            rank: 1,
            key: "app.py:40:crunch".to_owned(),
            slices: 2,
            samples: 14,
            total_ms: 450.0,
            p50_ms: 200.0,
            p95_ms: 250.0,
            p99_ms: 250.0,
            max_ms: 250.0,
            example_trace: "app.py:40:crunch <- app.py:1:main".to_owned(),
            elapsed: Elapsed::default(),
        }],
        cpu_groups_not_shown: 0,
        totals: TotalsView {
            traces: 1,
            slices: 1200,
            blocking_slices: 6,
            exceeded: 4,
            cpu_blocking: 2,
            events: 11,
            dropped: 3,
            dropped_events: 1,
            allowed_events: 0,
            allowed_by: Default::default(),
            traces_before_allowed: 1,
            duration_s: 12.5,
            groups: 6,
            cpu_groups: 1,
            stalls: 1,
            stall_ms: 200.125,
        },
        traces: vec![TraceFacts {
            path: "w.bin".to_owned(),
            format_version: "1.0".to_owned(),
            aiocop_version: "1.3.0".to_owned(),
            python_version: "3.12.1".to_owned(),
            platform: "linux".to_owned(),
            host: "web-1".to_owned(),
            pid: 7,
            parent_pid: 6,
            role: "spawn child".to_owned(),
            root_command: vec!["uvicorn".to_owned(), "app:app".to_owned(), "--workers".to_owned(), "2".to_owned()],
            label: None,
            threshold_ms: 100.0,
            start_unix_ns: 1_000_000_000,
            duration_s: 12.5,
            slices: 1200,
            samples: 14,
            chunks: 4,
            unreadable_chunks: 1,
            cut_short: true,
        }],
        options: OptionsView {
            threshold_ms: Some(50.0),
            since_s: Some(2.5),
            until_s: None,
            sort: "score",
            top: Some(2),
            long_ms: 2.0,
            ..OptionsView::default()
        },
        group_by: GroupBy::EntryPoint,
        csv_table: crate::report::CsvTable::Groups,
        pictures: crate::report::Pictures::default(),
    }
}

fn render(format: ReportFormat, style: Style) -> String {
    exporter(format).render(&sample_report(), style)
}

fn render_report(report: &Report, format: ReportFormat) -> String {
    exporter(format).render(report, Style::default())
}

/// A loop lag distribution with this p50.
fn lag(p50_ms: f64) -> crate::tasks::LagSummary {
    crate::tasks::LagSummary { slices: 1200, p50_ms, p95_ms: 1.0, p99_ms: 5.0, max_ms: 30.0 }
}

#[test]
fn the_table_shows_rows_examples_cpu_rows_and_totals() {
    let expected = r#"Loop time: 9.600 s busy of 12.500 s recorded; 20% of the time in slices of 2 ms or more (8.000 s) is explained by a stack
Not explained by a stack: 6.400 s of slices of 2 ms or more had neither blocking I/O nor CPU samples; their time is under what ran
┌───┬────────────────────┬──────────┬───────┬─────────┬──────────┬────────┬─────────┬────────────────────┐
│ # ┆ entry point        ┆  busy ms ┆ share ┆   io ms ┆   cpu ms ┆ slices ┆ samples ┆ from               │
╞═══╪════════════════════╪══════════╪═══════╪═════════╪══════════╪════════╪═════════╪════════════════════╡
│ 1 ┆ handle_cpu         ┆ 7000.000 ┆ 72.9% ┆   0.000 ┆ 7000.000 ┆      3 ┆       0 ┆ what ran           │
│ 2 ┆ app.py:40:crunch   ┆ 1450.500 ┆ 15.1% ┆   0.000 ┆ 1450.500 ┆      3 ┆      14 ┆ samples            │
│ 3 ┆ app.py:12:fetch    ┆ 1000.000 ┆ 10.4% ┆ 312.500 ┆  687.500 ┆      3 ┆       0 ┆ events+samples     │
└───┴────────────────────┴──────────┴───────┴─────────┴──────────┴────────┴─────────┴────────────────────┘
… and 5 more, 149.500 ms (--top 0 shows all)

Stalls: 1 stall of at least the threshold (50 ms) without getting back to waiting for I/O, 200.125 ms in all
┌───┬─────────┬─────────────┬────────┬──────────────────────────────────────────────────┐
│ # ┆ start s ┆ duration ms ┆ slices ┆ most time in                                     │
╞═══╪═════════╪═════════════╪════════╪══════════════════════════════════════════════════╡
│ 1 ┆   3.250 ┆     200.125 ┆     10 ┆ handle_cpu 180.000 ms, app.py:12:fetch 20.100 ms │
└───┴─────────┴─────────────┴────────┴──────────────────────────────────────────────────┘

Loop lag: how long ready callbacks waited for the loop, over 1200 slices: p50 0.100 ms, p95 1.000 ms, p99 5.000 ms, max 30.000 ms.
Tasks by coroutine: timed tasks were created and ended in the trace (and the time window); wall is from creation to the end of the last step, loop ms its steps' time (mean), ready the time its steps waited for the loop once ready, waiting ms the rest (I/O, timers, other tasks; mean). Milliseconds.
┌────────────────────┬───────┬───────┬──────────┬──────────┬─────────┬───────────┬───────────┬────────────┐
│ coroutine          ┆ tasks ┆ timed ┆ wall p50 ┆ wall p95 ┆ loop ms ┆ ready p50 ┆ ready p95 ┆ waiting ms │
╞════════════════════╪═══════╪═══════╪══════════╪══════════╪═════════╪═══════════╪═══════════╪════════════╡
│ handle             ┆     3 ┆     2 ┆   55.000 ┆   60.000 ┆   5.000 ┆     0.500 ┆     1.000 ┆     50.000 │
└────────────────────┴───────┴───────┴──────────┴──────────┴─────────┴───────────┴───────────┴────────────┘

Blocking I/O by entry point:
┌───┬─────────────────────┬────────┬────────┬───────┬────────┬──────┬──────────┬─────────┬─────────┬─────────┬─────────┬───────────────────────────────────────┐
│ # ┆ entry point         ┆ slices ┆ events ┆ score ┆ level  ┆ over ┆ total ms ┆  p50 ms ┆  p95 ms ┆  p99 ms ┆  max ms ┆ top events                            │
╞═══╪═════════════════════╪════════╪════════╪═══════╪════════╪══════╪══════════╪═════════╪═════════╪═════════╪═════════╪═══════════════════════════════════════╡
│ 1 ┆ app.py:12:fetch     ┆      3 ┆      3 ┆   150 ┆ high   ┆    1 ┆  312.500 ┆ 101.250 ┆ 110.000 ┆ 110.000 ┆ 110.000 ┆ time.sleep ×3                         │
│ 2 ┆ <frozen a|b>:3:load ┆      3 ┆      5 ┆    31 ┆ medium ┆    1 ┆    0.052 ┆   0.011 ┆   0.030 ┆   0.030 ┆   0.030 ┆ open ×2, os.stat ×1, os.listdir ×1, … │
└───┴─────────────────────┴────────┴────────┴───────┴────────┴──────┴──────────┴─────────┴─────────┴─────────┴─────────┴───────────────────────────────────────┘
… and 4 more (--top 0 shows all)

Example traces (innermost frame first):
1. app.py:12:fetch: open(/etc/hosts, r)
        app.py:12:fetch
     <- app.py:1:main
2. <frozen a|b>:3:load: open(/etc/hosts, r)
        <frozen a|b>:3:load
     <- app.py:1:main

CPU-blocking slices (over the threshold, no blocking I/O), by most sampled frame:
┌───┬────────────────────┬────────┬─────────┬──────────┬─────────┬─────────┬─────────┬─────────┐
│ # ┆ most sampled frame ┆ slices ┆ samples ┆ total ms ┆  p50 ms ┆  p95 ms ┆  p99 ms ┆  max ms │
╞═══╪════════════════════╪════════╪═════════╪══════════╪═════════╪═════════╪═════════╪═════════╡
│ 1 ┆ app.py:40:crunch   ┆      2 ┆      14 ┆  450.000 ┆ 200.000 ┆ 250.000 ┆ 250.000 ┆ 250.000 │
└───┴────────────────────┴────────┴─────────┴──────────┴─────────┴─────────┴─────────┴─────────┘

Slices: 1200 in 12.500 s recorded from 2.5 s to the end, 4 over the threshold (re-evaluated at 50 ms)
Blocking I/O: 6 slices, 11 events
CPU-blocking: 2 slices over the threshold without blocking I/O; most at app.py:40:crunch (2 slices)
Stalls: 1, 200.125 ms
Dropped by the recorder: 3 slices, 1 event past 50 in a slice
Allowed by an allow-list: not recorded (1 trace of format before 1.3)
Trace 'w.bin': label none, host web-1, Python 3.12.1, threshold 100 ms, pid 7 (spawn child of pid 6), cut short, 1 of 4 chunks unreadable
"#;
    assert_eq!(render(ReportFormat::Table, Style::default()), expected);
}

#[test]
fn json_is_the_serde_form_in_field_order() {
    let expected = r#"{
  "schema_version": 1,
  "schema_minor": 3,
  "by": "entry-point",
  "loop_time": {
    "busy_ms": 9600.0,
    "groups": [
      {
        "rank": 1,
        "key": "handle_cpu",
        "busy_ms": 7000.0,
        "share": 0.7292,
        "slices": 3,
        "io_ms": 0.0,
        "cpu_ms": 7000.0,
        "samples": 0,
        "via": [
          "what_ran"
        ],
        "example_trace": null
      },
      {
        "rank": 2,
        "key": "app.py:40:crunch",
        "busy_ms": 1450.5,
        "share": 0.1511,
        "slices": 3,
        "io_ms": 0.0,
        "cpu_ms": 1450.5,
        "samples": 14,
        "via": [
          "samples"
        ],
        "example_trace": "app.py:40:crunch <- app.py:1:main"
      },
      {
        "rank": 3,
        "key": "app.py:12:fetch",
        "busy_ms": 1000.0,
        "share": 0.1042,
        "slices": 3,
        "io_ms": 312.5,
        "cpu_ms": 687.5,
        "samples": 0,
        "via": [
          "events",
          "samples"
        ],
        "example_trace": "app.py:12:fetch <- app.py:1:main"
      }
    ],
    "groups_not_shown": 5,
    "groups_not_shown_busy_ms": 149.5,
    "long_ms": 2.0,
    "long_slice_ms": 8000.0,
    "long_slice_attributed_ms": 1600.0,
    "long_slice_attributed_share": 0.2,
    "samples": 14,
    "traces_without_samples": 0,
    "traces_with_guessed_stalls": 0
  },
  "tasks": {
    "by": "coroutine",
    "rows": [
      {
        "key": "handle",
        "tasks": 3,
        "timed": 2,
        "wall_p50_ms": 55.0,
        "wall_p95_ms": 60.0,
        "loop_ms": 5.0,
        "ready_wait_p50_ms": 0.5,
        "ready_wait_p95_ms": 1.0,
        "waiting_ms": 50.0,
        "cancelled": 1,
        "raised": 0,
        "eager": 0,
        "ended_eagerly": 0
      }
    ],
    "loop_lag": {
      "slices": 1200,
      "p50_ms": 0.1,
      "p95_ms": 1.0,
      "p99_ms": 5.0,
      "max_ms": 30.0
    },
    "loop_lag_by_second": [
      {
        "second": 3,
        "slices": 1200,
        "p50_ms": 0.2,
        "p95_ms": 1.0,
        "p99_ms": 5.0,
        "max_ms": 30.0
      }
    ],
    "traces_without_task_timing": 0
  },
  "stalls": [
    {
      "rank": 1,
      "trace": "w.bin",
      "thread": 1,
      "start_s": 3.25,
      "duration_ms": 200.125,
      "slices": 10,
      "top": [
        {
          "key": "handle_cpu",
          "busy_ms": 180.0
        },
        {
          "key": "app.py:12:fetch",
          "busy_ms": 20.1
        }
      ],
      "alike": 1,
      "alike_ms": 200.125
    }
  ],
  "stalls_not_shown": 0,
  "groups": [
    {
      "rank": 1,
      "key": "app.py:12:fetch",
      "slices": 3,
      "events": 3,
      "severity_score": 150,
      "severity_level": "high",
      "exceeded": 1,
      "total_ms": 312.5,
      "p50_ms": 101.25,
      "p95_ms": 110.0,
      "p99_ms": 110.0,
      "max_ms": 110.0,
      "busy_ms": 312.5,
      "top_events": [
        {
          "event": "time.sleep",
          "count": 3
        }
      ],
      "example_trace": "app.py:12:fetch <- app.py:1:main",
      "example_event": "open(/etc/hosts, r)"
    },
    {
      "rank": 2,
      "key": "<frozen a|b>:3:load",
      "slices": 3,
      "events": 5,
      "severity_score": 31,
      "severity_level": "medium",
      "exceeded": 1,
      "total_ms": 0.052,
      "p50_ms": 0.011,
      "p95_ms": 0.03,
      "p99_ms": 0.03,
      "max_ms": 0.03,
      "busy_ms": 0.052,
      "top_events": [
        {
          "event": "open",
          "count": 2
        },
        {
          "event": "os.stat",
          "count": 1
        },
        {
          "event": "os.listdir",
          "count": 1
        },
        {
          "event": "glob.glob",
          "count": 1
        }
      ],
      "example_trace": "<frozen a|b>:3:load <- app.py:1:main",
      "example_event": "open(/etc/hosts, r)"
    }
  ],
  "groups_not_shown": 4,
  "cpu_groups": [
    {
      "rank": 1,
      "key": "app.py:40:crunch",
      "slices": 2,
      "samples": 14,
      "total_ms": 450.0,
      "p50_ms": 200.0,
      "p95_ms": 250.0,
      "p99_ms": 250.0,
      "max_ms": 250.0,
      "example_trace": "app.py:40:crunch <- app.py:1:main"
    }
  ],
  "cpu_groups_not_shown": 0,
  "totals": {
    "traces": 1,
    "slices": 1200,
    "blocking_slices": 6,
    "exceeded": 4,
    "cpu_blocking": 2,
    "events": 11,
    "dropped": 3,
    "dropped_events": 1,
    "allowed_events": 0,
    "allowed_by": {},
    "traces_before_allowed": 1,
    "duration_s": 12.5,
    "groups": 6,
    "cpu_groups": 1,
    "stalls": 1,
    "stall_ms": 200.125
  },
  "traces": [
    {
      "path": "w.bin",
      "format_version": "1.0",
      "aiocop_version": "1.3.0",
      "python_version": "3.12.1",
      "platform": "linux",
      "host": "web-1",
      "pid": 7,
      "parent_pid": 6,
      "role": "spawn child",
      "root_command": [
        "uvicorn",
        "app:app",
        "--workers",
        "2"
      ],
      "label": null,
      "threshold_ms": 100.0,
      "start_unix_ns": 1000000000,
      "duration_s": 12.5,
      "slices": 1200,
      "samples": 14,
      "chunks": 4,
      "unreadable_chunks": 1,
      "cut_short": true
    }
  ],
  "options": {
    "threshold_ms": 50.0,
    "since_s": 2.5,
    "until_s": null,
    "exceeded_only": false,
    "min_severity": null,
    "ignore": [],
    "label": null,
    "app_roots": [],
    "sort": "score",
    "top": 2,
    "long_ms": 2.0
  }
}
"#;
    assert_eq!(render(ReportFormat::Json, Style::default()), expected);
}

#[test]
fn csv_quotes_fields_with_commas() {
    let expected = r#"rank,key,slices,events,severity_score,severity_level,exceeded,total_ms,p50_ms,p95_ms,p99_ms,max_ms,top_events,example_trace,example_event,busy_ms
1,app.py:12:fetch,3,3,150,high,1,312.500,101.250,110.000,110.000,110.000,time.sleep:3,app.py:12:fetch <- app.py:1:main,"open(/etc/hosts, r)",312.500
2,<frozen a|b>:3:load,3,5,31,medium,1,0.052,0.011,0.030,0.030,0.030,open:2;os.stat:1;os.listdir:1;glob.glob:1,<frozen a|b>:3:load <- app.py:1:main,"open(/etc/hosts, r)",0.052
"#;
    assert_eq!(render(ReportFormat::Csv, Style::default()), expected);
}

#[test]
fn markdown_escapes_pipes_and_keeps_tags_as_code() {
    let expected = r#"**Loop time**: 9.600 s busy of 12.500 s recorded; 20% of the time in slices of 2 ms or more (8.000 s) is explained by a stack

Not explained by a stack: 6.400 s of slices of 2 ms or more had neither blocking I/O nor CPU samples; their time is under what ran

| # | entry point | busy ms | share | io ms | cpu ms | slices | samples | from |
|--:|:--|--:|--:|--:|--:|--:|--:|:--|
| 1 | `handle_cpu` | 7000.000 | 72.9% | 0.000 | 7000.000 | 3 | 0 | what ran |
| 2 | `app.py:40:crunch` | 1450.500 | 15.1% | 0.000 | 1450.500 | 3 | 14 | samples |
| 3 | `app.py:12:fetch` | 1000.000 | 10.4% | 312.500 | 687.500 | 3 | 0 | events+samples |

… and 5 more, 149.500 ms.

**Stalls**: 1 stall of at least the threshold (50 ms) without getting back to waiting for I/O, 200.125 ms in all

| # | trace, thread | start s | duration ms | slices | most time in |
|--:|:--|--:|--:|--:|:--|
| 1 | `w.bin, 1` | 3.250 | 200.125 | 10 | handle_cpu 180.000 ms, app.py:12:fetch 20.100 ms |

**Loop lag**: how long ready callbacks waited for the loop, over 1200 slices: p50 0.100 ms, p95 1.000 ms, p99 5.000 ms, max 30.000 ms.

**Tasks** by coroutine: timed tasks were created and ended in the trace (and the time window); wall is from creation to the end of the last step, loop ms its steps' time (mean), ready the time its steps waited for the loop once ready, waiting ms the rest (I/O, timers, other tasks; mean). Milliseconds.

| coroutine | tasks | timed | wall p50 | wall p95 | loop ms | ready p50 | ready p95 | waiting ms | cancelled | raised |
|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
| `handle` | 3 | 2 | 55.000 | 60.000 | 5.000 | 0.500 | 1.000 | 50.000 | 1 | 0 |

**Blocking I/O** by entry point:

| # | entry point | slices | events | score | level | over | total ms | p50 ms | p95 ms | p99 ms | max ms | top events |
|--:|:--|--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|:--|
| 1 | `app.py:12:fetch` | 3 | 3 | 150 | high | 1 | 312.500 | 101.250 | 110.000 | 110.000 | 110.000 | time.sleep ×3 |
| 2 | `<frozen a\|b>:3:load` | 3 | 5 | 31 | medium | 1 | 0.052 | 0.011 | 0.030 | 0.030 | 0.030 | open ×2, os.stat ×1, os.listdir ×1, … |

… and 4 more.

**CPU-blocking slices** (over the threshold, no blocking I/O), by most sampled frame:

| # | most sampled frame | slices | samples | total ms | p50 ms | p95 ms | p99 ms | max ms |
|--:|:--|--:|--:|--:|--:|--:|--:|--:|
| 1 | `app.py:40:crunch` | 2 | 14 | 450.000 | 200.000 | 250.000 | 250.000 | 250.000 |

- Slices: 1200 in 12.500 s recorded from 2.5 s to the end, 4 over the threshold (re-evaluated at 50 ms)
- Blocking I/O: 6 slices, 11 events
- CPU-blocking: 2 slices over the threshold without blocking I/O; most at app.py:40:crunch (2 slices)
- Stalls: 1, 200.125 ms
- Dropped by the recorder: 3 slices, 1 event past 50 in a slice
- Allowed by an allow-list: not recorded (1 trace of format before 1.3)
- Trace 'w.bin': label none, host web-1, Python 3.12.1, threshold 100 ms, pid 7 (spawn child of pid 6), cut short, 1 of 4 chunks unreadable
"#;
    assert_eq!(render(ReportFormat::Markdown, Style::default()), expected);
}

/// Every line of `text` fits in `width` columns.
fn assert_fits(text: &str, width: usize) {
    for line in text.lines() {
        assert!(fit::width_of(line) <= width, "{} columns, over {width}: {line}\n{text}", fit::width_of(line));
    }
}

/// The sample report with keys as long as a real deployment's.
fn long_keys_report() -> Report {
    let mut report = sample_report();
    let long = "/srv/deploy/releases/2026-12-01/shop/views/checkout.py:30:resolve";
    report.groups[0].key = long.to_owned();
    report.groups[0].example_trace = format!("{long} <- /srv/deploy/releases/2026-12-01/shop/app.py:1:main");
    report.loop_time.groups[2].key = long.to_owned();
    report.stalls[0].top[1].key = long.to_owned();
    report
}

#[test]
fn a_terminal_table_fits_100_columns_with_the_main_columns() {
    let text =
        exporter(ReportFormat::Table).render(&long_keys_report(), Style { width: Some(100), ..Style::default() });
    assert_fits(&text, 100);
    // The key keeps its file, line and function; no word is cut.
    assert!(text.contains("┆ …/views/checkout.py:30:resolve ┆"), "{text}");
    assert!(text.contains("┆ open ×2, os.stat ×1, │"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn a_terminal_table_at_160_columns_keeps_whole_keys() {
    let text =
        exporter(ReportFormat::Table).render(&long_keys_report(), Style { width: Some(160), ..Style::default() });
    assert_fits(&text, 160);
    assert!(text.contains("/srv/deploy/releases/2026-12-01/shop/views/checkout.py:30:resolve"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn wide_shows_every_column_on_a_terminal() {
    let narrow = exporter(ReportFormat::Table).render(&sample_report(), Style { width: Some(160), ..Style::default() });
    let wide = exporter(ReportFormat::Table)
        .render(&sample_report(), Style { width: Some(160), wide: true, ..Style::default() });
    for title in ["io ms", "cpu ms", "┆ events ┆", "┆ over ┆", "p50 ms", "p99 ms"] {
        assert!(!narrow.contains(title) && wide.contains(title), "{title}\n{narrow}\n{wide}");
    }
    assert_fits(&wide, 160);
}

#[test]
fn colour_is_bold_headers_and_red_or_yellow_levels() {
    let coloured = render(ReportFormat::Table, Style { color: true, width: None, wide: false });
    let plain = render(ReportFormat::Table, Style::default());
    // Without its escapes, the coloured table is the plain one.
    let mut stripped = String::new();
    let mut rest = coloured.as_str();
    while let Some(at) = rest.find('\x1b') {
        stripped.push_str(&rest[..at]);
        let end = rest[at..].find('m').expect("an escape ends with m");
        rest = &rest[at + end + 1..];
    }
    stripped.push_str(rest);
    assert_eq!(stripped, plain);
    assert!(coloured.starts_with("\x1b[1mLoop time\x1b[0m: 9.600 s busy"), "{coloured}");
    assert!(coloured.contains("\n\x1b[1mStalls\x1b[0m: 1 stall"));
    // The blocking I/O table starts after its title.
    let lines: Vec<&str> = coloured.lines().skip_while(|l| !l.contains("Blocking I/O\x1b[0m by")).collect();
    assert!(lines[2].starts_with("│\x1b[1m # \x1b[0m┆\x1b[1m entry point         \x1b[0m┆"), "{}", lines[2]);
    assert!(lines[4].contains("┆\x1b[38;5;9m\x1b[1m high   \x1b[0m┆"), "{}", lines[4]);
    assert!(lines[5].contains("┆\x1b[38;5;11m medium \x1b[39m┆"), "{}", lines[5]);
    assert!(coloured.contains("\n\x1b[1mExample traces\x1b[0m (innermost frame first):\n"));
    assert!(coloured.contains("\n\x1b[1mCPU-blocking slices\x1b[0m (over the threshold"));
    assert!(!plain.contains('\x1b'));
}

#[test]
fn empty_reports_say_so() {
    let mut report = sample_report();
    report.groups.clear();
    report.groups_not_shown = 0;
    report.cpu_groups.clear();
    report.totals.groups = 0;
    report.loop_time.groups.clear();
    report.loop_time.groups_not_shown = 0;
    report.stalls.clear();
    report.totals.stalls = 0;
    report.totals.stall_ms = 0.0;
    let table = exporter(ReportFormat::Table).render(&report, Style::default());
    let after_loop_time = |text: &str, heading: &str| text[text.find(heading).expect(heading)..].to_owned();
    assert!(
        after_loop_time(&table, "No slice")
            .starts_with("No slice recorded.\n\nStalls: 0 stalls of at least the threshold (50 ms)"),
        "{table}"
    );
    assert!(
        after_loop_time(&table, "Blocking I/O by")
            .starts_with("Blocking I/O by entry point:\nNo blocking I/O recorded.\n\nSlices: 1200 in 12.500 s"),
        "{table}"
    );
    let markdown = exporter(ReportFormat::Markdown).render(&report, Style::default());
    assert!(
        after_loop_time(&markdown, "**Blocking I/O**")
            .starts_with("**Blocking I/O** by entry point:\n\nNo blocking I/O recorded.\n\n- Slices: 1200"),
        "{markdown}"
    );
    // Groups exist, but none at the asked severity.
    report.totals.groups = 2;
    let table = exporter(ReportFormat::Table).render(&report, Style::default());
    assert!(table.contains("\nBlocking I/O by entry point:\nNo blocking I/O at this severity.\n"), "{table}");
    let csv = exporter(ReportFormat::Csv).render(&report, Style::default());
    assert_eq!(csv.lines().count(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&exporter(ReportFormat::Json).render(&report, Style::default())).unwrap();
    assert_eq!(json["groups"], serde_json::json!([]));
}

#[test]
fn traces_without_samples_are_said_to_be_missing_them() {
    let mut report = sample_report();
    assert!(!render(ReportFormat::Table, Style::default()).contains("Samples missing"));
    report.loop_time.traces_without_samples = 1;
    let table = exporter(ReportFormat::Table).render(&report, Style::default());
    assert!(
        table.contains("\nSamples missing: the trace has no CPU samples (recorded without sampling, or before it existed), so time without blocking I/O goes to what ran (a coroutine or callback), not to a line\n"),
        "{table}"
    );
    report.traces.push(report.traces[0].clone());
    let markdown = exporter(ReportFormat::Markdown).render(&report, Style::default());
    assert!(markdown.contains("\n\nSamples missing: 1 of the 2 traces have no CPU samples"), "{markdown}");
    report.loop_time.traces_without_samples = 2;
    let markdown = exporter(ReportFormat::Markdown).render(&report, Style::default());
    assert!(markdown.contains("\n\nSamples missing: none of the 2 traces has CPU samples"), "{markdown}");
}

#[test]
fn stalls_cut_by_gaps_are_said_to_be_guessed_once() {
    let mut report = sample_report();
    assert!(!render(ReportFormat::Table, Style::default()).contains("Stalls guessed"));
    report.loop_time.traces_with_guessed_stalls = 1;
    let table = exporter(ReportFormat::Table).render(&report, Style::default());
    assert_eq!(table.matches("Stalls guessed").count(), 1, "{table}");
    assert!(
        table.contains("\nStalls guessed: the trace does not record its loop's iterations (recorded before format 1.3, or by uvloop, whose iterations are not visible)"),
        "{table}"
    );
    report.traces.push(report.traces[0].clone());
    let markdown = exporter(ReportFormat::Markdown).render(&report, Style::default());
    assert!(
        markdown.contains("\n\nStalls guessed: 1 of the 2 traces do not record their loop's iterations"),
        "{markdown}"
    );
}

#[test]
fn stalls_name_their_trace_and_thread_when_there_are_several() {
    let mut report = sample_report();
    report.traces.push(TraceFacts { path: "v.bin".to_owned(), ..report.traces[0].clone() });
    let table = exporter(ReportFormat::Table).render(&report, Style::default());
    assert!(table.contains("│ # ┆ trace, thread      ┆ start s ┆ duration ms ┆ slices ┆ most time in "), "{table}");
    assert!(
        table.contains("│ 1 ┆ w.bin, 1           ┆   3.250 ┆     200.125 ┆     10 ┆ handle_cpu 180.000 ms"),
        "{table}"
    );
    // One trace, one thread: no such column.
    assert!(!render(ReportFormat::Table, Style::default()).contains("trace, thread"));
}

#[test]
fn allowed_events_are_counted_by_entry_and_old_traces_said_to_lack_them() {
    let mut report = sample_report();
    report.totals.traces = 3;
    report.totals.allowed_events = 4;
    report.totals.allowed_by = [("alembic.*".to_owned(), 3), ("app.config:load".to_owned(), 1)].into();
    let text = render_report(&report, ReportFormat::Table);
    assert!(
        text.contains(
            "Allowed by an allow-list: 4 of the blocking events: alembic.* 3, app.config:load 1 \
             (not recorded in 1 trace of format before 1.3)\n"
        ),
        "{text}"
    );
    report.totals.traces_before_allowed = 0;
    assert!(render_report(&report, ReportFormat::Table).contains("app.config:load 1\n"));
    report.totals.allowed_events = 0;
    report.totals.allowed_by.clear();
    assert!(!render_report(&report, ReportFormat::Table).contains("Allowed by"), "nothing allowed, nothing lacking");
}

#[test]
fn alike_stalls_show_how_many_and_their_time_in_all() {
    let mut report = sample_report();
    assert!(!render(ReportFormat::Table, Style::default()).contains("alike"));
    report.stalls[0].alike = 50;
    report.stalls[0].alike_ms = 9_000.5;
    let table = exporter(ReportFormat::Table).render(&report, Style::default());
    assert!(table.contains("stalls alike (one trace and thread, the same groups most in them) are one row"), "{table}");
    assert!(table.contains("│ # ┆ start s ┆ duration ms ┆ slices ┆ alike ┆ alike ms ┆ most time in "), "{table}");
    assert!(
        table.contains("│ 1 ┆   3.250 ┆     200.125 ┆     10 ┆    50 ┆ 9000.500 ┆ handle_cpu 180.000 ms"),
        "{table}"
    );
    let markdown = exporter(ReportFormat::Markdown).render(&report, Style::default());
    assert!(markdown.contains("| 1 | `w.bin, 1` | 3.250 | 200.125 | 10 | 50 | 9000.500 | handle_cpu"), "{markdown}");
}

#[test]
fn helpers() {
    assert_eq!(
        [0.0, 0.0004, 0.2, 0.7292, 0.99951, 1.0].map(fmt_share),
        ["0%", "<0.1%", "20%", "72.9%", "100%", "100%"]
    );
    assert_eq!(fmt_short_ms(100.0), "100");
    assert_eq!(fmt_short_ms(0.5), "0.5");
    assert_eq!(fmt_short_ms(2.125), "2.125");
    assert_eq!(fmt_ms(0.0005), "0.001");
    assert_eq!(
        (count(1, "slice"), count(0, "slice"), count(2, "event")),
        ("1 slice".to_owned(), "0 slices".to_owned(), "2 events".to_owned())
    );
}

#[test]
fn csv_writes_the_loop_time_stalls_tasks_or_loop_lag_when_asked() {
    let mut report = sample_report();
    report.csv_table = crate::report::CsvTable::LoopTime;
    assert_eq!(
        exporter(ReportFormat::Csv).render(&report, Style::default()),
        "rank,key,busy_ms,share,slices,io_ms,cpu_ms,samples,via,example_trace
1,handle_cpu,7000.000,0.7292,3,0.000,7000.000,0,what_ran,
2,app.py:40:crunch,1450.500,0.1511,3,0.000,1450.500,14,samples,app.py:40:crunch <- app.py:1:main
3,app.py:12:fetch,1000.000,0.1042,3,312.500,687.500,0,events+samples,app.py:12:fetch <- app.py:1:main
"
    );
    report.csv_table = crate::report::CsvTable::Tasks;
    assert_eq!(
        exporter(ReportFormat::Csv).render(&report, Style::default()),
        "key,tasks,timed,wall_p50_ms,wall_p95_ms,loop_ms,ready_wait_p50_ms,ready_wait_p95_ms,waiting_ms,cancelled,raised,by
handle,3,2,55.000,60.000,5.000,0.500,1.000,50.000,1,0,coroutine
"
    );
    report.csv_table = crate::report::CsvTable::LoopLag;
    assert_eq!(
        exporter(ReportFormat::Csv).render(&report, Style::default()),
        "second,slices,p50_ms,p95_ms,p99_ms,max_ms
3,1200,0.200,1.000,5.000,30.000
"
    );
    report.csv_table = crate::report::CsvTable::Stalls;
    assert_eq!(
        exporter(ReportFormat::Csv).render(&report, Style::default()),
        "rank,trace,thread,start_s,duration_ms,slices,top,alike,alike_ms
1,w.bin,1,3.250000,200.125,10,handle_cpu:180.000;app.py:12:fetch:20.100,1,200.125
"
    );
}
