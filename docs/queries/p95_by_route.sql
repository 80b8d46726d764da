-- What a report does not answer: the p95 of the loop time of each route's slices,
-- per host, release beside release (the route is the slice's `route` context value).
SELECT route, label, host, count(*) AS slices,
       round(quantile_cont(duration_ns, 0.95) / 1e6, 3) AS p95_ms
FROM slices WHERE route IS NOT NULL
GROUP BY route, label, host ORDER BY route, label, host;
