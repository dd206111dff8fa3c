-- mart_service_monthly: service cases per division, department and month of acceptance: finished,
-- overdue (法定工作日) and handling hours.
SELECT division_code, division_name, department,
    date_trunc('month', accepted_at)::DATE AS month,
    count(*) AS cases, count(*) FILTER (WHERE is_finished) AS finished_cases,
    count(*) FILTER (WHERE is_overdue) AS overdue_cases,
    sum(handling_hours) AS handling_hours
FROM service__case GROUP BY ALL ORDER BY ALL
