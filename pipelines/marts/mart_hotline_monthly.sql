-- mart_hotline_monthly: 12345 tickets per division, category, kind and month: closed, handling hours.
SELECT division_code, division_name, category, request_kind,
    date_trunc('month', received_at)::DATE AS month,
    count(*) AS tickets, count(*) FILTER (WHERE is_closed) AS closed_tickets,
    sum(handling_hours) AS handling_hours
FROM service__hotline_ticket GROUP BY ALL ORDER BY ALL
