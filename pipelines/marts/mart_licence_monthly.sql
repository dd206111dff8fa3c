-- mart_licence_monthly: licences per division, type, issuing authority, status and month of issue.
SELECT division_code, division_name, licence_type, issuing_authority, status,
    date_trunc('month', issue_date)::DATE AS month, count(*) AS licences
FROM licence__licence GROUP BY ALL ORDER BY ALL
