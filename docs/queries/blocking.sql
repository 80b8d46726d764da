-- The report's blocking I/O ranking (`--by entry-point`, `--sort score`): a slice
-- appears in the group of each entry point of its events, once, scored there with
-- the weights of its events at that key; groups by severity score, then total time
-- of their slices, then key.
WITH at_key AS (
    SELECT trace_id, slice_index, entry_point AS key, count(*) AS events, sum(weight) AS key_score
    FROM events GROUP BY trace_id, slice_index, entry_point
)
SELECT key, count(*) AS slices, sum(events) AS events, sum(key_score) AS severity_score,
       count(*) FILTER (WHERE s.exceeded) AS exceeded,
       (sum(s.duration_ns) + 500) // 1000 / 1000 AS total_ms
FROM at_key JOIN slices s USING (trace_id, slice_index)
GROUP BY key ORDER BY severity_score DESC, sum(s.duration_ns) DESC, key;
