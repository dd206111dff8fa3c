-- mart_entity_monthly: new legal entities per division, category, type and month of establishment,
-- how many are still active and their registered capital.
SELECT division_code, division_name, entity_category, entity_type,
    date_trunc('month', established_date)::DATE AS month,
    count(*) AS new_entities, count(*) FILTER (WHERE is_active) AS still_active,
    sum(registered_capital) AS registered_capital
FROM legal_entity__entity WHERE established_date IS NOT NULL
GROUP BY ALL ORDER BY ALL
