-- The report's Loop time table in Spark SQL: loop_time.sql (DuckDB) with Spark's words
-- for the same steps, and the same arithmetic, commented there. The tables are
-- spark.read.parquet("EXPORT/<table>") as temporary views (tests/test_parquet_export.py).
--   DuckDB                                   Spark
--   list(struct_pack(a, b) ORDER BY a, b)    array_sort(collect_list(named_struct('a', a, 'b', b)))
--   x::VARCHAR, HUGEINT                      cast(x AS string), decimal(38, 0)
--   a // b                                   a div b
-- concat_ws takes strings only in Spark (ANSI mode, its default from 4.0): casts.
WITH io_slices AS (
    SELECT trace_id, slice_index,
           array_sort(collect_list(named_struct('event_id', event_id, 'stack_id', stack_id))) AS signature
    FROM events GROUP BY trace_id, slice_index
), io_groups AS (
    SELECT concat_ws('|', 'io', s.trace_id, cast(i.signature AS string), s.what,
                     cast(s.exceeded AS string)) AS group_id,
           s.trace_id, sum(s.duration_ns) AS busy_ns, any_value(s.slice_index) AS slice_index
    FROM io_slices i JOIN slices s USING (trace_id, slice_index)
    GROUP BY s.trace_id, i.signature, s.what, s.exceeded
), io_parts AS (
    SELECT g.group_id, g.busy_ns, e.entry_point AS key, count(*) AS portion,
           min(e.event_id * 4294967296 + coalesce(e.stack_id, 4294967295)) AS first
    FROM io_groups g JOIN events e ON e.trace_id = g.trace_id AND e.slice_index = g.slice_index
    GROUP BY g.group_id, g.busy_ns, e.entry_point
), sampled_stacks AS (
    SELECT p.trace_id, p.slice_index, p.stack_id, p.native, count(*) AS n, sum(p.share) AS share
    FROM samples p JOIN slices s USING (trace_id, slice_index)
    WHERE s.event_count = 0 GROUP BY p.trace_id, p.slice_index, p.stack_id, p.native
), sampled_slices AS (
    SELECT trace_id, slice_index,
           array_sort(collect_list(named_struct('stack_id', stack_id, 'native', native, 'n', n, 'share', share)))
               AS signature
    FROM sampled_stacks GROUP BY trace_id, slice_index
), sampled_groups AS (
    SELECT concat_ws('|', 'samples', s.trace_id, cast(g.signature AS string)) AS group_id,
           s.trace_id, sum(s.duration_ns) AS busy_ns, any_value(s.slice_index) AS slice_index
    FROM sampled_slices g JOIN slices s USING (trace_id, slice_index)
    GROUP BY s.trace_id, g.signature
), sampled_parts AS (
    SELECT g.group_id, g.busy_ns, p.entry_point AS key, sum(p.share) AS portion,
           coalesce(min(p.stack_id), 4294967295) AS first
    FROM sampled_groups g JOIN samples p ON p.trace_id = g.trace_id AND p.slice_index = g.slice_index
    GROUP BY g.group_id, g.busy_ns, p.entry_point
), parts AS (
    SELECT * FROM io_parts UNION ALL SELECT * FROM sampled_parts
), shares AS (
    SELECT group_id, busy_ns, key, first,
           (cast(busy_ns AS decimal(38, 0)) * portion) div sum(portion) OVER w AS floor_ns,
           (cast(busy_ns AS decimal(38, 0)) * portion) % sum(portion) OVER w AS remainder
    FROM parts WINDOW w AS (PARTITION BY group_id)
), split AS (
    SELECT key, floor_ns + CASE
               WHEN row_number() OVER (PARTITION BY group_id ORDER BY remainder DESC, first)
                    <= busy_ns - sum(floor_ns) OVER (PARTITION BY group_id) THEN 1 ELSE 0 END AS ns
    FROM shares
), attributed AS (
    SELECT key, ns FROM split
    UNION ALL
    SELECT what, duration_ns FROM slices WHERE event_count = 0 AND sample_count = 0
), groups AS (
    SELECT key, sum(ns) AS busy_ns FROM attributed GROUP BY key
), ranked AS (
    SELECT key, busy_ns, row_number() OVER (ORDER BY busy_ns DESC, key) AS place,
           (sum(busy_ns) OVER () + 500) div 1000 AS total_us,
           sum(busy_ns) OVER () AS all_ns
    FROM groups
), floored AS (
    SELECT *, (cast(total_us AS decimal(38, 0)) * busy_ns) div all_ns AS floor_us,
              (cast(total_us AS decimal(38, 0)) * busy_ns) % all_ns AS remainder
    FROM ranked
), shown AS (
    SELECT key, place, (floor_us + CASE
               WHEN row_number() OVER (ORDER BY remainder DESC, place)
                    <= total_us - sum(floor_us) OVER () THEN 1 ELSE 0 END) / 1000 AS busy_ms
    FROM floored
)
SELECT key, busy_ms FROM shown ORDER BY place
