-- The report's Loop time table (`--by entry-point`): every slice's time, to the
-- nanosecond, attributed as the report attributes it; busy_ms to the microsecond as the
-- report shows it.
--   * A slice with blocking events: its time goes to the entry points of its events, in
--     proportion to their counts. The report splits the summed time of the slices of a
--     trace that had the same events at the same stacks (and the same `what` and
--     `exceeded`), in whole nanoseconds, the leftover ones to the largest remainders
--     (the first key, by event_id then stack_id, on a tie): so does this query.
--   * A slice with CPU samples and no event: its time goes to the entry points of its
--     samples' stacks, by their `share`s (256ths of the slice, from the sample times;
--     1 per sample for untimed ones). The report groups the slices of a trace whose
--     samples have the same (stack_id, native) with the same count and summed share at
--     each, and splits their summed time over the keys by summed share, as above (the
--     first key, by stack_id, on a tie): so does this query.
--   * Any other slice: to what ran.
WITH io_slices AS (
    SELECT trace_id, slice_index,
           list(struct_pack(event_id, stack_id) ORDER BY event_id, stack_id) AS signature
    FROM events GROUP BY trace_id, slice_index
), io_groups AS (
    SELECT concat_ws('|', 'io', s.trace_id, i.signature::VARCHAR, s.what, s.exceeded) AS group_id,
           s.trace_id, sum(s.duration_ns) AS busy_ns, any_value(s.slice_index) AS slice_index
    FROM io_slices i JOIN slices s USING (trace_id, slice_index)
    GROUP BY s.trace_id, i.signature, s.what, s.exceeded
), io_parts AS (
    SELECT g.group_id, g.busy_ns, e.entry_point AS key, count(*) AS portion,
           min(e.event_id * 4294967296 + coalesce(e.stack_id, 4294967295)) AS first
    FROM io_groups g JOIN events e ON e.trace_id = g.trace_id AND e.slice_index = g.slice_index
    GROUP BY g.group_id, g.busy_ns, e.entry_point
), sampled_stacks AS (
    -- A slice's samples at each (stack_id, native): what the report's signature holds.
    SELECT p.trace_id, p.slice_index, p.stack_id, p.native, count(*) AS n, sum(p.share) AS share
    FROM samples p JOIN slices s USING (trace_id, slice_index)
    WHERE s.event_count = 0 GROUP BY p.trace_id, p.slice_index, p.stack_id, p.native
), sampled_slices AS (
    SELECT trace_id, slice_index,
           list(struct_pack(stack_id, native, n, share) ORDER BY stack_id, native) AS signature
    FROM sampled_stacks GROUP BY trace_id, slice_index
), sampled_groups AS (
    SELECT concat_ws('|', 'samples', s.trace_id, g.signature::VARCHAR) AS group_id,
           s.trace_id, sum(s.duration_ns) AS busy_ns, any_value(s.slice_index) AS slice_index
    FROM sampled_slices g JOIN slices s USING (trace_id, slice_index)
    GROUP BY s.trace_id, g.signature
), sampled_parts AS (
    -- Every slice of a group has the same shares at the same keys: one of them says.
    SELECT g.group_id, g.busy_ns, p.entry_point AS key, sum(p.share) AS portion,
           coalesce(min(p.stack_id), 4294967295) AS first
    FROM sampled_groups g JOIN samples p ON p.trace_id = g.trace_id AND p.slice_index = g.slice_index
    GROUP BY g.group_id, g.busy_ns, p.entry_point
), parts AS (
    SELECT * FROM io_parts UNION ALL SELECT * FROM sampled_parts
), shares AS (
    -- Each group's time over its keys by their portions (events counted, or samples'
    -- shares summed), in whole nanoseconds; the leftover ones to the largest remainders.
    SELECT group_id, busy_ns, key, first,
           (busy_ns::HUGEINT * portion) // sum(portion) OVER w AS floor_ns,
           (busy_ns::HUGEINT * portion) % sum(portion) OVER w AS remainder
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
    -- The report rounds the total to the microsecond and splits that over the groups
    -- by their nanoseconds (largest remainder, the first in its order on a tie), so
    -- that the groups add up to the total it shows.
    SELECT key, busy_ns, row_number() OVER (ORDER BY busy_ns DESC, key) AS place,
           (sum(busy_ns) OVER () + 500) // 1000 AS total_us,
           sum(busy_ns) OVER () AS all_ns
    FROM groups
), floored AS (
    SELECT *, (total_us::HUGEINT * busy_ns) // all_ns AS floor_us,
              (total_us::HUGEINT * busy_ns) % all_ns AS remainder
    FROM ranked
)
SELECT key, (floor_us + CASE
           WHEN row_number() OVER (ORDER BY remainder DESC, place)
                <= total_us - sum(floor_us) OVER () THEN 1 ELSE 0 END) / 1000 AS busy_ms
FROM floored ORDER BY place;
