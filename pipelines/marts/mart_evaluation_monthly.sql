-- mart_evaluation_monthly: 好差评 per division, department and month: satisfied and the score sum.
SELECT e.division_code, d.division_name, e.department,
    date_trunc('month', e.evaluated_at)::DATE AS month,
    count(*) AS evaluations, count(*) FILTER (WHERE e.is_satisfied) AS satisfied,
    sum(e.score) AS score_sum
FROM service__evaluation e LEFT JOIN ref_division d USING (division_code)
GROUP BY ALL ORDER BY ALL
